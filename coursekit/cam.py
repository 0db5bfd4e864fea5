"""Grad-CAM (Selvaraju et al. 2017): where in the image a convolution layer found evidence for a class.

For a layer with feature maps ``A`` ``(h, w, K)`` and a class score ``y`` taken *before* the
softmax, each channel ``k`` gets the weight ``alpha_k = mean over (i, j) of dy / dA_ijk``; the map
is ``ReLU(sum_k alpha_k A_k)``, scaled to [0, 1] and resized to the input. :func:`grad_cam_plus_plus`
weights the channels by Grad-CAM++'s formula in the same compiled, batched pipeline (tf-keras-vis'
``GradcamPlusPlus`` is its cross-check in the tests); Score-CAM is used from tf-keras-vis
(``tf_keras_vis.scorecam``).
"""
from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf

from . import _cache, plotting
from ._forward import traced_once
from ._inputs import (
    TOP_PREDICTION,
    batches,
    chosen_batch_size,
    class_codes,
    image_batch,
    last_spatial_layer,
    layer_path,
    n_classes,
    outputs_model,
    require_spatial,
    resolve_classes,
    scale_to_unit,
)
from .batching import GRADIENT


def grad_cam(model: keras.Model, images, class_index=None, layer: str | None = None, *,
             upsample: bool = True, batch_size: int | None = None) -> np.ndarray:
    """Grad-CAM heatmaps of a preprocessed batch ``images`` ``(N, H, W, C)``.

    ``class_index``: None (each image's top prediction), an int (that class for every image) or a
    list with one class per image. ``layer``: a layer name with 4-D output, None for the last one
    (:func:`coursekit.models.last_spatial_layer`); in a nested model (a backbone inside a
    transfer-learning model) a layer inside the backbone, by its own name or its path
    (``"mobilenetv2_1.00_224/Conv_1"``), and by default the backbone's last 4-D layer. Gradients
    are those of the class score before the softmax (:func:`coursekit.models.pre_softmax`).
    ``batch_size``: images per compiled step; None = as many as fit the profile's memory budget
    (:mod:`coursekit.batching`).

    Returns float32 ``(N, H, W)`` in [0, 1] at the input's resolution (bilinear, OpenCV), each map
    divided by its maximum; with ``upsample=False``, ``(N, h, w)`` at the layer's resolution.
    A map with no positive evidence (e.g. all-zero gradients) is all zeros, never NaN.
    """
    return _class_maps(model, images, class_index, layer, upsample, batch_size, _grad_cam_weights, "Grad-CAM")


def grad_cam_plus_plus(model: keras.Model, images, class_index=None, layer: str | None = None, *,
                       upsample: bool = True, normalize_alphas: bool = False,
                       batch_size: int | None = None) -> np.ndarray:
    """Grad-CAM++ (Chattopadhyay et al. 2018) of a preprocessed batch: float32 ``(N, H, W)`` in [0, 1].

    As :func:`grad_cam` (same arguments, same output), except the channel weights. With ``g`` the
    gradient of the class logit ``S`` with respect to the layer's maps ``A`` ``(h, w, K)``, the
    paper's formula for ``Y = exp(S)`` (its equations 19 and 10) gives each position the weight

        ``alpha_ijk = g_ijk**2 / (2 g_ijk**2 + sum_ab A_abk g_ijk**3)``  (0 where the denominator is 0)

    and each channel ``w_k = sum_ij alpha_ijk relu(g_ijk)``; the map is ``relu(sum_k w_k A_k)``.
    (``exp(S)`` cancels in ``alpha`` and is one positive factor per image in ``w``, which the
    scaling to [0, 1] removes: leaving it out avoids the overflow of ``exp`` for large logits.)
    ``normalize_alphas=True`` also divides each channel's ``alpha`` by their sum over positions, as
    the authors' code and tf-keras-vis' ``GradcamPlusPlus`` do (its maps are then the same).
    One compiled step per model, layer and form; ``batch_size`` as in :func:`grad_cam`.
    """
    weights = _grad_cam_plus_plus_weights_normalized if normalize_alphas else _grad_cam_plus_plus_weights
    return _class_maps(model, images, class_index, layer, upsample, batch_size, weights, "Grad-CAM++")


def _class_maps(model, images, class_index, layer, upsample, batch_size, channel_weights, name) -> np.ndarray:
    """The shared pipeline of the gradient CAMs: check, compute the coarse maps in batches, resize, scale."""
    layer = layer if layer is not None else last_spatial_layer(model)
    found = require_spatial(model, layer, purpose=name)
    if tuple(found.output.shape[1:3]) == (1, 1):
        raise ValueError(f"Layer {layer!r} outputs 1x1 maps {tuple(found.output.shape)}: a {name} "
                         "map of it would be one flat value. Use a layer with height and width, "
                         f"such as {last_spatial_layer(model)!r} (the default).")
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    size = chosen_batch_size(model, batch_size, GRADIENT, batch.shape[1:])
    path = layer_path(model, layer)
    step = _cache.per_model(model, ("class_map", path, channel_weights),
                            lambda: _class_map_step(model, path, channel_weights))
    coarse = np.concatenate([step(tf.constant(batch[part]), tf.constant(classes[part])).numpy()
                             for part in batches(len(batch), size)])
    if not upsample:
        return scale_to_unit(coarse)
    height, width = batch.shape[1:3]
    resized = np.stack([cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
                        for cam in coarse])
    return scale_to_unit(np.maximum(resized, 0))


def _class_map_step(model: keras.Model, layer: str, channel_weights):
    """A compiled function ``(batch, classes) -> (N, h, w)`` un-normalised maps ``relu(sum_k w_k A_k)``."""
    both = outputs_model(model, [layer], logits=True)   # (feature maps, logits), nested models too
    input_spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)

    @traced_once(input_signature=[input_spec, tf.TensorSpec((None,), tf.int32)])
    def step(batch, classes):
        with tf.GradientTape() as tape:
            feature_maps, logits = both(batch, training=False)
            tape.watch(feature_maps)
            top = tf.argmax(logits, axis=-1, output_type=tf.int32)
            chosen = tf.where(classes == TOP_PREDICTION, top, classes)
            # Images do not interact in inference mode, so the gradient of the summed scores
            # holds each image's own gradient.
            score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
        gradients = tape.gradient(score, feature_maps)
        weights = channel_weights(gradients, feature_maps)                 # (N, 1, 1, K)
        return tf.nn.relu(tf.reduce_sum(weights * feature_maps, axis=-1))  # (N, h, w)

    return step


def _grad_cam_weights(gradients, feature_maps):
    """Grad-CAM: each channel's gradient averaged over the positions."""
    return tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)


def _grad_cam_plus_plus_weights(gradients, feature_maps, normalize_alphas: bool = False):
    """Grad-CAM++: ``sum_ij alpha_ijk relu(g_ijk)`` with the paper's ``alpha`` (see :func:`grad_cam_plus_plus`)."""
    squared = tf.square(gradients)
    denominator = 2.0 * squared + tf.reduce_sum(feature_maps, axis=(1, 2), keepdims=True) * squared * gradients
    alphas = tf.math.divide_no_nan(squared, denominator)
    if normalize_alphas:
        alphas = tf.math.divide_no_nan(alphas, tf.reduce_sum(alphas, axis=(1, 2), keepdims=True))
    return tf.reduce_sum(alphas * tf.nn.relu(gradients), axis=(1, 2), keepdims=True)


def _grad_cam_plus_plus_weights_normalized(gradients, feature_maps):
    return _grad_cam_plus_plus_weights(gradients, feature_maps, normalize_alphas=True)


# Drawing lives in plotting; the name the lessons know stays here too.
overlay = plotting.overlay


# ----------------------------------------------------------------------------- Guided Grad-CAM

def guided_grad_cam(model: keras.Model, images, class_index=None, layer: str | None = None, *,
                    batch_size: int | None = None) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the upsampled Grad-CAM map.

    Signed float32 ``(N, H, W, C)``: :func:`coursekit.saliency.guided_backprop` of each image,
    each channel multiplied by :func:`grad_cam` at the input's resolution (in [0, 1]), both for the
    same class (``class_index`` None: each image's top class) and ``layer`` (None: the last 4-D
    layer). :func:`coursekit.saliency.attribution_map` turns it into ``(N, H, W)`` maps.
    """
    from .saliency import _logits, guided_backprop
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    if np.any(classes == TOP_PREDICTION):
        classes = resolve_classes(classes, _logits(model, batch, batch_size))
    heatmaps = grad_cam(model, batch, classes, layer, batch_size=batch_size)
    return (guided_backprop(model, batch, classes, batch_size) * heatmaps[..., None]).astype("float32")
