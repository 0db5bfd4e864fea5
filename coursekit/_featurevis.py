"""The image parameterisation of the Distill article "Feature Visualization" (Olah, Mordvintsev and
Schubert, 2017), written for TensorFlow 2 / Keras 3. Its reference code, Lucid, needs TensorFlow 1.

Three parts are used, all three together (the article's images need them together):

1. **Fourier-space image.** The optimiser does not move pixels. It moves the real and imaginary
   parts of each colour channel's 2-D Fourier spectrum, each frequency ``f`` (cycles per pixel)
   multiplied by ``1 / max(f, 1 / size)`` before the inverse FFT. A unit change of a parameter
   then changes low frequencies far more than high ones, so the search favours the broad
   structures of natural images over pixel noise.
2. **Decorrelated colour.** The three channels the FFT returns are not R, G and B but the axes
   of a decorrelated colour space; a 3x3 matrix, the square root of the colour correlation of
   ImageNet photos (the values Lucid publishes), maps them to RGB, and a sigmoid to [0, 1].
   Steps then move brightness and colour independently, as they vary in photos.
3. **Transformation robustness.** Before every step the image is warped at random by one
   bilinear affine transform: shifted by up to ``size / 16`` pixels, scaled by 0.9 to 1.1,
   rotated by up to 10 degrees, grey where the warp leaves the image (Lucid pads with grey,
   jitters, scales, rotates and jitters again; one warp does the same at a fixed size, which a
   model with a fixed input size needs). A pattern must survive all of them, which removes
   patterns that only work pixel-exactly.

Not used: Lucid's Laplacian-pyramid and CPPN parameterisations, alpha channels, diversity
objectives, and its gradient-normalising op (Adam's per-parameter scaling does that job here).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# the square root of ImageNet's RGB correlation (Lucid, lucid/optvis/param/color.py), columns
# scaled so that the longest has length 1
COLOR_CORRELATION_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                     [0.27, 0.00, -0.05],
                                     [0.27, -0.09, 0.03]], dtype="float32")
COLOR_MATRIX = COLOR_CORRELATION_SQRT / np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0).max()
SPECTRUM_SD = 0.01        # start: normal noise of this sd on every spectrum parameter
OUTPUT_SCALE = 0.25       # the inverse FFT's output is divided by 4 before the colour matrix (as Lucid)
LEARNING_RATE = 0.05      # Adam, on the spectrum parameters
MAX_SHIFT_SHARE = 1 / 16  # transformation robustness: shift up to size / 16 pixels
SCALES = (0.9, 1.1)       #                            scale factor range
MAX_DEGREES = 10.0        #                            rotation range, +-


def frequency_scale(size: int, decay: float = 1.0) -> np.ndarray:
    """``1 / max(f, 1 / size) ** decay * size`` for the ``(size, size // 2 + 1)`` frequencies of a real FFT."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    frequencies = np.sqrt(fx ** 2 + fy ** 2)
    return (size / np.maximum(frequencies, 1.0 / size) ** decay).astype("float32")


def start_spectrum(seeds, size: int, grey: bool = False) -> np.ndarray:
    """Spectrum parameters ``(N, 2, 3, size, size // 2 + 1)``: noise from each seed, or zeros (a grey image)."""
    shape = (2, 3, size, size // 2 + 1)
    if grey:
        return np.zeros((len(seeds), *shape), dtype="float32")
    return np.stack([np.random.default_rng(seed).normal(0, SPECTRUM_SD, shape) for seed in seeds]).astype("float32")


def spectrum_to_rgb(spectrum: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Spectrum parameters ``(N, 2, 3, size, size // 2 + 1)`` -> RGB images ``(N, size, size, 3)`` in (0, 1)."""
    size = spectrum.shape[3]
    complex_spectrum = tf.complex(spectrum[:, 0] * scale, spectrum[:, 1] * scale)
    channels = tf.signal.irfft2d(complex_spectrum, fft_length=[size, size])  # (N, 3, size, size)
    decorrelated = tf.transpose(channels, (0, 2, 3, 1)) * OUTPUT_SCALE
    rgb = tf.einsum("nhwc,dc->nhwd", decorrelated, tf.constant(COLOR_MATRIX))
    return tf.sigmoid(rgb)


def random_warps(seed, steps: int, size: int) -> np.ndarray:
    """``(steps, 8)`` projective-transform rows (TensorFlow's convention: output -> input pixel)
    for random shifts, scales and rotations about the image centre, drawn from ``seed`` alone."""
    rng = np.random.default_rng(seed)
    max_shift = max(1.0, size * MAX_SHIFT_SHARE)
    shifts = rng.uniform(-max_shift, max_shift, (steps, 2))
    scales = rng.uniform(*SCALES, steps)
    angles = np.deg2rad(rng.uniform(-MAX_DEGREES, MAX_DEGREES, steps))
    centre = (size - 1) / 2
    rows = np.zeros((steps, 8), dtype="float32")
    for i in range(steps):
        # output pixel p maps to input pixel centre + R(-angle) (p - centre - shift) / scale
        cos, sin = math.cos(angles[i]) / scales[i], math.sin(angles[i]) / scales[i]
        dx, dy = shifts[i]
        ox, oy = centre + dx, centre + dy
        rows[i, :6] = [cos, sin, centre - cos * ox - sin * oy, -sin, cos, centre + sin * ox - cos * oy]
    return rows


def warp(images: tf.Tensor, rows: tf.Tensor, fill: float = 0.5) -> tf.Tensor:
    """Apply one transform row per image (bilinear; ``fill`` outside the image). Differentiable."""
    warped = tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=rows, output_shape=tf.shape(images)[1:3],
                                                   fill_value=fill, interpolation="BILINEAR", fill_mode="CONSTANT")
    warped.set_shape(images.shape)
    return warped


def high_frequency_share(images, cutoff: float = 0.25) -> np.ndarray:
    """Per image ``(N,)``: the share of spectral energy (mean removed, all channels) at frequencies
    above ``cutoff`` cycles per pixel (0.5 is the highest). Plain gradient ascent's noise sits there."""
    batch = np.asarray(images, dtype="float64")
    if batch.ndim == 3:
        batch = batch[None]
    centred = batch - batch.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred, axes=(1, 2))) ** 2
    fy = np.fft.fftfreq(batch.shape[1])[:, None]
    fx = np.fft.fftfreq(batch.shape[2])[None, :]
    high = np.sqrt(fx ** 2 + fy ** 2) > cutoff
    total = power.sum(axis=(1, 2, 3))
    return np.where(total > 0, power[:, high].sum(axis=(1, 2)) / np.where(total > 0, total, 1), 0.0)
