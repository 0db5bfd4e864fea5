"""How many images a method sends through a model at once, chosen from the model's memory per image.

A method's memory grows with the images it has in flight. To take a gradient, the forward pass
keeps layers' outputs for the backward pass; a forward pass alone holds only a few layers' outputs
at a time. So one fixed ``batch_size=32`` that suits a 28 px digit CNN (a fraction of a MB per
image) asks for over 3 GB with Xception at 299 px (about 0.1 GB per image in a compiled gradient
step, 0.4 GB under an eager ``GradientTape``). The methods of the course take ``batch_size=None``
by default and get it here:

* :func:`activation_bytes`: the bytes of every layer's output for one image (their sum, and the
  largest), read from the model's layer shapes, nested models included: no image is run;
* :func:`bytes_per_image`: what one image costs while the work runs (``"gradient"``,
  ``"eager gradient"`` or ``"forward"``): that sum (or the largest output) times a factor
  measured on MobileNetV2 and Xception (``python bench/batch_memory.py`` measures it again);
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

GRADIENT = "gradient"               # a compiled step (tf.function): forward and backward pass
EAGER_GRADIENT = "eager gradient"   # the same under a GradientTape in plain Python, as lessons write it
FORWARD = "forward"                 # a forward pass only: a layer's output is freed once it is read
WORKS = (GRADIENT, EAGER_GRADIENT, FORWARD)

# Bytes one image adds while the work runs, per byte of its activations (the sum of all layers'
# outputs for a gradient, the largest output for a forward pass): measured with
# bench/batch_memory.py (TensorFlow 2.21, CPU; the largest ratio over MobileNetV2 at 224 px and
# Xception at 299 px, with a margin). A compiled step frees what the backward pass no longer
# needs; an eager tape keeps every intermediate tensor of every layer until the gradient is taken.
FACTORS = {GRADIENT: 0.6, EAGER_GRADIENT: 2.0, FORWARD: 4.0}
MOST = 256               # beyond this no CPU or GPU runs a small model noticeably faster
DEFAULT_BUDGET_MB = 1024  # used when no profile can be read


def activation_bytes(model: keras.Model, image_shape: tuple | None = None) -> tuple[int, int]:
    """``(total, largest)``: bytes of all layers' outputs for one image, and of the largest output.

    Keras' shape inference is run through the model's graph on one image of ``image_shape``
    ``(H, W, C)`` (default: the model's input shape), inside nested models too, so that a backbone
    built for any image size gets the sizes of this one; nothing is computed on data. A model whose
    graph cannot be walked (a subclassed model) falls back to its layers' recorded output shapes.
    """
    from ._inputs import input_shape
    image = tuple(image_shape) if image_shape is not None else input_shape(model)
    if any(d is None for d in image):
        raise ValueError(f"Model {model.name!r} takes images of any size {image}: pass image_shape=(H, W, C).")
    key = ("activation_bytes", image)
    return _cache.per_model(model, key, lambda: _activation_bytes(model, image))


def _activation_bytes(model: keras.Model, image: tuple) -> tuple[int, int]:
    try:
        sizes = _inferred_sizes(model, image)
    except Exception:   # no functional graph to walk: the shapes the layers recorded, open sides as the image's
        sizes = _recorded_sizes(model, image)
    sizes.append(_bytes(image, "float32"))
    return int(sum(sizes)), int(max(sizes))


def _inferred_sizes(model: keras.Model, image: tuple) -> list[int]:
    """Bytes of every operation's output when one ``image`` runs through ``model`` (shape inference only)."""
    sizes: list[int] = []

    def graph_of(op):
        op = getattr(op, "_functional", None) or op      # a built Sequential runs a Functional inside
        return op if hasattr(op, "_run_through_graph") else None

    def recorded(op):
        inner = graph_of(op)
        if inner is not None:                            # a nested model: walk its own graph
            return lambda inputs, *args, **kwargs: inner._run_through_graph(inputs, operation_fn=recorded)

        def spec(*args, **kwargs):
            kwargs.pop("training", None)
            output = op.compute_output_spec(*args, **kwargs)
            sizes.extend(_bytes(t.shape[1:], t.dtype) for t in keras.tree.flatten(output))
            return output
        return spec

    graph = graph_of(model)
    if graph is None:
        raise TypeError(f"{type(model).__name__} has no functional graph")
    graph._run_through_graph(keras.KerasTensor((1, *image)), operation_fn=recorded)
    if not sizes:
        raise ValueError("no operation ran")
    return sizes


def _recorded_sizes(model: keras.Model, image: tuple) -> list[int]:
    side = max(int(d) for d in image[:-1])
    sizes = []
    for layer in _leaf_layers(model):
        shapes = [(tuple(tensor.shape[1:]), getattr(tensor, "dtype", "float32"))
                  for node in getattr(layer, "_inbound_nodes", []) for tensor in _node_outputs(node)]
        if shapes:
            sizes.append(max(_bytes(tuple(side if d is None else d for d in shape), dtype) for shape, dtype in shapes))
    return sizes


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model) and getattr(layer, "layers", None):
            yield from _leaf_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _node_outputs(node) -> list:
    outputs = getattr(node, "output_tensors", None) or []
    return [tensor for tensor in outputs if hasattr(tensor, "shape") and len(tensor.shape) >= 1]


def _bytes(shape: tuple, dtype) -> int:
    """Bytes of one image's tensor of ``shape`` (no batch axis)."""
    count = math.prod(int(d) for d in shape)
    try:
        itemsize = np.dtype(str(dtype).replace("tf.", "")).itemsize
    except TypeError:
        itemsize = 4
    return count * itemsize


def bytes_per_image(model: keras.Model, work: str = GRADIENT, image_shape: tuple | None = None) -> int:
    """Estimated bytes one image of a batch holds while ``work`` runs (one of ``WORKS``)."""
    if work not in WORKS:
        raise ValueError(f"work must be one of {WORKS}; got {work!r}.")
    total, largest = activation_bytes(model, image_shape)
    return int(FACTORS[work] * (largest if work == FORWARD else total))


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
    backward pass in a compiled step), ``"eager gradient"`` (the same written with a
    ``GradientTape`` in plain Python, as a lesson's from-scratch cell does: it keeps several times
    more) or ``"forward"`` (occlusion, deletion / insertion curves, feature maps, Score-CAM's
    masked copies). ``budget_mb`` defaults to the profile's ``batch_memory_mb`` (smoke 512, quick
    1,024, full 2,048). E.g. Xception at 299 px in ``quick``: 7 images for a compiled gradient, 2
    under an eager tape, 24 for a forward pass; the course's 28 px MNIST CNN: ``most``.
    """
    budget = profile_budget_mb() if budget_mb is None else budget_mb
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not budget > 0:
        raise ValueError(f"budget_mb must be a positive number of megabytes; got {budget!r}.")
    per_image = max(bytes_per_image(model, work, image_shape), 1)
    return int(min(max(budget * 2 ** 20 // per_image, 1), most))
