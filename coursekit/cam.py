"""Grad-CAM (Selvaraju et al. 2017): where in the image a convolution layer found evidence for a class.

For a layer with feature maps ``A`` ``(h, w, K)`` and a class score ``y`` taken *before* the
softmax, each channel ``k`` gets the weight ``alpha_k = mean over (i, j) of dy / dA_ijk``; the map
is ``ReLU(sum_k alpha_k A_k)``, scaled to [0, 1] and resized to the input. Grad-CAM++ and Score-CAM
are used from tf-keras-vis (``tf_keras_vis.gradcam_plus_plus``, ``tf_keras_vis.scorecam``).
"""
from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf

from . import _cache, plotting
from ._inputs import (
    TOP_PREDICTION,
    batches,
    class_codes,
    image_batch,
    last_spatial_layer,
    layer_path,
    n_classes,
    outputs_model,
    require_spatial,
    scale_to_unit,
)


def grad_cam(model: keras.Model, images, class_index=None, layer: str | None = None, *,
             upsample: bool = True, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmaps of a preprocessed batch ``images`` ``(N, H, W, C)``.

    ``class_index``: None (each image's top prediction), an int (that class for every image) or a
    list with one class per image. ``layer``: a layer name with 4-D output, None for the last one
    (:func:`coursekit.models.last_spatial_layer`); in a nested model (a backbone inside a
    transfer-learning model) a layer inside the backbone, by its own name or its path
    (``"mobilenetv2_1.00_224/Conv_1"``), and by default the backbone's last 4-D layer. Gradients
    are those of the class score before the softmax (:func:`coursekit.models.pre_softmax`).

    Returns float32 ``(N, H, W)`` in [0, 1] at the input's resolution (bilinear, OpenCV), each map
    divided by its maximum; with ``upsample=False``, ``(N, h, w)`` at the layer's resolution.
    A map with no positive evidence (e.g. all-zero gradients) is all zeros, never NaN.
    """
    layer = layer if layer is not None else last_spatial_layer(model)
    found = require_spatial(model, layer, purpose="Grad-CAM")
    if tuple(found.output.shape[1:3]) == (1, 1):
        raise ValueError(f"Layer {layer!r} outputs 1x1 maps {tuple(found.output.shape)}: a Grad-CAM "
                         "map of it would be one flat value. Use a layer with height and width, "
                         f"such as {last_spatial_layer(model)!r} (the default).")
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    path = layer_path(model, layer)
    step = _cache.per_model(model, ("grad_cam", path), lambda: _grad_cam_step(model, path))
    coarse = np.concatenate([step(tf.constant(batch[part]), tf.constant(classes[part])).numpy()
                             for part in batches(len(batch), batch_size)])
    if not upsample:
        return scale_to_unit(coarse)
    height, width = batch.shape[1:3]
    resized = np.stack([cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
                        for cam in coarse])
    return scale_to_unit(np.maximum(resized, 0))


def _grad_cam_step(model: keras.Model, layer: str):
    """A compiled function ``(batch, classes) -> (N, h, w)`` un-normalised Grad-CAM maps."""
    both = outputs_model(model, [layer], logits=True)   # (feature maps, logits), nested models too
    input_spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)

    @tf.function(input_signature=[input_spec, tf.TensorSpec((None,), tf.int32)])
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
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)   # (N, 1, 1, K)
        return tf.nn.relu(tf.reduce_sum(weights * feature_maps, axis=-1))  # (N, h, w)

    return step


# Drawing lives in plotting; the name the lessons know stays here too.
overlay = plotting.overlay
