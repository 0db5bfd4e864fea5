"""How many images a method sends through a model at once, chosen from the model's memory per image.

A method's memory grows with the images it has in flight. To take a gradient, the forward pass
keeps every layer's output for the backward pass; a forward pass alone holds only a few layers'
outputs at a time. So one fixed ``batch_size=32`` that suits a 28 px digit CNN (about 0.1 MB of
activations per image) asks for about 10 GB with Xception at 299 px (about 0.3 GB per image for a
gradient). The methods of the course take ``batch_size=None`` by default and get it here:

* :func:`activation_bytes`: the bytes of every layer's output for one image (their sum, and the
  largest), read from the model's layer shapes, nested models included: no image is run;
* :func:`bytes_per_image`: what one image costs while ``"gradient"`` or ``"forward"`` work runs,
  that sum (or the largest output) times a factor measured on MobileNetV2 and Xception
  (``python bench/batch_memory.py`` measures it again);
* :func:`batch_size_for`: the largest batch whose images fit ``budget_mb`` (default: the
  profile's ``batch_memory_mb``), at least 1, at most ``MOST``.

A method's result never depends on its batch size; a given ``batch_size`` always overrides.
"""
from __future__ import annotations

import math
import numbers

import keras
import numpy as np

from . import _cache

GRADIENT = "gradient"   # forward and backward pass: every activation is kept for the backward pass
FORWARD = "forward"     # forward pass only: a layer's output is freed once the next layers have read it
WORKS = (GRADIENT, FORWARD)

# bytes in flight per image / bytes of activations per image, measured with bench/batch_memory.py
# (TensorFlow 2.21 on CPU, compiled steps; the largest ratio over MobileNetV2 at 224 px and
# Xception at 299 px, rounded up): a gradient keeps the forward activations and the gradients
# of the widest layers; a forward pass holds a few of the widest outputs at once.
GRADIENT_FACTOR = 1.5    # times the sum of all layers' outputs
FORWARD_FACTOR = 4.0     # times the largest layer's output
MOST = 256               # beyond this no CPU or GPU runs a small model noticeably faster
DEFAULT_BUDGET_MB = 1024  # used when no profile can be read


def activation_bytes(model: keras.Model, image_shape: tuple | None = None) -> tuple[int, int]:
    """``(total, largest)``: bytes of all layers' outputs for one image, and of the largest output.

    Read from the layers' output shapes (float32 unless a layer says otherwise), inside nested
    models too; a layer used twice counts once. ``image_shape`` ``(H, W, C)`` fills dimensions the
    model leaves open (``None``), taken as large as the image: an upper bound.
    """
    key = ("activation_bytes", None if image_shape is None else tuple(image_shape))
    return _cache.per_model(model, key, lambda: _activation_bytes(model, image_shape))


def _activation_bytes(model: keras.Model, image_shape) -> tuple[int, int]:
    from ._inputs import input_shape
    image = tuple(image_shape) if image_shape is not None else input_shape(model)
    side = max((int(d) for d in image[:-1] if d is not None), default=1)
    sizes = [_bytes(input_shape(model), image, side, "float32")]
    for layer in _leaf_layers(model):
        shapes = [(tuple(tensor.shape[1:]), getattr(tensor, "dtype", "float32"))
                  for node in getattr(layer, "_inbound_nodes", []) for tensor in _node_outputs(node)]
        if shapes:
            sizes.append(max(_bytes(shape, image, side, dtype) for shape, dtype in shapes))
    return int(sum(sizes)), int(max(sizes))


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model) and getattr(layer, "layers", None):
            yield from _leaf_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _node_outputs(node) -> list:
    outputs = getattr(node, "output_tensors", None) or []
    return [tensor for tensor in outputs if hasattr(tensor, "shape") and len(tensor.shape) >= 1]


def _bytes(shape: tuple, image: tuple, side: int, dtype) -> int:
    """Bytes of one image's tensor of ``shape`` (no batch axis); an open dimension is taken as ``side``."""
    count = math.prod(int(d) if d is not None else side for d in shape)
    try:
        itemsize = np.dtype(str(dtype).replace("tf.", "")).itemsize
    except TypeError:
        itemsize = 4
    return count * itemsize


def bytes_per_image(model: keras.Model, work: str = GRADIENT, image_shape: tuple | None = None) -> int:
    """Estimated bytes one image of a batch holds while ``work`` (``"gradient"`` or ``"forward"``) runs."""
    if work not in WORKS:
        raise ValueError(f"work must be one of {WORKS}; got {work!r}.")
    total, largest = activation_bytes(model, image_shape)
    return int(GRADIENT_FACTOR * total if work == GRADIENT else FORWARD_FACTOR * largest)


def profile_budget_mb() -> int:
    """The profile's ``batch_memory_mb``: memory one batch of a method may take (MB)."""
    from .env import profile
    try:
        return int(profile().batch_memory_mb)
    except ValueError:   # an unknown COURSEKIT_PROFILE: its own error comes where the profile is read
        return DEFAULT_BUDGET_MB


def batch_size_for(model: keras.Model, work: str = GRADIENT, *, budget_mb: float | None = None,
                   image_shape: tuple | None = None, most: int = MOST) -> int:
    """The largest batch of images whose ``work`` fits ``budget_mb`` megabytes: at least 1, at most ``most``.

    ``work``: ``"gradient"`` (saliency, SmoothGrad, Integrated Gradients, Grad-CAM: a forward and a
    backward pass) or ``"forward"`` (occlusion, deletion / insertion curves, feature maps, Score-CAM's
    masked copies). ``budget_mb`` defaults to the profile's ``batch_memory_mb`` (smoke 512, quick
    1,024, full 2,048). E.g. Xception at 299 px: 3 images for a gradient in ``quick``; the course's
    28 px MNIST CNN: ``most``.
    """
    budget = profile_budget_mb() if budget_mb is None else budget_mb
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not budget > 0:
        raise ValueError(f"budget_mb must be a positive number of megabytes; got {budget!r}.")
    per_image = max(bytes_per_image(model, work, image_shape), 1)
    return int(min(max(budget * 2 ** 20 // per_image, 1), most))
