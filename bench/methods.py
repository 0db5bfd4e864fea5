"""Every explanation method of coursekit against a plain batched TensorFlow reference written here.

    python bench/methods.py [--model mobilenet_v2] [--images 6] [--rounds 3] [--skip-memory]

Both sides compute the same thing on the same batch of photos (explicit classes, so neither
spends a forward pass finding the top class): each reference is what a careful user would write,
one ``tf.function`` over the whole batch at once (SmoothGrad: the noise drawn on the device in
float32, all samples in one compiled step; Integrated Gradients: all points of an image in one
step). Random weights: neither time nor memory depends on them.

1. Time: each pair is called once (tracing), then timed in turns within each round so that a busy
   machine slows both alike; the median over rounds. ``ratio`` = coursekit's time / the reference's:
   1.00x or less means coursekit is at least as fast.
2. Memory: each method and each side in a fresh process: what one call adds to the peak resident
   memory (VmHWM, reset after a first call), and on a GPU to TensorFlow's peak GPU memory.
   coursekit sends its work through the batch that ``coursekit.batching`` picks for the profile
   (``COURSEKIT_PROFILE``, default quick); the references send everything at once.

Guided Backprop and Guided Grad-CAM are not here: a plain version needs the same rewired graph,
which is the method itself. Score-CAM is tf-keras-vis' own (``bench/scorecam_memory.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("COURSEKIT_PROFILE", "quick")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import coursekit  # noqa: E402,F401  (before Keras)

MB = 2 ** 20
SAMPLES, NOISE, STEPS, PATCH, CURVE_STEPS = 8, 0.2, 16, 32, 8
# tf-keras-vis calls Keras models with a list input; Keras 3 warns about the structure, harmlessly
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")


def setup(model_name: str, count: int):
    import keras

    from coursekit import data, models
    keras.utils.set_random_seed(0)
    model = {"mobilenet_v2": keras.applications.MobileNetV2,
             "xception": keras.applications.Xception}[model_name](weights=None)
    size = tuple(model.inputs[0].shape[1:3])
    names = ["cat", "coffee", "astronaut", "grace_hopper", "rocket", "china"]
    photos = np.stack([data.sample_image(names[i % len(names)], size=size) for i in range(count)])
    batch = (photos.astype("float32") / 127.5 - 1.0)
    classes = np.asarray(models.pre_softmax(model)(batch[:count], training=False)).argmax(axis=1).astype("int32")
    return model, batch, classes


# ----------------------------------------------------------------------------- the plain references

def references(model, layer: str) -> dict:
    """One plain batched implementation per method: each a function (batch, classes) -> numpy."""
    import keras
    import tensorflow as tf

    from coursekit import models
    logits_model = models.pre_softmax(model)
    both = keras.Model(logits_model.inputs, [logits_model.get_layer(layer).output, logits_model.output])

    def chosen(logits, classes):
        return tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))

    @tf.function(reduce_retracing=True)
    def gradient(batch, classes):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            score = chosen(logits_model(batch, training=False), classes)
        return tape.gradient(score, batch)

    @tf.function(reduce_retracing=True)
    def smoothgrad(batch, classes):
        count = tf.shape(batch)[0]
        sigma = NOISE * (tf.reduce_max(batch, axis=(1, 2, 3)) - tf.reduce_min(batch, axis=(1, 2, 3)))
        copies = tf.repeat(batch, SAMPLES, axis=0)
        noisy = copies + tf.random.normal(tf.shape(copies)) * tf.repeat(sigma, SAMPLES)[:, None, None, None]
        gradients = gradient(noisy, tf.repeat(classes, SAMPLES))
        per_image = tf.reshape(tf.abs(gradients), (count, SAMPLES, *batch.shape[1:]))
        return tf.reduce_max(tf.reduce_mean(per_image, axis=1), axis=-1)

    @tf.function(reduce_retracing=True)
    def path_gradients(image, class_index):
        alphas = (tf.range(STEPS, dtype=tf.float32) + 0.5) / STEPS
        points = alphas[:, None, None, None] * image[None]          # baseline 0
        return tf.reduce_mean(gradient(points, tf.fill([STEPS], class_index)), axis=0) * image

    @tf.function(reduce_retracing=True)
    def cam_parts(batch, classes):
        with tf.GradientTape() as tape:
            maps, logits = both(batch, training=False)
            score = chosen(logits, classes)
        return maps, tape.gradient(score, maps)

    def grad_cam(batch, classes):
        maps, grads = cam_parts(tf.constant(batch), tf.constant(classes))
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return upsampled(tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy(), batch.shape[1:3])

    def grad_cam_plus_plus(batch, classes):
        maps, grads = cam_parts(tf.constant(batch), tf.constant(classes))
        squared = grads ** 2
        alphas = tf.math.divide_no_nan(squared, 2 * squared + tf.reduce_sum(maps, axis=(1, 2), keepdims=True)
                                       * squared * grads)
        weights = tf.reduce_sum(alphas * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
        return upsampled(tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy(), batch.shape[1:3])

    forward = tf.function(lambda batch: logits_model(batch, training=False), reduce_retracing=True)
    features = tf.function(lambda batch: both(batch, training=False)[0], reduce_retracing=True)

    def occlusion(batch, classes):
        """Every occluded copy made at once, then one forward pass."""
        height, width = batch.shape[1:3]
        corners = [(t, left) for t in range(0, height - PATCH + 1, PATCH) for left in range(0, width - PATCH + 1, PATCH)]
        copies = np.repeat(batch[:, None], len(corners), axis=1)
        for p, (top, left) in enumerate(corners):
            copies[:, p, top:top + PATCH, left:left + PATCH] = 0.0
        scores = forward(tf.constant(copies.reshape(-1, *batch.shape[1:]))).numpy().reshape(len(batch), len(corners), -1)
        return scores[np.arange(len(batch)), :, classes]

    def deletion(batch, classes):
        """Every image of every curve made at once, then one forward pass."""
        ranks = np.argsort(np.argsort(-batch.mean(axis=-1).reshape(len(batch), -1), axis=1), axis=1)
        ranks = ranks.reshape(batch.shape[:3])
        pixels = batch.shape[1] * batch.shape[2]
        thresholds = np.round(np.linspace(0, 1, CURVE_STEPS + 1) * pixels)
        changed = np.stack([np.where((ranks < t)[..., None], 0.0, batch) for t in thresholds], axis=1)
        logits = forward(tf.constant(changed.reshape(-1, *batch.shape[1:]).astype("float32"))).numpy()
        probabilities = tf.nn.softmax(logits).numpy().reshape(len(batch), len(thresholds), -1)
        return probabilities[np.arange(len(batch)), :, classes]

    return {
        "vanilla_saliency": lambda b, c: np.abs(gradient(tf.constant(b), tf.constant(c)).numpy()).max(axis=-1),
        "smoothgrad": lambda b, c: smoothgrad(tf.constant(b), tf.constant(c)).numpy(),
        "integrated_gradients": lambda b, c: np.stack([path_gradients(tf.constant(x), tf.constant(k)).numpy()
                                                        for x, k in zip(b, c)]),
        "grad_cam": grad_cam,
        "grad_cam_plus_plus": grad_cam_plus_plus,
        "occlusion_map": occlusion,
        "deletion_curve": deletion,
        "feature_maps": lambda b, c: features(tf.constant(b)).numpy(),
    }


def upsampled(coarse: np.ndarray, size) -> np.ndarray:
    import cv2
    maps = np.stack([cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for m in coarse])
    return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def ours(model, layer: str) -> dict:
    from coursekit import cam, features, metrics, occlusion, saliency
    return {
        "vanilla_saliency": lambda b, c: saliency.vanilla_saliency(model, b, c, normalize=False),
        "smoothgrad": lambda b, c: saliency.smoothgrad(model, b, c, samples=SAMPLES, noise=NOISE, normalize=False),
        "integrated_gradients": lambda b, c: saliency.integrated_gradients(model, b, c, steps=STEPS),
        "grad_cam": lambda b, c: cam.grad_cam(model, b, c, layer=layer),
        "grad_cam_plus_plus": lambda b, c: cam.grad_cam_plus_plus(model, b, c, layer=layer),
        "occlusion_map": lambda b, c: occlusion.occlusion_map(model, b, c, patch=PATCH, stride=PATCH),
        "deletion_curve": lambda b, c: metrics.deletion_curve(model, b, b.mean(axis=-1), c, steps=CURVE_STEPS)[1],
        "feature_maps": lambda b, c: features.feature_maps(model, b, [layer])[layer],
    }


def peers(model, layer: str) -> dict:
    """tf-keras-vis, where it has the method: the peer library a lesson shows."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    from coursekit import models
    logits_model = models.pre_softmax(model)
    saliency, plus_plus = Saliency(logits_model, clone=False), GradcamPlusPlus(logits_model, clone=False)
    gradcam = Gradcam(logits_model, clone=False)
    return {
        "vanilla_saliency": lambda b, c: np.asarray(saliency(CategoricalScore(list(c)), b, normalize_map=False)),
        "grad_cam": lambda b, c: np.asarray(gradcam(CategoricalScore(list(c)), b, penultimate_layer=layer,
                                                    seek_penultimate_conv_layer=False)),
        "smoothgrad": lambda b, c: np.asarray(saliency(CategoricalScore(list(c)), b, smooth_samples=SAMPLES,
                                                       smooth_noise=NOISE, normalize_map=False)),
        "grad_cam_plus_plus": lambda b, c: np.asarray(plus_plus(CategoricalScore(list(c)), b, penultimate_layer=layer,
                                                                seek_penultimate_conv_layer=False)),
    }


LAYERS = {"mobilenet_v2": "out_relu", "xception": "block14_sepconv2_act"}


# ----------------------------------------------------------------------------- time, in one process

def timing(args) -> dict:
    model, batch, classes = setup(args.model, args.images)
    layer = LAYERS[args.model]
    sides = {"coursekit": ours(model, layer), "reference": references(model, layer), "tf-keras-vis": peers(model, layer)}
    methods = [m for m in sides["coursekit"] if not args.only or m in args.only]
    times = {(side, m): [] for side in sides for m in methods if m in sides[side]}
    for side, method in times:                                   # trace and warm up
        sides[side][method](batch, classes)
    for _ in range(args.rounds):
        for side, method in times:
            start = time.perf_counter()
            sides[side][method](batch, classes)
            times[side, method].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


# ----------------------------------------------------------------------------- memory, a process each

def memory_child(args) -> None:
    import psutil
    import tensorflow as tf
    model, batch, classes = setup(args.model, args.images)
    layer = LAYERS[args.model]
    side, method = args.memory_child
    run = {"coursekit": ours, "reference": references, "tf-keras-vis": peers}[side](model, layer)[method]
    run(batch, classes)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
        gpu_before = tf.config.experimental.get_memory_info("GPU:0")["current"]
    Path("/proc/self/clear_refs").write_text("5")
    before = psutil.Process().memory_info().rss
    run(batch, classes)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            host = int(line.split()[1]) * 1024 - before
    added = {"host": host, "gpu": tf.config.experimental.get_memory_info("GPU:0")["peak"] - gpu_before if gpu else None}
    print(json.dumps(added), flush=True)


def memory(args, side: str, method: str) -> dict | None:
    """What one call adds, in MB: {"host": ..., "gpu": ... (None without a GPU)}; None if it failed."""
    command = [sys.executable, __file__, "--model", args.model, "--images", str(args.images),
               "--memory-child", side, method]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        return None
    added = json.loads(run.stdout.strip().splitlines()[-1])
    return {key: None if value is None else value / MB for key, value in added.items()}


def _memory_text(used: dict | None) -> str:
    if used is None:
        return f"{'failed':>14}"
    gpu = "" if used["gpu"] is None else f" (GPU {used['gpu']:.0f} MB)"
    return f"{used['host']:11.0f} MB{gpu}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2", choices=sorted(LAYERS))
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="only these methods")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return 0
    import tensorflow as tf
    medians = timing(args)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"{args.model} (random weights), {args.images} images, {device}, {os.cpu_count()} CPUs visible, "
          f"profile {os.environ['COURSEKIT_PROFILE']}; SmoothGrad {SAMPLES} samples, IG {STEPS} steps, "
          f"occlusion patch {PATCH}, deletion {CURVE_STEPS} steps; median of {args.rounds} rounds")
    print(f"{'method':<22}{'coursekit':>11}{'reference':>11}{'ratio':>8}{'tf-keras-vis':>14}{'ratio':>8}"
          + ("" if args.skip_memory else f"{'memory: coursekit':>19}{'reference':>11}"))
    for method in dict.fromkeys(m for _, m in medians):
        mine, plain = medians["coursekit", method], medians["reference", method]
        peer = medians.get(("tf-keras-vis", method))
        line = (f"{method:<22}{mine * 1000:9.0f} ms{plain * 1000:8.0f} ms{mine / plain:7.2f}x"
                + (f"{peer * 1000:11.0f} ms{mine / peer:7.2f}x" if peer else f"{'-':>14}{'':>8}"))
        if not args.skip_memory:
            line += "".join(_memory_text(memory(args, side, method)) for side in ("coursekit", "reference"))
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
