"""Grad-CAM speed: coursekit.cam.grad_cam vs tf-keras-vis' Gradcam vs a rebuild-the-model-per-call
implementation, side by side in one process, on Xception (random weights: speed does not depend
on them, and they need no download).

    python bench/gradcam.py [--batches 1 8] [--rounds 5]

The fourth line, a compiled forward pass alone, is the floor: no Grad-CAM can be much faster.
Prints milliseconds per image (median over rounds; the three are interleaved within each round so
that a busy machine slows them alike), as wall time and as this process's CPU time, and the ratios
to coursekit (2.0x = twice as slow as coursekit). Every implementation is called once before
timing (graph tracing and model building on first use are not what a class waits for each time).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tf_keras_vis.gradcam import Gradcam  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402

import coursekit  # noqa: E402,F401  (before Keras)
from coursekit import cam, models  # noqa: E402

LAYER = "block14_sepconv2_act"
# tf-keras-vis calls Keras models with a list input; Keras 3 warns about the structure, harmlessly
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")


class RebuildEveryCall:
    """Grad-CAM as often written in tutorials: a new two-output model and an eager tape per call."""

    def __init__(self, model, layer):
        self.model, self.layer = models.pre_softmax(model), layer

    def __call__(self, batch, classes):
        two = keras.Model(self.model.input, [self.model.get_layer(self.layer).output, self.model.output])
        with tf.GradientTape() as tape:
            maps, logits = two(batch)
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
        coarse = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
        size = (batch.shape[2], batch.shape[1])
        heatmaps = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_LINEAR) for c in coarse])
        return heatmaps / np.maximum(heatmaps.max(axis=(1, 2), keepdims=True), 1e-12)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = keras.applications.Xception(weights=None)
    library = Gradcam(models.pre_softmax(model), clone=False)
    rebuild = RebuildEveryCall(model, LAYER)
    logits_model = models.pre_softmax(model)
    forward = tf.function(lambda batch: logits_model(batch, training=False))
    rng = np.random.default_rng(0)
    print(f"Xception (random weights), layer {LAYER}, heatmaps at 299x299, "
          f"TensorFlow {tf.__version__}, {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}, "
          f"{os.cpu_count()} CPUs visible")

    for batch_size in args.batches:
        batch = rng.uniform(-1, 1, (batch_size, 299, 299, 3)).astype("float32")
        classes = rng.integers(0, 1000, batch_size)
        runs = {
            "coursekit grad_cam": lambda batch=batch, classes=classes: cam.grad_cam(
                model, batch, class_index=list(classes), layer=LAYER),
            "tf-keras-vis Gradcam": lambda batch=batch, classes=classes: library(
                CategoricalScore(list(classes)), batch, penultimate_layer=LAYER, seek_penultimate_conv_layer=False),
            "rebuild every call": lambda batch=batch, classes=classes: rebuild(batch, tf.constant(classes)),
            "(forward pass only)": lambda batch=batch: forward(tf.constant(batch)).numpy(),
        }
        first = {}
        for name, run in runs.items():
            start = time.perf_counter()
            output = np.asarray(run())
            first[name] = time.perf_counter() - start
            expected = (batch_size, 1000) if name == "(forward pass only)" else (batch_size, 299, 299)
            assert output.shape == expected, (name, output.shape)
        wall = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                run()
                wall[name].append(time.perf_counter() - start_wall)
                cpu[name].append(time.process_time() - start_cpu)
        ours_wall = statistics.median(wall["coursekit grad_cam"])
        ours_cpu = statistics.median(cpu["coursekit grad_cam"])
        print(f"\nbatch {batch_size}, median of {args.rounds} rounds; wall time (what you wait for) and "
              "this process's CPU time (less sensitive to other load):")
        for name in runs:
            median_wall, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
            print(f"  {name:<22} wall {1000 * median_wall / batch_size:7.0f} ms/image, "
                  f"{median_wall / ours_wall:5.2f}x coursekit | CPU {1000 * median_cpu / batch_size:7.0f} ms/image, "
                  f"{median_cpu / ours_cpu:5.2f}x   (first call {1000 * first[name]:.0f} ms)")


if __name__ == "__main__":
    main()
