"""Saliency maps: how strongly each pixel moves a class score (Simonyan et al. 2014), and
SmoothGrad, the same averaged over noisy copies of the image (Smilkov et al. 2017).

The score is the class logit, taken before the softmax (:func:`coursekit.models.pre_softmax`):
after the softmax a pixel could raise the class probability just by lowering the other classes.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import _cache
from ._inputs import TOP_PREDICTION, batches, class_codes, image_batch, n_classes, resolve_classes, scale_to_unit
from .models import pre_softmax


def input_gradients(model: keras.Model, images, class_index=None, batch_size: int = 32) -> np.ndarray:
    """The gradient of each image's class logit with respect to its pixels: ``(N, H, W, C)``.

    ``images`` is a preprocessed batch; ``class_index`` None (top prediction), an int, or one per
    image. The gradient is in the units of the preprocessed input.
    """
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    return _gradients(model, batch, classes, batch_size)


def vanilla_saliency(model: keras.Model, images, class_index=None, *, positive_only: bool = False,
                     normalize: bool = True, batch_size: int = 32) -> np.ndarray:
    """Vanilla saliency of a preprocessed batch ``(N, H, W, C)``: float32 ``(N, H, W)``.

    Each pixel gets the largest absolute gradient over its colour channels (with
    ``positive_only``, the largest positive one: only pixels whose brightening raises the score).
    With ``normalize`` each map is divided by its maximum (values in [0, 1], an all-zero map
    stays zero); otherwise the raw gradient magnitudes are returned.
    """
    gradients = input_gradients(model, images, class_index, batch_size)
    maps = _to_map(gradients, positive_only)
    return scale_to_unit(maps) if normalize else maps


def smoothgrad(model: keras.Model, images, class_index=None, samples: int = 20, noise: float = 0.2,
               *, positive_only: bool = False, normalize: bool = True, seed: int = 0,
               batch_size: int = 32) -> np.ndarray:
    """SmoothGrad of a preprocessed batch ``(N, H, W, C)``: float32 ``(N, H, W)``.

    Averages the gradient magnitudes over ``samples`` copies of each image with Gaussian noise
    of standard deviation ``noise`` times the image's value range (max - min), as Smilkov et al.
    and tf-keras-vis do. The class is fixed from the
    clean image first, so every noisy copy explains the same class; then each pixel gets the
    largest average over its channels. ``seed`` fixes the noise. Memory: ``samples`` copies of
    the batch are held at once.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}.")
    if noise < 0:
        raise ValueError(f"noise must be >= 0 (a share of the image's value range); got {noise}.")
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    if np.any(classes == TOP_PREDICTION):
        classes = resolve_classes(classes, _logits(model, batch, batch_size))
    rng = np.random.default_rng(seed)
    sigma = (noise * (batch.max(axis=(1, 2, 3)) - batch.min(axis=(1, 2, 3)))).reshape(1, -1, 1, 1, 1)
    noisy = batch[None] + rng.normal(size=(samples, *batch.shape)).astype("float32") * sigma
    gradients = _gradients(model, noisy.reshape(-1, *batch.shape[1:]), np.tile(classes, samples),
                           batch_size).reshape(samples, *batch.shape)
    maps = _to_map(gradients, positive_only, samples_axis=0)
    return scale_to_unit(maps) if normalize else maps


def _to_map(gradients: np.ndarray, positive_only: bool, samples_axis: int | None = None) -> np.ndarray:
    """Gradient magnitudes (averaged over ``samples_axis`` if given), max over channels."""
    magnitude = np.maximum(gradients, 0) if positive_only else np.abs(gradients)
    if samples_axis is not None:
        magnitude = magnitude.mean(axis=samples_axis)
    return magnitude.max(axis=-1).astype("float32")


def _gradients(model, batch: np.ndarray, classes: np.ndarray, batch_size: int) -> np.ndarray:
    step = _cache.per_model(model, ("input_gradients",), lambda: _gradient_step(model))
    return np.concatenate([step(tf.constant(batch[part]), tf.constant(classes[part])).numpy()
                           for part in batches(len(batch), batch_size)])


def _logits(model, batch: np.ndarray, batch_size: int) -> np.ndarray:
    logits_model = pre_softmax(model)
    return np.concatenate([np.asarray(logits_model(batch[part], training=False))
                           for part in batches(len(batch), batch_size)])


# One pre-softmax helper for the whole package: the name lessons used before stays as an alias.
pre_softmax_model = pre_softmax


def _gradient_step(model: keras.Model):
    """A compiled function ``(batch, classes) -> d logit[class] / d batch``."""
    logits_model = pre_softmax(model)
    input_spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)

    @tf.function(input_signature=[input_spec, tf.TensorSpec((None,), tf.int32)])
    def step(batch, classes):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            logits = logits_model(batch, training=False)
            top = tf.argmax(logits, axis=-1, output_type=tf.int32)
            chosen = tf.where(classes == TOP_PREDICTION, top, classes)
            score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
        return tape.gradient(score, batch)

    return step
