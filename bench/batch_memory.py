"""Memory per image of a gradient and of a forward pass, measured, against coursekit.batching's estimate.

    python bench/batch_memory.py [--models mnist_cnn mobilenet_v2 xception] [--batches 1 4]

For each model (random weights: memory does not depend on them) and each kind of work
(``gradient``: coursekit's compiled input gradient, what saliency, SmoothGrad and Integrated
Gradients run; ``eager gradient``: the same under a ``GradientTape`` in plain Python, as a lesson
writes it by hand; ``forward``: coursekit's compiled forward pass, what occlusion and the deletion
curves run), each batch size runs in a fresh process: the step is traced on one image first, then
the peak resident memory (VmHWM, reset just before) that one call on the batch adds. The memory
per image is the slope between the two batch sizes; its ratio to ``batching.activation_bytes``
(the sum of all layers' outputs for a gradient, the largest output for a forward pass) is the
factor ``coursekit.batching`` uses (``FACTORS``): keep those at least as large as the largest
ratio printed here. The last column is the batch the helper picks for the
``quick`` profile's budget and the memory it is measured to add there.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 2 ** 20


def build(name: str):
    import keras

    from coursekit import models
    keras.utils.set_random_seed(0)
    if name == "mnist_cnn":
        return models.mnist_cnn()
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None)
    if name == "xception":
        return keras.applications.Xception(weights=None)
    raise ValueError(f"unknown model {name!r}")


def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def _peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM needs Linux")


def child(name: str, work: str, batch_size: int) -> None:
    """In a fresh process: the bytes one call on ``batch_size`` images adds to the peak."""
    import numpy as np
    import tensorflow as tf

    import coursekit  # noqa: F401  (before Keras)
    from coursekit import _forward, models, saliency
    model = build(name)
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)

    def run(count):
        batch = tf.constant(rng.uniform(-1, 1, (count, *shape)).astype("float32"))
        if work == "gradient":
            step = saliency._compiled_gradient(model)
            return step(batch, tf.zeros((count,), tf.int32)).numpy()
        if work == "eager gradient":            # a GradientTape in plain Python, as a lesson writes it
            logits_model = models.pre_softmax(model)
            with tf.GradientTape() as tape:
                tape.watch(batch)
                score = tf.reduce_sum(logits_model(batch)[:, 0])
            return tape.gradient(score, batch).numpy()
        return _forward.predict(model, batch.numpy(), count)

    run(1)                                            # trace and warm up
    Path("/proc/self/clear_refs").write_text("5")     # reset the peak
    before = _rss()
    run(batch_size)
    print(json.dumps({"added": _peak() - before}), flush=True)


def measure(name: str, work: str, batch_size: int) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", name, work, str(batch_size)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["added"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mnist_cnn", "mobilenet_v2", "xception"])
    parser.add_argument("--batches", nargs=2, type=int, default=[2, 6], metavar=("SMALL", "LARGE"))
    parser.add_argument("--budget-mb", type=float, default=1024, help="budget of the last column (quick: 1024)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    from coursekit import batching
    small, large = args.batches
    print(f"Memory one call adds, per image (slope between batches of {small} and {large}), fresh process each, CPU")
    print(f"{'model':<13}{'work':<16}{'activations':>13}{'measured':>11}{'ratio':>7}{'estimate':>10}"
          f"{'picked':>8}{'adds':>9}")
    for name in args.models:
        model = build(name)
        total, largest = batching.activation_bytes(model)
        for work in batching.WORKS:
            base = largest if work == batching.FORWARD else total
            slope = (measure(name, work, large) - measure(name, work, small)) / (large - small)
            picked = batching.batch_size_for(model, work, budget_mb=args.budget_mb)
            adds = measure(name, work, picked) if picked <= 64 else None
            print(f"{name:<13}{work:<16}{base / MB:10.1f} MB{slope / MB:8.1f} MB{slope / base:7.2f}"
                  f"{batching.bytes_per_image(model, work) / MB:7.1f} MB{picked:8d}"
                  f"{'' if adds is None else f'{adds / MB:6.0f} MB':>9}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
