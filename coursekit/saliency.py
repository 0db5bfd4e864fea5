"""Saliency maps: how strongly each pixel moves a class score (Simonyan et al. 2014), and
SmoothGrad, the same averaged over noisy copies of the image (Smilkov et al. 2017).

The score is the class logit, taken before the softmax (:func:`coursekit.models.pre_softmax`):
after the softmax a pixel could raise the class probability just by lowering the other classes.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import _cache, _forward
from ._forward import traced_once
from ._inputs import (
    TOP_PREDICTION,
    batches,
    chosen_batch_size,
    class_codes,
    image_batch,
    n_classes,
    resolve_classes,
    scale_to_unit,
)
from .batching import GRADIENT
from .models import pre_softmax


def input_gradients(model: keras.Model, images, class_index=None, batch_size: int | None = None) -> np.ndarray:
    """The gradient of each image's class logit with respect to its pixels: ``(N, H, W, C)``.

    ``images`` is a preprocessed batch; ``class_index`` None (top prediction), an int, or one per
    image. The gradient is in the units of the preprocessed input. ``batch_size``: images per
    compiled step; None = as many as fit the profile's memory budget (:mod:`coursekit.batching`).
    """
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    return _gradients(model, batch, classes, batch_size)


def vanilla_saliency(model: keras.Model, images, class_index=None, *, positive_only: bool = False,
                     normalize: bool = True, batch_size: int | None = None) -> np.ndarray:
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
               batch_size: int | None = None) -> np.ndarray:
    """SmoothGrad of a preprocessed batch ``(N, H, W, C)``: float32 ``(N, H, W)``.

    ``samples`` copies of each image get Gaussian noise of standard deviation ``noise`` times the
    image's value range (max - min); the gradient of the class logit is taken at every copy; each
    pixel gets the largest, over its colour channels, of the **average magnitude** ``|gradient|``
    over the copies (with ``positive_only``, of the average positive part ``max(gradient, 0)``).
    The class is fixed from the clean image first, so every copy explains the same class.

    Which average: Smilkov et al. (2017) define SmoothGrad as the average of the *signed*
    gradients, and draw the absolute value of that average. coursekit, like tf-keras-vis'
    ``Saliency(..., smooth_samples=n)``, averages the magnitudes instead: a pixel whose gradient
    flips sign from one noisy copy to the next is one the score is sensitive to, and in the signed
    average those copies would cancel. So the map says how strongly a pixel moves the score, not
    in which direction. (For the signed form, average ``input_gradients`` of noisy copies.)

    The noise is drawn on the device in float32 by a stateless generator keyed by ``seed``, the
    image's position in the batch and the copy's number, so the same ``seed`` gives the same
    map, whatever ``batch_size``. The copies go through the model ``batch_size`` at a time (None:
    as many as fit the profile's memory budget, :mod:`coursekit.batching`); only one batch of
    copies and their gradients exists at a time.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be at least 1 (a whole number); got {samples!r}.")
    if noise < 0:
        raise ValueError(f"noise must be >= 0 (a share of the image's value range); got {noise}.")
    batch = image_batch(model, images)
    size = chosen_batch_size(model, batch_size, GRADIENT, batch.shape[1:])
    classes = _resolved_classes(model, batch, class_index, batch_size)
    sigmas = (noise * (batch.max(axis=(1, 2, 3)) - batch.min(axis=(1, 2, 3)))).astype("float32")
    step = _compiled_gradient(model)
    on_device = tf.constant(batch)
    # One stream of (image, copy) pairs, image-major; pair k is image k // samples, copy k % samples.
    image_of = np.repeat(np.arange(len(batch), dtype="int32"), samples)
    pair_keys = np.arange(len(image_of), dtype="int64")
    magnitude = _positive_part if positive_only else np.abs
    totals = np.zeros(batch.shape, dtype="float64")
    for part in batches(len(image_of), size):
        rows = image_of[part]
        noisy = _noisy_copies(on_device, tf.constant(rows), tf.constant(pair_keys[part]),
                              tf.constant(sigmas[rows]), tf.constant(int(seed), tf.int64))
        gradients = magnitude(step(noisy, tf.constant(classes[rows])).numpy())
        for gradient, row in zip(gradients, rows):   # a fixed order: any batch_size gives the same sums
            totals[row] += gradient
        del noisy, gradients                          # free this batch before the next one is made
    maps = _channel_max(totals / samples).astype("float32")
    return scale_to_unit(maps) if normalize else maps


def _positive_part(values: np.ndarray) -> np.ndarray:
    return np.maximum(values, 0)


@tf.function(input_signature=[tf.TensorSpec((None, None, None, None), tf.float32), tf.TensorSpec((None,), tf.int32),
                              tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.float32),
                              tf.TensorSpec((), tf.int64)])
def _noisy_copies(images, rows, keys, sigmas, seed):
    """``images[rows]`` plus Gaussian noise of standard deviation ``sigmas``, drawn on the device.

    Copy ``i`` gets the noise of the stateless generator seeded ``(seed, keys[i])``: the same
    copy gets the same noise in any batch. Traced once for every model and image size.
    """
    shape = tf.shape(images)[1:]
    noise = tf.map_fn(lambda key: tf.random.stateless_normal(shape, seed=tf.stack([seed, key])), keys,
                      fn_output_signature=tf.float32)
    return tf.gather(images, rows) + tf.reshape(sigmas, (-1, 1, 1, 1)) * noise


def _to_map(gradients: np.ndarray, positive_only: bool) -> np.ndarray:
    """Gradient magnitudes (or positive parts), max over channels."""
    magnitude = np.maximum(gradients, 0) if positive_only else np.abs(gradients)
    return _channel_max(magnitude).astype("float32")


def _channel_max(values: np.ndarray) -> np.ndarray:
    """``values.max(axis=-1)`` for ``(..., C)``, the same numbers, taken channel by channel: numpy's
    reduction over a short last axis is several times slower than C elementwise maxima."""
    channels = np.moveaxis(values, -1, 0)
    result = channels[0].copy()
    for channel in channels[1:]:
        np.maximum(result, channel, out=result)
    return result


def _gradients(model, batch: np.ndarray, classes: np.ndarray, batch_size: int | None, step=None) -> np.ndarray:
    """``step`` (default: the model's input gradient) of every image, ``batch_size`` at a time (sized for ``model``)."""
    step = step or _compiled_gradient(model)
    size = chosen_batch_size(model, batch_size, GRADIENT, batch.shape[1:])
    gradients = np.empty(batch.shape, dtype="float32")
    for part in batches(len(batch), size):
        gradients[part] = step(tf.constant(batch[part]), tf.constant(classes[part])).numpy()
    return gradients


def _logits(model, batch: np.ndarray, batch_size: int | None) -> np.ndarray:
    """The class logits of ``batch``, by the model's compiled forward pass."""
    return _forward.predict(pre_softmax(model), batch, batch_size)


# One pre-softmax helper for the whole package: the name lessons used before stays as an alias.
pre_softmax_model = pre_softmax


def _compiled_gradient(model: keras.Model):
    """The one compiled gradient of a model (:func:`_gradient_step`), traced once for every method using it."""
    return _cache.per_model(model, ("input_gradients",), lambda: _gradient_step(model))


def _gradient_step(model: keras.Model):
    """A compiled function ``(batch, classes) -> d logit[class] / d batch``."""
    logits_model = pre_softmax(model)
    input_spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)

    @traced_once(input_signature=[input_spec, tf.TensorSpec((None,), tf.int32)])
    def step(batch, classes):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            logits = logits_model(batch, training=False)
            top = tf.argmax(logits, axis=-1, output_type=tf.int32)
            chosen = tf.where(classes == TOP_PREDICTION, top, classes)
            score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
        return tape.gradient(score, batch)

    return step


# ----------------------------------------------------------------------------- attributions
# Integrated Gradients, Input x Gradient and Guided Backprop return *signed* attributions
# (N, H, W, C) in the units of the preprocessed input; attribution_map turns them into (N, H, W).

IG_METHODS = ("riemann_middle", "riemann_right", "trapezoid")


def path_points(steps: int, method: str = "riemann_middle") -> tuple[np.ndarray, np.ndarray]:
    """Where Integrated Gradients samples the straight path, and the weight of each sample.

    Returns ``(alphas, weights)``, float64: the gradient is taken at ``baseline + alpha * (image -
    baseline)`` and the weighted sum of the gradients approximates the path integral over
    ``alpha`` in [0, 1]. The weights sum to 1.

    * ``"riemann_middle"`` (default): ``steps`` points in the middle of ``steps`` equal intervals,
      ``0.5/steps, 1.5/steps, ...``, equal weights: as accurate as the trapezoid rule for a smooth
      path, and it never takes the gradient at the baseline itself, where every ReLU of a network
      without biases sits exactly at its kink (a zero baseline);
    * ``"riemann_right"``: ``1/steps, 2/steps, ..., 1``, equal weights (Sundararajan et al.'s formula);
    * ``"trapezoid"``: ``steps + 1`` points ``0, 1/steps, ..., 1``, the two ends weighted half
      (as the keras.io example).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1 (points on the path from the baseline "
                         f"to the image); got {steps!r}.")
    if method == "riemann_middle":
        alphas = (np.arange(steps) + 0.5) / steps
        weights = np.full(steps, 1.0 / steps)
    elif method == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
    elif method == "riemann_right":
        alphas = np.arange(1, steps + 1) / steps
        weights = np.full(steps, 1.0 / steps)
    else:
        raise ValueError(f"method must be one of {IG_METHODS}; got {method!r}.")
    return alphas, weights


def integrated_gradients(model: keras.Model, images, class_index=None, baseline=None, steps: int = 50, *,
                         method: str = "riemann_middle", batch_size: int | None = None) -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017) of a preprocessed batch: float32 ``(N, H, W, C)``.

    ``(image - baseline)`` times the average gradient of the class logit along the straight path
    from ``baseline`` to ``image``, so that the attributions of an image add up (nearly) to
    ``logit(image) - logit(baseline)`` (*completeness*; the error shrinks as ``steps`` grows).

    ``baseline``: None = all zeros in the model's input space (black for a model that takes pixel
    values and rescales inside, like the course's MNIST CNNs; mid-grey for MobileNet and Xception,
    whose preprocessing maps [0, 255] to [-1, 1]: pass ``net.preprocess(np.zeros_like(photos))``
    for black there); a number; an array shaped like one image or like the batch; or ``"blur"``
    (:func:`coursekit.metrics.blurred`). ``class_index``: None (each image's top class, fixed from
    the image itself, not from the points of the path), an int, or one per image. ``method``: see
    :func:`path_points`. The ``N x points`` gradients are computed ``batch_size`` at a time (None:
    as many as fit the profile's memory budget, :mod:`coursekit.batching`), all images' points
    mixed in one stream and made on the device batch by batch, so memory is set by ``batch_size``
    (not by ``steps``) and ``batch_size`` does not change the result beyond float32 rounding.
    """
    alphas, weights = path_points(steps, method)
    batch = image_batch(model, images)
    size = chosen_batch_size(model, batch_size, GRADIENT, batch.shape[1:])
    classes = _resolved_classes(model, batch, class_index, batch_size)
    baselines = _baselines(baseline, batch)
    step = _compiled_gradient(model)   # shared with input_gradients and smoothgrad
    on_device = tf.constant(batch), tf.constant(baselines)
    # One stream of (image, point) pairs, image-major; each chunk of it is one call of `step`.
    image_of = np.repeat(np.arange(len(batch), dtype="int32"), len(alphas))
    alpha_of = np.tile(alphas, len(batch)).astype("float32")
    weight_of = np.tile(weights, len(batch))
    totals = np.zeros(batch.shape, dtype="float64")
    for part in batches(len(image_of), size):
        rows = image_of[part]
        points = _path_points(*on_device, tf.constant(rows), tf.constant(alpha_of[part]))
        gradients = step(points, tf.constant(classes[rows])).numpy()
        for gradient, row, weight in zip(gradients, rows, weight_of[part]):  # fixed order: any batch_size
            totals[row] += weight * gradient                                   # gives the same sums
        del points, gradients                          # free this batch before the next one is made
    return ((batch - baselines) * totals).astype("float32")


@tf.function(input_signature=[tf.TensorSpec((None, None, None, None), tf.float32)] * 2
             + [tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.float32)])
def _path_points(images, baselines, rows, alphas):
    """``baseline + alpha * (image - baseline)`` for image ``rows[i]`` and ``alphas[i]``, made on the device."""
    start = tf.gather(baselines, rows)
    return start + tf.reshape(alphas, (-1, 1, 1, 1)) * (tf.gather(images, rows) - start)


def input_x_gradient(model: keras.Model, images, class_index=None, batch_size: int | None = None) -> np.ndarray:
    """Input times gradient of a preprocessed batch: signed float32 ``(N, H, W, C)``.

    Integrated Gradients with a zero baseline and a single point on the path; exact (complete) for
    a model linear in its input without biases, a first-order guess otherwise.
    """
    batch = image_batch(model, images)
    return (batch * input_gradients(model, batch, class_index, batch_size)).astype("float32")


def attribution_map(attributions, sign: str = "abs", normalize: bool = True) -> np.ndarray:
    """Signed attributions ``(N, H, W, C)`` (or one ``(H, W, C)``) as maps ``(N, H, W)``, float32.

    The colour channels of a pixel are *summed* (attributions add up: the pixel's share of the
    score is the sum of its channels' shares), then ``sign`` decides what is drawn: ``"abs"``
    (how much the pixel matters either way, as the other maps of the course), ``"positive"`` (only
    evidence for the class) or ``"signed"`` (both, for a diverging colour map). With ``normalize``
    each map is divided by its largest absolute value: [0, 1], or [-1, 1] for ``"signed"``; an
    all-zero map stays zero. (The plain gradient's maps take the largest |value| over the channels
    instead, :func:`vanilla_saliency`: a gradient is a sensitivity, not a share of the score.)
    """
    values = np.asarray(attributions, dtype="float32")
    if values.ndim == 3:
        values = values[None]
    if values.ndim != 4:
        raise ValueError(f"attribution_map needs attributions of shape (N, H, W, C) or (H, W, C); got "
                         f"{values.shape}. Pass what integrated_gradients or guided_backprop returned.")
    if not np.all(np.isfinite(values)):
        raise ValueError("The attributions contain NaN or infinite values.")
    per_pixel = values.sum(axis=-1)
    if sign == "abs":
        maps = np.abs(per_pixel)
    elif sign == "positive":
        maps = np.maximum(per_pixel, 0)
    elif sign == "signed":
        maps = per_pixel
    else:
        raise ValueError(f"sign must be 'abs', 'positive' or 'signed'; got {sign!r}.")
    if not normalize:
        return maps.astype("float32")
    if sign == "signed":
        return (scale_to_unit(np.abs(maps)) * np.sign(maps)).astype("float32")
    return scale_to_unit(maps)


def _resolved_classes(model, batch: np.ndarray, class_index, batch_size: int | None) -> np.ndarray:
    """One class per image, the top class (from the image itself) where ``class_index`` asks for it."""
    classes = class_codes(class_index, len(batch), n_classes(model))
    if np.any(classes == TOP_PREDICTION):
        classes = resolve_classes(classes, _logits(model, batch, batch_size))
    return classes


def _baselines(baseline, batch: np.ndarray) -> np.ndarray:
    """The baseline of every image as float32 ``batch.shape``."""
    if baseline is None:
        return np.zeros_like(batch)
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be None (zeros), a number, an array like the images, or "
                             f"'blur'; got {baseline!r}.")
        from .metrics import blurred
        return blurred(batch)
    values = np.asarray(baseline, dtype="float32")
    try:
        return np.ascontiguousarray(np.broadcast_to(values, batch.shape))
    except ValueError:
        raise ValueError(f"baseline of shape {values.shape} does not fit the images {batch.shape}: give "
                         "one image's shape (H, W, C), the batch's, a number, or 'blur'. Preprocess it "
                         "as the images (e.g. net.preprocess(np.zeros_like(photos)) for black).") from None


# ----------------------------------------------------------------------------- Guided Backprop

GUIDED_ACTIVATIONS = ("relu", "relu6")


def guided_backprop(model: keras.Model, images, class_index=None, batch_size: int | None = None) -> np.ndarray:
    """Guided Backpropagation (Springenberg et al. 2015) of a preprocessed batch: float32 ``(N, H, W, C)``.

    The gradient of the class logit, except that at every ReLU it passes back only where the
    unit's input *and* the gradient arriving from above are both positive (the plain gradient
    needs only the first). ``model`` is not changed: the gradient runs through a rewired copy of
    its graph that shares its layers and weights (built once per model), in which an identity
    whose gradient keeps only positive values follows each ReLU. ReLU and ReLU6 are handled
    (``ReLU`` layers with no negative slope, ``Activation("relu")``, and layers built with
    ``activation="relu"`` or ``"relu6"``; ReLU6's flat top passes nothing back, as in its own
    gradient). Any other activation (sigmoid, swish, leaky ReLU, ...) keeps its ordinary gradient;
    a warning names those layers. ``class_index`` as in :func:`vanilla_saliency`.
    """
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    return _gradients(model, batch, classes, batch_size, step=_compiled_gradient(guided_model(model)))


def guided_model(model: keras.Model) -> keras.Model:
    """The logits of ``model`` with Guided Backprop's gradient at every ReLU; shares ``model``'s weights."""
    return _cache.per_model(model, ("guided",), lambda: _build_guided(model))


def _build_guided(model: keras.Model) -> keras.Model:
    import warnings
    logits_model = pre_softmax(model)
    others: list[str] = []

    def rewire(layer):
        if _is_relu(layer):
            return _PositiveGradientAfter(layer, name=f"{layer.name}_guided")
        if _other_activation(layer):
            others.append(layer.name)
        return layer      # the same layer object: its weights are shared, not copied

    guided = keras.models.clone_model(logits_model, clone_function=rewire, recursive=True)
    if others:
        warnings.warn(f"guided_backprop handles ReLU and ReLU6 only; these layers of {model.name!r} keep "
                      f"their ordinary gradient: {others[:8]}{' ...' if len(others) > 8 else ''}.",
                      stacklevel=3)
    return guided


def _activation_name(layer) -> str:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") if activation is not None else ""


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return not float(layer.negative_slope) and not float(layer.threshold)
    return _activation_name(layer) in GUIDED_ACTIVATIONS


def _other_activation(layer) -> bool:
    if isinstance(layer, (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU)):
        return True
    return _activation_name(layer) not in ("", "linear", *GUIDED_ACTIVATIONS)


@tf.custom_gradient
def _positive_gradient(x):
    """Identity forward; backward, only the positive part of the incoming gradient passes."""
    return tf.identity(x), lambda upstream: tf.nn.relu(upstream)


class _PositiveGradientAfter(keras.layers.Layer):
    """``layer`` (a ReLU, or a layer ending in one) followed by :func:`_positive_gradient`.

    The ReLU's own gradient keeps the gradient where its input was positive; the identity after it
    keeps it where the gradient from above is positive: together, Guided Backprop's rule.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.inner = layer

    def call(self, inputs):
        return _positive_gradient(self.inner(inputs))

    def compute_output_spec(self, inputs):
        return self.inner.compute_output_spec(inputs)
