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

from . import _cache
from ._gradients import TOP_PREDICTION, as_batch, chunks, class_codes, n_classes, scale_to_unit
from .models import last_spatial_layer, require_spatial
from .saliency import pre_softmax_model


def grad_cam(model: keras.Model, images, class_index=None, layer: str | None = None, *,
             upsample: bool = True, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmaps of a preprocessed batch ``images`` ``(N, H, W, C)``.

    ``class_index``: None (each image's top prediction), an int (that class for every image) or a
    list with one class per image. ``layer``: a layer name with 4-D output, None for the last one
    (:func:`coursekit.models.last_spatial_layer`). Gradients are those of the class score before
    the softmax (:func:`coursekit.models.pre_softmax`).

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
    batch = as_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    step = _cache.per_model(model, ("grad_cam", layer), lambda: _grad_cam_step(model, layer))
    coarse = np.concatenate([step(tf.constant(batch[part]), tf.constant(classes[part])).numpy()
                             for part in chunks(len(batch), batch_size)])
    if not upsample:
        return scale_to_unit(coarse)
    height, width = batch.shape[1:3]
    resized = np.stack([cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
                        for cam in coarse])
    return scale_to_unit(np.maximum(resized, 0))


def _grad_cam_step(model: keras.Model, layer: str):
    """A compiled function ``(batch, classes) -> (N, h, w)`` un-normalised Grad-CAM maps."""
    logits_model = pre_softmax_model(model)
    both = keras.Model(logits_model.inputs[0],
                       [logits_model.get_layer(layer).output, logits_model.outputs[0]],
                       name=f"{model.name}_grad_cam_{layer}")
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


# ----------------------------------------------------------------------------- overlays

def overlay(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """``image`` with ``heatmap`` drawn over it in colour: uint8 RGB ``(H, W, 3)``.

    ``image``: a displayable RGB image, uint8 ``(H, W, 3)`` or float in [0, 1] (not the
    preprocessed model input). ``heatmap``: ``(h, w)`` in [0, 1], resized to the image if needed.
    ``alpha``: share of the heatmap colour in the result. ``colormap``: an OpenCV colour map name
    ("jet", "inferno", "turbo", ...).
    """
    image = _displayable(image)
    heatmap = np.asarray(heatmap, dtype="float32")
    if heatmap.ndim == 3 and heatmap.shape[0] == 1:
        heatmap = heatmap[0]
    if heatmap.ndim != 2:
        raise ValueError(f"overlay needs one heatmap (h, w); got shape {heatmap.shape}. "
                         "Pass heatmaps[i] for image i.")
    if not np.all(np.isfinite(heatmap)):
        raise ValueError("The heatmap contains NaN or infinite values.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}.")
    if heatmap.shape != image.shape[:2]:
        heatmap = cv2.resize(heatmap, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    levels = np.clip(heatmap * 255, 0, 255).round().astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(levels, _opencv_colormap(colormap)), cv2.COLOR_BGR2RGB)
    blended = (1 - alpha) * image.astype("float32") + alpha * colours.astype("float32")
    return np.clip(blended, 0, 255).round().astype(np.uint8)


def _displayable(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"overlay needs one RGB image (H, W, 3); got shape {image.shape}.")
    if image.dtype == np.uint8:
        return image
    if image.min() < 0 or image.max() > 255:
        raise ValueError(f"overlay needs a displayable image (uint8, or floats in [0, 1]); got values "
                         f"from {image.min():.2f} to {image.max():.2f}. Pass the image before "
                         "preprocessing (e.g. net.load_image(...)), not the model input.")
    scale = 255.0 if image.max() <= 1.0 else 1.0
    return np.clip(image * scale, 0, 255).round().astype(np.uint8)


def _opencv_colormap(name: str) -> int:
    code = getattr(cv2, f"COLORMAP_{str(name).upper()}", None)
    if code is None:
        known = sorted(n[len("COLORMAP_"):].lower() for n in dir(cv2) if n.startswith("COLORMAP_"))
        raise ValueError(f"Unknown colormap {name!r}. OpenCV has: {', '.join(known)}.")
    return code
