"""What a filter responds to: its kernel weights, and images made to excite it by gradient ascent.

Gradient ascent starts from a grey image with faint noise and repeatedly moves the image along
the (L2-normalised) gradient of one filter's mean activation (the border of the feature map is
left out: units there see mostly padding). The regularised mode adds the two cheapest tricks the
Distill article "Feature Visualization" (Olah, Mordvintsev and Schubert, 2017) found to remove the
high-frequency noise plain ascent produces: *transformation robustness* (the image is shifted by a
random jitter of a few pixels before every step, so a pattern must work wherever it lies) and
*frequency penalisation* (a light Gaussian blur after every step).

``filter_patterns(..., parameterization="fourier")`` and :func:`class_pattern` search in the
article's own way instead: a Fourier-space image with decorrelated colour, randomly warped
before every step (``coursekit._featurevis`` says which parts are used). :func:`class_pattern`
maximises a class score (Simonyan et al. 2014); :func:`deep_dream` amplifies what whole layers
see in a photo (Mordvintsev et al. 2015).
"""
from __future__ import annotations

import dataclasses
import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf

from . import _cache, _featurevis, _inputs, batching
from ._forward import traced_once
from ._inputs import find_layer, require_spatial
from ._progress import progress as _progress

START_NOISE = 0.1     # the start image is uniform noise in [-0.1, 0.1] around 0 (mid-grey after
                      # the [-1, 1] preprocessing of Xception and MobileNet)
JITTER_SHARE = 1 / 16  # regularised mode: random shifts of up to size / 16 pixels per step
BLUR_SIGMA = 0.5      # regularised mode: Gaussian blur (pixels) after every step
CPU_BATCH = 4         # filters per compiled step on a CPU: larger batches are slower per image
                      # there (their activations outgrow the cache; bench/filter_patterns.py)


class DeadFilterWarning(UserWarning):
    """Some filters had zero gradient at every step: gradient ascent could not move them."""


@dataclasses.dataclass(frozen=True)
class AscentReport:
    """What happened to each filter of one :func:`filter_patterns` call.

    ``start_activation`` / ``final_activation``: ``(F,)`` mean activation of each filter (border
    excluded) on its start image and on its result. ``dead``: the filter indices whose gradient
    was exactly zero at every step (e.g. a ReLU unit that never switched on); their images are
    returned as zeros, not as patterns.
    """

    layer: str
    filters: tuple[int, ...]
    start_activation: np.ndarray
    final_activation: np.ndarray
    dead: tuple[int, ...]

    @property
    def gain(self) -> np.ndarray:
        """``final_activation - start_activation`` per filter."""
        return self.final_activation - self.start_activation


def filter_patterns(model: keras.Model, layer: str, filters, steps: int = 30, size: int = 200,
                    lr: float = 10.0, seed: int = 0, regularize: bool = False, *,
                    batch_size: int | None = None, progress: bool = True, return_report: bool = False,
                    parameterization: str = "pixels", preprocess=None):
    """Images that excite ``filters`` of ``layer``, found by gradient ascent on the input.

    ``filters``: a filter index or a list of them (``range(16)`` works). The filters of a call are
    optimised together, one image each, as a batch in a compiled step: on a GPU as many as fit the
    profile's memory budget (:mod:`coursekit.batching`), on a CPU at most ``CPU_BATCH`` at a time
    (``batch_size`` overrides this). Filter ``f`` starts
    from noise drawn from ``(seed, f)`` and images do not interact, so a filter's result does not
    depend on the others in the batch. ``size``: side of the images in pixels; a model with a
    fixed input size needs exactly that size. ``lr``: L2 length of each step in input units. ``regularize``: add jitter and blur
    (module docstring). The images are in the model's preprocessed input space: show them with
    :func:`deprocess`.

    ``parameterization="fourier"``: instead of the pixels, a decorrelated-colour Fourier spectrum
    is optimised (Adam, learning rate ``coursekit._featurevis.LEARNING_RATE``; ``lr`` is not
    used), and the image is warped at random before every step, as in the Distill article
    (``coursekit._featurevis`` lists the parts used). ``regularize`` must then stay False; the
    images are RGB, made by ``preprocess`` (a TensorFlow function from [0, 255] to the model's
    input, default ``x / 127.5 - 1``), so :func:`to_uint8` shows their true colours.

    Returns float32 ``(F, size, size, channels)``, or ``(images, AscentReport)`` with
    ``return_report``. Filters with zero gradient throughout are reported with a
    :class:`DeadFilterWarning` and in ``AscentReport.dead``, and their images are zeros.
    """
    target = require_spatial(model, layer, purpose="Gradient ascent on a filter")
    indices = _filter_indices(filters, int(target.output.shape[-1]), layer)
    channels = _check_size(model, size)
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}.")
    if _check_parameterization(parameterization) == "fourier":
        if regularize:
            raise ValueError("regularize=True adds jitter and blur to the pixel search; the Fourier "
                             "parameterisation has its own regularisation. Pass one of them.")
        images, start, final = _fourier_filter_patterns(model, layer, indices, steps, size, seed,
                                                        preprocess=preprocess, batch_size=batch_size,
                                                        progress=progress, lr=None)
        report = AscentReport(layer, tuple(indices), start, final, ())
        return (images, report) if return_report else images
    extractor = _inputs.outputs_model(model, [layer])   # a layer inside a nested backbone works too
    _check_map_size(extractor, size, layer)
    step = _cache.per_model(model, ("ascent_step", layer, size), lambda: _ascent_step(extractor, size))
    blur = _cache.per_model(model, ("blur", channels), lambda: _blur(channels))

    parts = _inputs.batches(len(indices), _ascent_batch(model, len(indices), size, channels, batch_size))
    images = [tf.constant(np.stack([start_image(seed, f, size, channels) for f in indices[part]]))
              for part in parts]
    chosen = [tf.constant(indices[part], dtype=tf.int32) for part in parts]
    no_shift, no_step = tf.zeros(2, tf.int32), tf.constant(0.0)

    def activations() -> np.ndarray:
        return np.concatenate([step(x, f, no_step, no_shift)[1].numpy() for x, f in zip(images, chosen)])

    start_activation = activations()
    moved = np.zeros(len(indices), dtype=bool)
    jitter = max(1, round(size * JITTER_SHARE))
    shifts = np.random.default_rng(seed).integers(-jitter, jitter + 1, size=(steps, 2))
    search = " (jitter and blur)" if regularize else ""   # tells the two searches' bars apart
    for i in _progress(range(steps), desc=f"{layer}: {len(indices)} filters{search}", disable=not progress,
                       leave=False):
        shift = tf.constant(shifts[i], tf.int32) if regularize else no_shift
        for k, part in enumerate(parts):
            images[k], _, norms = step(images[k], chosen[k], tf.constant(float(lr)), shift)
            moved[part] |= norms.numpy() > 0
            if regularize:
                images[k] = blur(images[k])
    final_activation = activations()
    images = np.concatenate([x.numpy() for x in images])
    dead = tuple(f for f, ok in zip(indices, moved) if not ok) if steps else ()
    if dead:
        images[~moved] = 0.0
        warnings.warn(f"{layer}: filter(s) {list(dead)} had zero gradient at every step, so gradient "
                      "ascent could not change their images (returned as zeros). A ReLU unit that "
                      "is off for the start image stays off: try another seed, or the layer before "
                      "the activation (e.g. a convolution rather than its '_relu').",
                      DeadFilterWarning, stacklevel=2)
    if not return_report:
        return images
    return images, AscentReport(layer, tuple(indices), start_activation, final_activation, dead)


def _ascent_batch(model: keras.Model, count: int, size: int, channels: int, batch_size: int | None) -> int:
    """Images optimised together: ``batch_size`` if given, else as many as fit the profile's memory
    budget for a gradient at ``size`` px (:mod:`coursekit.batching`), and on a CPU at most
    ``CPU_BATCH`` (larger batches are slower per image there)."""
    if batch_size is not None:
        return _inputs.chosen_batch_size(model, batch_size, batching.GRADIENT, (size, size, channels))
    fits = batching.batch_size_for(model, batching.GRADIENT, image_shape=(size, size, channels))
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    return max(1, min(count, fits) if on_gpu else min(CPU_BATCH, fits))



def _filter_indices(filters, channels: int, layer: str) -> list[int]:
    wanted = [filters] if isinstance(filters, numbers.Integral) else list(filters)
    if not wanted:
        raise ValueError("filters is empty: pass a filter index or a list of them, e.g. range(8).")
    for f in wanted:
        if not isinstance(f, numbers.Integral) or isinstance(f, bool):
            raise TypeError(f"filters must be ints; got {f!r}.")
        if not 0 <= f < channels:
            raise ValueError(f"Filter {f} does not exist: layer {layer!r} has {channels} filters, "
                             f"numbered 0 to {channels - 1}.")
    return [int(f) for f in wanted]


def _check_size(model: keras.Model, size: int) -> int:
    """The number of input channels, after checking that ``size`` fits the model's input."""
    height, width, channels = model.inputs[0].shape[1:]
    fixed = (height, width)
    if None not in fixed and fixed != (size, size):
        raise ValueError(
            f"Model {model.name!r} only takes {height}x{width} images, so size must be {height} "
            f"(got {size}). For other sizes use a model built without a fixed input size, e.g. "
            "coursekit.models.pretrained('xception', include_top=False).")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels; got {size}.")
    return int(channels)


def _check_map_size(extractor: keras.Model, size: int, layer: str) -> None:
    shape = extractor.compute_output_shape((1, size, size, extractor.inputs[0].shape[-1]))
    if min(shape[1], shape[2]) < 1:
        raise ValueError(f"At size {size}, layer {layer!r} has no pixels left; use a larger size.")


def start_image(seed: int, filter_index: int, size: int, channels: int = 3) -> np.ndarray:
    """Where ascent on ``filter_index`` starts: uniform noise in [-0.1, 0.1], ``(size, size, channels)``.

    Drawn from ``(seed, filter_index)`` alone, so a filter starts alike in any batch.
    """
    rng = np.random.default_rng([seed, filter_index])
    return rng.uniform(-START_NOISE, START_NOISE, (size, size, channels)).astype("float32")


def border_width(side: int) -> int:
    """Feature-map pixels left out on each side of the loss: 2 on large maps, fewer on small ones."""
    return min(2, (side - 1) // 4)


def _ascent_step(extractor: keras.Model, size: int):
    """A compiled ``(images, filters, lr, shift) -> (new images, activations, gradient norms)``.

    ``activations``: ``(F,)`` mean activation of filter ``filters[i]`` on image ``i`` (shifted by
    ``shift`` pixels, border excluded), measured before the step. Traced once: any number of
    ``size`` x ``size`` images.
    """
    signature = [tf.TensorSpec((None, size, size, extractor.inputs[0].shape[-1]), tf.float32),
                 tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.float32), tf.TensorSpec((2,), tf.int32)]

    @traced_once(input_signature=signature)
    def step(images, filters, lr, shift):
        with tf.GradientTape() as tape:
            tape.watch(images)
            shifted = tf.roll(images, shift, axis=[1, 2])
            maps = extractor(shifted, training=False)
            b_h, b_w = border_width(maps.shape[1]), border_width(maps.shape[2])
            maps = maps[:, b_h:maps.shape[1] - b_h, b_w:maps.shape[2] - b_w, :]
            per_filter = tf.gather(maps, filters, axis=3, batch_dims=1)  # (F, h, w)
            activations = tf.reduce_mean(per_filter, axis=(1, 2))
            total = tf.reduce_sum(activations)  # images are independent: one gradient each
        gradients = tape.gradient(total, images)
        norms = tf.norm(tf.reshape(gradients, (tf.shape(gradients)[0], -1)), axis=1)
        direction = gradients / tf.reshape(tf.maximum(norms, 1e-12), (-1, 1, 1, 1))
        return images + lr * direction, activations, norms

    return step


def _blur(channels: int):
    """A compiled Gaussian blur (sigma ``BLUR_SIGMA``, 3x3) of a batch, edges reflected."""
    offsets = np.array([-1.0, 0.0, 1.0])
    weights = np.exp(-offsets ** 2 / (2 * BLUR_SIGMA ** 2))
    kernel = np.outer(weights, weights) / np.outer(weights, weights).sum()
    kernel = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)), tf.float32)

    @traced_once(reduce_retracing=True)
    def blur(images):
        padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        return tf.nn.depthwise_conv2d(padded, kernel, strides=[1, 1, 1, 1], padding="VALID")

    return blur


def deprocess(image, crop: float = 0.125) -> np.ndarray:
    """A gradient-ascent image (or batch) as displayable uint8.

    Each image is standardised (mean 0, std 1), scaled to a standard deviation of 64 grey levels
    around 128 and clipped to [0, 255]; ``crop`` (a share of the side) is cut from every border,
    where ascent leaves artefacts. A flat image (e.g. a dead filter's zeros) becomes mid-grey.
    ``(H, W, C)`` -> ``(H', W', C)``; ``(N, H, W, C)`` -> ``(N, H', W', C)``.
    """
    images = np.asarray(image, dtype="float32")
    single = images.ndim == 3
    if single:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"deprocess needs an image (H, W, C) or a batch (N, H, W, C); got {images.shape}.")
    if not 0 <= crop < 0.5:
        raise ValueError(f"crop must be a share of the side in [0, 0.5); got {crop}.")
    mean = images.mean(axis=(1, 2, 3), keepdims=True, dtype="float64")
    std = images.std(axis=(1, 2, 3), keepdims=True, dtype="float64")
    flat = std <= 1e-5 * np.abs(mean)  # rounding leaves a constant image a tiny, meaningless spread
    scaled = np.where(flat, 0.0, (images - mean) / np.where(flat, 1, std)) * 64 + 128
    top, left = int(round(images.shape[1] * crop)), int(round(images.shape[2] * crop))
    scaled = scaled[:, top:images.shape[1] - top, left:images.shape[2] - left]
    result = np.clip(scaled, 0, 255).round().astype(np.uint8)
    return result[0] if single else result


def filter_weights(model: keras.Model, layer: str) -> np.ndarray:
    """The spatial kernels of a convolution layer: ``(kh, kw, in_channels, filters)``.

    ``Conv2D``: its kernel. ``DepthwiseConv2D`` and ``SeparableConv2D``: the depthwise kernel,
    ``(kh, kw, in_channels, depth_multiplier)``, one small kernel per input channel.
    Draw them with :func:`coursekit.plotting.show_kernels_rgb` (3 input channels) or
    :func:`coursekit.plotting.show_kernel_channels`.
    """
    found = find_layer(model, layer)
    if isinstance(found, keras.layers.SeparableConv2D):
        return np.asarray(found.depthwise_kernel)
    if isinstance(found, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        return np.asarray(found.kernel)
    convolutions = [each.name for each in model.layers
                    if isinstance(each, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    raise ValueError(f"Layer {layer!r} is a {type(found).__name__}, which has no convolution kernel. "
                     f"Convolution layers here: {convolutions[:6]}{'...' if len(convolutions) > 6 else ''}")


# ----------------------------------------------------------------------------- Fourier parameterisation
# Feature visualisation as in the Distill article: the image lives in a Fourier basis with
# decorrelated colour and is warped at random before every step (coursekit._featurevis says
# which parts of the article's method are used, and how).

PARAMETERIZATIONS = ("pixels", "fourier")
high_frequency_share = _featurevis.high_frequency_share  # (N,) share of spectral energy above 0.25 cycles/pixel
ADAM_BETAS = (0.9, 0.999)


def default_preprocess(rgb255):
    """[0, 255] RGB -> [-1, 1], the preprocessing of Xception, MobileNet and MobileNetV2 (a tensor op)."""
    return rgb255 / 127.5 - 1.0


def to_uint8(images, input_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Images in a model's input range (``(lo, hi)``, [-1, 1] by default) as uint8 RGB, linearly:
    ``lo`` -> 0, ``hi`` -> 255. Unlike :func:`deprocess`, nothing is stretched, so colours stay
    as the model saw them. Any shape; the result has the same shape."""
    lo, hi = _input_range(input_range)
    scaled = (np.asarray(images, dtype="float32") - lo) / (hi - lo) * 255
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def _input_range(input_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"input_range must be two numbers (low, high), e.g. (-1.0, 1.0); got {input_range!r}.") from None
    if not lo < hi:
        raise ValueError(f"input_range must be (low, high) with low < high; got {input_range!r}.")
    return lo, hi


def _check_parameterization(parameterization: str) -> str:
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}; got {parameterization!r}. "
                         "'pixels' moves the pixels themselves; 'fourier' moves a decorrelated-colour "
                         "Fourier spectrum and adds random warps (Distill's Feature Visualization).")
    return parameterization


def _adam_ascent(params, gradient, m, v, t, lr):
    """One Adam step *up* the gradient; every element has its own scale (images stay independent)."""
    b1, b2 = ADAM_BETAS
    m = b1 * m + (1 - b1) * gradient
    v = b2 * v + (1 - b2) * tf.square(gradient)
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    return params + lr * m_hat / (tf.sqrt(v_hat) + 1e-8), m, v


def _fourier_step(score, size: int, preprocess):
    """Compiled ``(spectrum, m, v, t, warps, targets, lr) -> (spectrum, m, v, scores)``; ``score(x, targets)``
    gives one number per image of a preprocessed batch ``x``. ``scores`` are measured before the step."""
    fv = _featurevis
    scale = tf.constant(fv.frequency_scale(size))
    spectrum_spec = tf.TensorSpec((None, 2, 3, size, size // 2 + 1), tf.float32)
    signature = [spectrum_spec, spectrum_spec, spectrum_spec, tf.TensorSpec((), tf.float32),
                 tf.TensorSpec((None, 8), tf.float32), tf.TensorSpec((None,), tf.int32),
                 tf.TensorSpec((), tf.float32)]

    @traced_once(input_signature=signature)
    def step(spectrum, m, v, t, warps, targets, lr):
        with tf.GradientTape() as tape:
            tape.watch(spectrum)
            rgb = fv.warp(fv.spectrum_to_rgb(spectrum, scale), warps)
            scores = score(preprocess(rgb * 255.0), targets)
            total = tf.reduce_sum(scores)
        spectrum, m, v = _adam_ascent(spectrum, tape.gradient(total, spectrum), m, v, t, lr)
        return spectrum, m, v, scores

    @traced_once(input_signature=[spectrum_spec, tf.TensorSpec((None,), tf.int32)])
    def measure(spectrum, targets):
        """(preprocessed images, scores) of the spectra as they are, without a warp."""
        x = preprocess(fv.spectrum_to_rgb(spectrum, scale) * 255.0)
        return x, score(x, targets)

    return step, measure


def _fourier_search(model, key, score, targets, size, steps, seed, *, grey, preprocess, batch_size,
                    progress, desc, lr):
    """Optimise one Fourier-parameterised image per target; returns (images, start scores, final scores).

    Image ``i`` starts from ``(seed, targets[i])`` and is warped by transforms drawn from them
    alone, so its result does not depend on the other images of the batch.
    """
    fv = _featurevis
    preprocess = preprocess or default_preprocess
    step, measure = _cache.per_model(model, ("fourier", key, size, preprocess),
                                     lambda: _fourier_step(score, size, preprocess))
    channels = 1 if grey else 3
    parts = _inputs.batches(len(targets), _ascent_batch(model, len(targets), size, channels, batch_size))
    seeds = [(seed, int(t)) for t in targets]
    spectra = [tf.constant(fv.start_spectrum(seeds[part], size, grey=grey)) for part in parts]
    chosen = [tf.constant(np.asarray(targets[part], dtype="int32")) for part in parts]
    warps = [np.stack([fv.random_warps(s, steps, size) for s in seeds[part]], axis=1) for part in parts]
    moments = [(tf.zeros_like(s), tf.zeros_like(s)) for s in spectra]
    start = np.concatenate([measure(s, c)[1].numpy() for s, c in zip(spectra, chosen)])
    rate = tf.constant(float(fv.LEARNING_RATE if lr is None else lr))
    for i in _progress(range(steps), desc=desc, disable=not progress, leave=False):
        for k in range(len(parts)):
            m, v = moments[k]
            spectra[k], m, v, _ = step(spectra[k], m, v, tf.constant(float(i + 1)),
                                       tf.constant(warps[k][i]), chosen[k], rate)
            moments[k] = (m, v)
    measured = [measure(s, c) for s, c in zip(spectra, chosen)]
    images = np.concatenate([x.numpy() for x, _ in measured])
    final = np.concatenate([scores.numpy() for _, scores in measured])
    return images, start, final


def _filter_score(extractor):
    def score(x, filters):
        maps = extractor(x, training=False)
        b_h, b_w = border_width(maps.shape[1]), border_width(maps.shape[2])
        maps = maps[:, b_h:maps.shape[1] - b_h, b_w:maps.shape[2] - b_w, :]
        return tf.reduce_mean(tf.gather(maps, filters, axis=3, batch_dims=1), axis=(1, 2))
    return score


def _fourier_filter_patterns(model, layer, indices, steps, size, seed, *, preprocess, batch_size, progress, lr):
    if int(model.inputs[0].shape[-1]) != 3:
        raise ValueError(f"The Fourier parameterisation makes RGB images; model {model.name!r} takes "
                         f"{model.inputs[0].shape[-1]} channel(s). Use parameterization='pixels'.")
    require_spatial(model, layer, purpose="Gradient ascent on a filter")
    extractor = _inputs.outputs_model(model, [layer])
    _check_map_size(extractor, size, layer)
    return _fourier_search(model, ("filter", layer), _filter_score(extractor), np.asarray(indices), size, steps,
                           seed, grey=False, preprocess=preprocess, batch_size=batch_size, progress=progress,
                           desc=f"{layer}: {len(indices)} filters (Fourier)", lr=lr)


# ----------------------------------------------------------------------------- class patterns

@dataclasses.dataclass(frozen=True)
class ClassPatternReport:
    """What :func:`class_pattern` reached, per class ``(K,)``: the class logit on the start image
    and on the result (both unwarped), and the model's top-1 class for the result."""

    classes: tuple[int, ...]
    start_logit: np.ndarray
    final_logit: np.ndarray
    top_class: np.ndarray

    @property
    def hits(self) -> np.ndarray:
        """``(K,)`` bool: the result's top-1 class is the class it was made for."""
        return self.top_class == np.asarray(self.classes)


def class_pattern(model: keras.Model, class_index, steps: int = 128, *, parameterization: str = "fourier",
                  start: str = "grey", size: int | None = None, lr: float | None = None, seed: int = 0,
                  preprocess=None, input_range: tuple[float, float] = (-1.0, 1.0),
                  batch_size: int | None = None, progress: bool = True, return_report: bool = False):
    """Images that maximise class scores (Simonyan, Vedaldi and Zisserman 2013, "Deep inside
    convolutional networks"): gradient ascent on the class logit, taken before the softmax
    (:func:`coursekit.models.pre_softmax`) so the image must show the class, not merely suppress others.

    ``class_index``: an int or a list of ints, one image each. ``start``: ``"grey"`` (a flat grey
    image) or ``"noise"``. ``parameterization``: ``"fourier"`` (decorrelated-colour Fourier image,
    warped at random before each step, optimised with Adam at ``lr``, default 0.05; see
    ``coursekit._featurevis``) or ``"pixels"`` (each step an L2-normalised gradient step of length
    ``lr``, default 10, on the pixels, with the jitter and blur of ``filter_patterns(regularize=True)``,
    clipped to ``input_range``). ``size``: the image side; a model with a fixed input size (a
    classifier) needs exactly that, and None picks it. ``preprocess``: a TensorFlow function from
    [0, 255] RGB to the model's input (default ``x / 127.5 - 1``, the [-1, 1] of Xception and
    MobileNet; the Fourier mode needs it).

    Returns float32 ``(K, size, size, 3)`` in the model's input range (show with :func:`to_uint8`),
    or ``(images, ClassPatternReport)`` with ``return_report``.
    """
    _check_parameterization(parameterization)
    if start not in ("grey", "noise"):
        raise ValueError(f"start must be 'grey' or 'noise'; got {start!r}.")
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}.")
    if isinstance(class_index, str):
        raise TypeError(f"class_index must be an int or a list of ints; got the name {class_index!r}. "
                        f"Pretrained.class_index({class_index!r}) gives its index.")
    count = 1 if isinstance(class_index, numbers.Integral) else len(list(class_index or []))
    if count == 0:
        raise ValueError("class_pattern needs a class: pass an int or a list of ints "
                         "(Pretrained.class_index('tabby') gives the index of a name).")
    classes = _inputs.class_codes(class_index, count, _inputs.n_classes(model))
    fixed = tuple(model.inputs[0].shape[1:3])
    if size is None:
        if None in fixed:
            raise ValueError(f"Model {model.name!r} takes any image size: pass size (e.g. 224).")
        size = int(fixed[0])
    channels = _check_size(model, size)
    logits_call = _inputs.outputs_model(model, [], logits=True)  # class scores before the softmax

    def score(x, targets):
        return tf.gather(logits_call(x, training=False), targets, axis=1, batch_dims=1)

    if parameterization == "fourier":
        if channels != 3:
            raise ValueError(f"The Fourier parameterisation makes RGB images; model {model.name!r} takes "
                             f"{channels} channel(s). Use parameterization='pixels'.")
        images, start_logit, final_logit = _fourier_search(
            model, "class", score, classes, size, steps, seed, grey=start == "grey", preprocess=preprocess,
            batch_size=batch_size, progress=progress, desc=f"{count} class pattern(s) (Fourier)", lr=lr)
    else:
        images, start_logit, final_logit = _pixel_class_search(
            model, score, classes, size, channels, steps, seed, start=start, lr=10.0 if lr is None else lr,
            input_range=_input_range(input_range), batch_size=batch_size, progress=progress)
    top = np.concatenate([logits_call(images[part], training=False).numpy().argmax(axis=1)
                          for part in _inputs.batches(len(images), 16)])
    if not return_report:
        return images
    return images, ClassPatternReport(tuple(int(c) for c in classes), start_logit, final_logit, top)


def _pixel_class_search(model, score, classes, size, channels, steps, seed, *, start, lr, input_range,
                        batch_size, progress):
    lo, hi = input_range
    middle = (lo + hi) / 2
    key = ("class_pixels", size, input_range)

    def build():
        spec = [tf.TensorSpec((None, size, size, channels), tf.float32), tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((), tf.float32), tf.TensorSpec((2,), tf.int32)]

        @traced_once(input_signature=spec)
        def step(images, targets, rate, shift):
            with tf.GradientTape() as tape:
                tape.watch(images)
                scores = score(tf.roll(images, shift, axis=[1, 2]), targets)
                total = tf.reduce_sum(scores)
            gradients = tape.gradient(total, images)
            norms = tf.norm(tf.reshape(gradients, (tf.shape(gradients)[0], -1)), axis=1)
            moved = images + rate * gradients / tf.reshape(tf.maximum(norms, 1e-12), (-1, 1, 1, 1))
            return tf.clip_by_value(moved, lo, hi), scores
        return step

    step = _cache.per_model(model, key, build)
    blur = _cache.per_model(model, ("blur", channels), lambda: _blur(channels))
    parts = _inputs.batches(len(classes), _ascent_batch(model, len(classes), size, channels, batch_size))
    if start == "grey":
        starts = np.full((len(classes), size, size, channels), middle, dtype="float32")
    else:
        starts = np.stack([middle + start_image(seed, int(c), size, channels) * (hi - lo) / 2 for c in classes])
    images = [tf.constant(starts[part]) for part in parts]
    chosen = [tf.constant(classes[part]) for part in parts]
    no_shift = tf.zeros(2, tf.int32)
    start_logit = np.concatenate([step(x, c, tf.constant(0.0), no_shift)[1].numpy() for x, c in zip(images, chosen)])
    jitter = max(1, round(size * JITTER_SHARE))
    shifts = np.random.default_rng(seed).integers(-jitter, jitter + 1, size=(steps, 2))
    for i in _progress(range(steps), desc=f"{len(classes)} class pattern(s)", disable=not progress, leave=False):
        for k in range(len(parts)):
            images[k], _ = step(images[k], chosen[k], tf.constant(float(lr)), tf.constant(shifts[i], tf.int32))
            images[k] = tf.clip_by_value(blur(images[k]), lo, hi)
    final_logit = np.concatenate([step(x, c, tf.constant(0.0), no_shift)[1].numpy() for x, c in zip(images, chosen)])
    return np.concatenate([x.numpy() for x in images]), start_logit, final_logit


# ----------------------------------------------------------------------------- DeepDream

def deep_dream(model: keras.Model, image, layers, octaves: int = 3, steps: int = 10, step_size: float = 0.01, *,
               octave_scale: float = 1.4, input_range: tuple[float, float] = (-1.0, 1.0), seed: int = 0,
               progress: bool = True) -> np.ndarray:
    """DeepDream (Mordvintsev, Olah and Tyka, 2015): change a photo so that ``layers`` respond more.

    ``image``: one preprocessed image ``(H, W, C)`` or a batch ``(N, H, W, C)`` in the model's
    input range ``input_range`` ([-1, 1] for Xception and MobileNet). ``layers``: a layer name
    or a list; the objective is the sum over them of their mean activation. The image is
    processed at ``octaves`` scales, each ``octave_scale`` times smaller than the next, smallest
    first; at each, ``steps`` gradient-ascent steps of ``step_size`` (the gradient divided by its
    standard deviation, the image shifted by a random roll first so no tile edge builds up), then
    the detail the dream added is carried up to the next scale, where the downscaling had lost
    the photo's own detail. The image is clipped to ``input_range`` after each step. A model with a
    fixed input size can dream with ``octaves=1`` only (use ``include_top=False`` for more).

    Returns float32 of ``image``'s shape, in ``input_range``.
    """
    lo, hi = _input_range(input_range)
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("layers is empty: name at least one layer, e.g. net.feature_layers[2].")
    for name in names:
        require_spatial(model, name, purpose="DeepDream")
    if octaves < 1 or steps < 0:
        raise ValueError(f"octaves must be >= 1 and steps >= 0; got octaves={octaves}, steps={steps}.")
    if octave_scale <= 1:
        raise ValueError(f"octave_scale must be > 1 (each octave that much smaller); got {octave_scale}.")
    batch = _inputs.image_batch(model, image)
    fixed = _inputs.input_shape(model)[:2]
    if None not in fixed and octaves > 1:
        raise ValueError(f"Model {model.name!r} takes only {fixed[0]}x{fixed[1]} images, so it cannot see the "
                         "smaller octaves: pass octaves=1, or use the model built with include_top=False.")
    if batch.min() < lo - 1e-3 or batch.max() > hi + 1e-3:
        raise ValueError(f"The image's values run from {batch.min():.3g} to {batch.max():.3g}, outside "
                         f"input_range {(lo, hi)}: pass the *preprocessed* image (net.preprocess), "
                         "or the input_range of this model's preprocessing.")
    step = _cache.per_model(model, ("deep_dream", tuple(names), lo, hi), lambda: _dream_step(model, names, lo, hi))
    height, width = batch.shape[1:3]
    shapes = [(max(8, round(height / octave_scale ** k)), max(8, round(width / octave_scale ** k)))
              for k in range(octaves)][::-1]
    rng = np.random.default_rng(seed)
    bar = _progress(range(octaves * steps), desc=f"DeepDream on {', '.join(names)}", disable=not progress,
                    leave=False)
    dreamed = tf.constant(batch)
    detail = None
    for shape in shapes:
        base = tf.image.resize(batch, shape, method="bilinear")
        if detail is not None:
            detail = tf.image.resize(detail, shape, method="bilinear")
        dreamed = base if detail is None else tf.clip_by_value(base + detail, lo, hi)
        for _ in range(steps):
            shift = rng.integers(-shape[0] // 2, shape[0] // 2 + 1), rng.integers(-shape[1] // 2, shape[1] // 2 + 1)
            dreamed = step(dreamed, tf.constant(shift, tf.int32), tf.constant(float(step_size)))
            bar.update(1)
        detail = dreamed - base
    bar.close()
    return dreamed.numpy().astype("float32").reshape(np.shape(image))


def _dream_step(model, names, lo, hi):
    extractor = _inputs.outputs_model(model, names)
    spec = [tf.TensorSpec((None, None, None, model.inputs[0].shape[-1]), tf.float32),
            tf.TensorSpec((2,), tf.int32), tf.TensorSpec((), tf.float32)]

    @traced_once(input_signature=spec)
    def step(images, shift, step_size):
        rolled = tf.roll(images, shift, axis=[1, 2])
        with tf.GradientTape() as tape:
            tape.watch(rolled)
            maps = extractor(rolled, training=False)
            maps = maps if isinstance(maps, (list, tuple)) else [maps]
            total = tf.add_n([tf.reduce_mean(m) for m in maps])
        gradients = tape.gradient(total, rolled)
        gradients /= tf.math.reduce_std(gradients, axis=(1, 2, 3), keepdims=True) + 1e-8
        moved = tf.roll(rolled + step_size * gradients, -shift, axis=[1, 2])
        return tf.clip_by_value(moved, lo, hi)

    return step


def layer_activation(model: keras.Model, images, layers, *, batch_size: int | None = None) -> np.ndarray:
    """Per image ``(N,)``, float32: the sum over ``layers`` (a name or a list) of each layer's mean
    activation, DeepDream's objective. ``images``: a preprocessed batch or one image."""
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("layers is empty: name at least one layer, e.g. net.feature_layers[2].")
    for name in names:
        require_spatial(model, name, purpose="layer_activation")
    batch = _inputs.image_batch(model, images)
    batch_size = _inputs.chosen_batch_size(model, batch_size, batching.FORWARD, batch.shape[1:])
    extractor = _inputs.outputs_model(model, names)
    totals = []
    for part in _inputs.batches(len(batch), batch_size):
        maps = extractor(batch[part], training=False)
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        totals.append(np.sum([np.asarray(m, dtype="float64").mean(axis=(1, 2, 3)) for m in maps], axis=0))
    return np.concatenate(totals).astype("float32")
