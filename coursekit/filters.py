"""What a filter responds to: its kernel weights, and images made to excite it by gradient ascent.

Gradient ascent starts from a grey image with faint noise and repeatedly moves the image along
the (L2-normalised) gradient of one filter's mean activation (the border of the feature map is
left out: units there see mostly padding). The regularised mode adds the two cheapest tricks the
Distill article "Feature Visualization" (Olah, Mordvintsev and Schubert, 2017) found to remove the
high-frequency noise plain ascent produces: *transformation robustness* (the image is shifted by a
random jitter of a few pixels before every step, so a pattern must work wherever it lies) and
*frequency penalisation* (a light Gaussian blur after every step).
"""
from __future__ import annotations

import dataclasses
import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf

from . import _cache, _inputs
from ._inputs import find_layer, require_spatial

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
                    batch_size: int | None = None, progress: bool = True, return_report: bool = False):
    """Images that excite ``filters`` of ``layer``, found by gradient ascent on the input.

    ``filters``: a filter index or a list of them (``range(16)`` works). The filters of a call are
    optimised together, one image each, as a batch in a compiled step: all of them at once on a
    GPU, ``CPU_BATCH`` at a time on a CPU (``batch_size`` overrides this). Filter ``f`` starts
    from noise drawn from ``(seed, f)`` and images do not interact, so a filter's result does not
    depend on the others in the batch. ``size``: side of the images in pixels; a model with a
    fixed input size needs exactly that size. ``lr``: L2 length of each step in input units. ``regularize``: add jitter and blur
    (module docstring). The images are in the model's preprocessed input space: show them with
    :func:`deprocess`.

    Returns float32 ``(F, size, size, channels)``, or ``(images, AscentReport)`` with
    ``return_report``. Filters with zero gradient throughout are reported with a
    :class:`DeadFilterWarning` and in ``AscentReport.dead``, and their images are zeros.
    """
    target = require_spatial(model, layer, purpose="Gradient ascent on a filter")
    indices = _filter_indices(filters, int(target.output.shape[-1]), layer)
    channels = _check_size(model, size)
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}.")
    extractor = _inputs.outputs_model(model, [layer])   # a layer inside a nested backbone works too
    _check_map_size(extractor, size, layer)
    step = _cache.per_model(model, ("ascent_step", layer, size), lambda: _ascent_step(extractor, size))
    blur = _cache.per_model(model, ("blur", channels), lambda: _blur(channels))

    if batch_size is None:
        batch_size = len(indices) if tf.config.list_physical_devices("GPU") else CPU_BATCH
    parts = _inputs.batches(len(indices), batch_size)
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
    for i in _progress(range(steps), desc=f"{layer}: {len(indices)} filters", disable=not progress,
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


def _progress(iterable, **options):
    """tqdm's notebook bar where ipywidgets exists (Colab), its text bar elsewhere."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm(iterable, **options)


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

    @tf.function(input_signature=signature)
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

    @tf.function(reduce_retracing=True)
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
