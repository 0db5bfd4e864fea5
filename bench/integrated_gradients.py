"""Integrated Gradients: speed and memory of coursekit.saliency.integrated_gradients on Xception
(random weights: speed and memory do not depend on them, and they need no download).

    python bench/integrated_gradients.py [--images 4] [--steps 64] [--rounds 1] [--batch-size N]

1. Speed: milliseconds per image for ``--images`` images x ``--steps`` steps, coursekit against a
   keras.io-style implementation (one image at a time, all its path points in one eager batch
   through a GradientTape, trapezoid rule), interleaved within each round so that a busy machine
   slows both alike; the median over rounds, and the ratio (2.0x = coursekit twice as fast). Each
   is called once on a short path before timing (coursekit traces its compiled step on first use).
   The two agree on the attributions (printed: the largest difference, relative to the largest).
   The keras.io-style batch of ``steps + 1`` Xception images needs about 0.45 GB per point (7.8 GB
   measured at 17 points): when ``--steps`` would not fit in 60% of the available memory, both
   are compared at the largest step count that fits, and coursekit alone is timed at ``--steps``.
2. Memory: coursekit at 32 and at 256 steps with the same ``--batch-size`` (default: the one
   ``coursekit.batching`` picks for Xception in the profile, COURSEKIT_PROFILE), each in a fresh
   process: the peak resident memory (VmHWM) of the process, and how much the call added to the
   peak reached after loading the model and one warm-up call. coursekit streams the path points through batches of
   ``--batch-size``, so this should not grow with the steps; the keras.io-style batch of all points
   grows linearly with them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import coursekit  # noqa: E402,F401  (before Keras)


def xception():
    import keras
    keras.utils.set_random_seed(0)
    return keras.applications.Xception(weights=None)


def sample_batch(count: int) -> np.ndarray:
    from keras.applications import xception as module

    from coursekit import data
    names = ["cat", "coffee", "china", "grace_hopper", "rocket", "astronaut", "flower"]
    photos = [data.sample_image(names[i % len(names)], size=(299, 299)) for i in range(count)]
    return module.preprocess_input(np.stack(photos).astype("float32"))


def keras_io_style(model, image, class_index: int, steps: int) -> np.ndarray:
    """One image: all ``steps + 1`` path points in one eager batch, trapezoid rule (as keras.io's example)."""
    import tensorflow as tf

    from coursekit import models
    logits_model = models.pre_softmax(model)
    baseline = np.zeros_like(image)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype="float32")[:, None, None, None]
    points = tf.constant(baseline[None] + alphas * (image - baseline)[None])
    with tf.GradientTape() as tape:
        tape.watch(points)
        score = logits_model(points, training=False)[:, class_index]
    gradients = tape.gradient(score, points).numpy()
    average = ((gradients[:-1] + gradients[1:]) / 2).mean(axis=0)
    return (image - baseline) * average


GB_PER_EAGER_POINT = 0.46   # Xception at 299 px, forward and backward, measured: 7.8 GB for 17 points


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines() if Path("/proc/meminfo").exists() else []:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2 ** 20
    return float("inf")


def speed(args) -> None:
    from coursekit import saliency
    model = xception()
    batch = sample_batch(args.images)
    classes = np.asarray(model(batch[:1], training=False)).argmax(axis=1).repeat(len(batch))
    fitting = int(0.6 * available_gb() / GB_PER_EAGER_POINT) - 1
    compared = min(args.steps, fitting)
    if compared < args.steps:
        print(f"The keras.io-style batch of {args.steps + 1} points needs about {(args.steps + 1) * GB_PER_EAGER_POINT:.0f} "
              f"GB; {available_gb():.0f} GB are available here, so the two are compared at {compared} steps.")

    def ours(steps):
        return saliency.integrated_gradients(model, batch, class_index=classes.tolist(), steps=steps,
                                             method="trapezoid", batch_size=args.batch_size)

    def theirs(steps):
        return np.stack([keras_io_style(model, image, int(c), steps) for image, c in zip(batch, classes)])

    ours(2), theirs(2)                                  # warm-up: tracing, first calls
    times = {"coursekit": [], "keras.io style": []}
    results = {}
    for _ in range(args.rounds):
        for name, run in (("coursekit", ours), ("keras.io style", theirs)):
            start = time.perf_counter()
            results[name] = run(compared)
            times[name].append((time.perf_counter() - start) * 1000 / len(batch))
    gap = float(np.abs(results["coursekit"] - results["keras.io style"]).max()
                / np.abs(results["keras.io style"]).max())
    print(f"Xception (random weights), {len(batch)} images x {compared} steps, batch_size {picked(model, args.batch_size)}, "
          f"median of {args.rounds} round(s):")
    for name, values in times.items():
        print(f"  {name:<16}{statistics.median(values):9.0f} ms per image")
    ratio = statistics.median(times["keras.io style"]) / statistics.median(times["coursekit"])
    print(f"  coursekit is {ratio:.2f}x as fast as the keras.io-style implementation (goal >= 2x)")
    print(f"  largest difference of the attributions, relative to the largest: {gap:.1e}")
    if compared < args.steps:
        start = time.perf_counter()
        ours(args.steps)
        print(f"  coursekit at {args.steps} steps: {(time.perf_counter() - start) * 1000 / len(batch):.0f} ms per image")


def picked(model, batch_size: int | None) -> str:
    from coursekit import batching
    if batch_size is not None:
        return str(batch_size)
    return f"{batching.batch_size_for(model, 'gradient')} (coursekit.batching's pick)"


def peak_kb() -> int:
    """This process's peak resident memory, kB: VmHWM (ru_maxrss would include the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # not Linux: an upper bound


def memory_child(steps: int, batch_size: int) -> None:
    """Run in a fresh process: print {"before": kB, "peak": kB} around one call."""
    from coursekit import saliency
    model = xception()
    batch = sample_batch(1)
    saliency.integrated_gradients(model, batch, steps=2, batch_size=batch_size)      # warm-up
    before = peak_kb()
    saliency.integrated_gradients(model, batch, steps=steps, batch_size=batch_size)
    print(json.dumps({"before": before, "peak": peak_kb(), "batch_size": picked(model, batch_size)}), flush=True)


def memory(args) -> None:
    print("Peak memory of one image's Integrated Gradients, each in a fresh process:")
    results = {}
    for steps in (32, 256):
        size = [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
        output = subprocess.run([sys.executable, __file__, "--memory-child", str(steps), *size],
                                check=True, capture_output=True, text=True).stdout
        results[steps] = json.loads(output.strip().splitlines()[-1])
        grown = (results[steps]["peak"] - results[steps]["before"]) / 1024
        print(f"  {steps:>4} steps (batch_size {results[steps]['batch_size']}): "
              f"peak {results[steps]['peak'] / 1024:7.0f} MB, of which the call added {grown:6.0f} MB")
    ratio = results[256]["peak"] / results[32]["peak"]
    print(f"  peak at 256 steps / peak at 32 steps: {ratio:.2f} (goal <= 1.2)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="points per compiled step (default: coursekit.batching's pick for the profile)")
    parser.add_argument("--skip-memory", action="store_true", help="only the speed comparison")
    parser.add_argument("--skip-speed", action="store_true", help="only the memory comparison")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.batch_size)
        return
    if not args.skip_speed:
        speed(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
