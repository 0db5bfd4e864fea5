"""Feature maps: what each layer outputs for an image, tiled for display; receptive fields."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from . import _forward, _inputs, batching
from ._inputs import require_spatial

FEATURE_LAYER_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D,
                       keras.layers.DepthwiseConv2D, keras.layers.MaxPooling2D,
                       keras.layers.AveragePooling2D)


def default_feature_layers(model: keras.Model) -> list[str]:
    """Every convolution (plain, separable, depthwise) and local pooling layer, in order.

    Layers inside nested sub-models (a backbone in a transfer-learning model) are included, by
    their own name when it is unique across the nesting, else by path (``"backbone/conv1"``).
    """
    return [_inputs.short_name(model, path) for path, layer in _inputs.layer_paths(model).items()
            if isinstance(layer, FEATURE_LAYER_TYPES)]


def activation_model(model: keras.Model, layers: list[str] | tuple[str, ...]) -> keras.Model:
    """A model from ``model``'s input to the outputs of ``layers`` (a list), built once and cached.

    Works for layers inside nested sub-models too (:func:`coursekit._inputs.outputs_model`).
    """
    return _inputs.outputs_model(model, list(layers))


def feature_maps(model: keras.Model, images, layers=None, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Outputs of ``layers`` for a preprocessed batch ``images`` ``(N, H, W, C)`` (or one image).

    ``layers`` is a layer name, a list of names (or paths into nested models), or None for
    :func:`default_feature_layers`. Returns ``{layer_name: array}``, each ``(N, h, w, channels)``
    (or whatever shape the layer outputs), in the order of ``layers``; ``batch_size`` images go
    through the model at a time (None: as many as fit the profile's memory budget for a forward
    pass, :mod:`coursekit.batching`; it never changes the result).
    """
    if isinstance(layers, str):
        names = [layers]
    else:
        names = list(layers) if layers is not None else default_feature_layers(model)
    if not names:
        raise ValueError(f"Model {model.name!r} has no convolution or pooling layer to read: pass layer "
                         "names, e.g. layers=['conv1'] (coursekit.models.layer_names(model) lists them).")
    batch = _inputs.image_batch(model, images)
    batch_size = _inputs.chosen_batch_size(model, batch_size, batching.FORWARD, batch.shape[1:])
    extractor = activation_model(model, names)
    return dict(zip(names, _forward.predict_all(extractor, batch, batch_size)))


def normalize_channels(fmap: np.ndarray) -> np.ndarray:
    """Scale each channel of ``(H, W, C)`` for display, values in [0, 1].

    Each channel runs from 0 (or its lowest value, when it has negative ones) at 0 to its own
    largest value at 1. After a ReLU zero is the darkest colour, so a channel that is zero
    everywhere is a dark tile and a channel that fires in a few places is a dark tile with a few
    bright spots: the sparsity of the activations shows. A channel that is constant and above
    zero is 1 everywhere (a bright tile); one that is zero (or negative) everywhere is 0.
    """
    fmap = np.asarray(fmap, dtype="float32")
    low = np.minimum(fmap.min(axis=(0, 1), keepdims=True), 0.0)
    high = fmap.max(axis=(0, 1), keepdims=True)
    spread = high - low                       # 0 only for a constant channel at or below zero
    return np.where(spread > 0, (fmap - low) / np.where(spread > 0, spread, 1.0), 0.0).astype("float32")


def tile_channels(fmap, per_row: int = 16, gap: int = 1, normalize: bool = True,
                  gap_value: float = np.nan) -> np.ndarray:
    """All channels of one feature map side by side: a 2-D grid image.

    ``fmap`` is ``(H, W, C)`` or ``(1, H, W, C)``. Channel ``k`` goes to row ``k // per_row``,
    column ``k % per_row``; its top-left pixel is at ``(row * (H + gap), col * (W + gap))``.
    Every channel is kept: the last row is padded with blank tiles when ``C`` is not a multiple of
    ``per_row``. With ``normalize`` each channel is scaled as in :func:`normalize_channels`
    (values in [0, 1], 0 at zero for a ReLU output). Gaps hold ``gap_value`` (NaN: drawn blank by ``imshow``).
    """
    fmap = np.asarray(fmap, dtype="float32")
    if fmap.ndim == 4 and fmap.shape[0] == 1:
        fmap = fmap[0]
    if fmap.ndim != 3:
        raise ValueError(f"tile_channels needs one feature map (H, W, C) or (1, H, W, C); got shape "
                         f"{fmap.shape}. A 2-D output (N, units) comes from a Dense or pooling "
                         "layer: pick a convolution or pooling layer, or select one image first.")
    if per_row < 1:
        raise ValueError(f"per_row must be at least 1; got {per_row}.")
    height, width, channels = fmap.shape
    if normalize:
        fmap = normalize_channels(fmap)
    columns = min(per_row, channels)
    rows = -(-channels // columns)
    tiles = np.full((rows * columns, height + gap, width + gap), gap_value, dtype="float32")
    tiles[:, :height, :width] = 0.0
    tiles[:channels, :height, :width] = np.moveaxis(fmap, -1, 0)
    grid = tiles.reshape(rows, columns, height + gap, width + gap).transpose(0, 2, 1, 3)
    grid = grid.reshape(rows * (height + gap), columns * (width + gap))
    return grid[:grid.shape[0] - gap, :grid.shape[1] - gap] if gap else grid


# ----------------------------------------------------------------------------- receptive fields

@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """What one unit of a layer sees in input pixels.

    ``size``: side of the square of input pixels that can affect the unit. ``jump``: input pixels
    between neighbouring units (the product of all strides so far). ``start``: input coordinate of
    the first pixel unit ``(0, 0)`` sees (negative: its field reaches into the zero padding).
    Unit ``i`` sees input pixels ``start + i * jump`` to ``start + i * jump + size - 1``.
    """

    size: int
    jump: int
    start: int


_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def receptive_field(model: keras.Model, layer: str) -> ReceptiveField:
    """Receptive field of one unit of ``layer``, from kernel sizes, strides, dilations and padding.

    ``layer`` is a name, or a path ``"backbone/layer"`` into a nested model (a pretrained backbone
    inside a transfer-learning model): nested functional and Sequential models are followed into.
    Follows the whole graph: where branches merge (``Add``, ``Concatenate``) the larger field is
    kept. ``same`` padding is taken as TensorFlow pads: ``(k_eff - 1) // 2`` on the top/left at
    stride 1, and for stride ``s`` what an input side divisible by ``s`` needs.
    """
    target = require_spatial(model, layer, purpose="a receptive field")
    found = _fields(model, ReceptiveField(1, 1, 0), target)[1]
    if found is None:
        raise AssertionError(f"layer {layer!r} was not reached")  # require_spatial found it
    return found


def _fields(model: keras.Model, entry: ReceptiveField, target) -> tuple[ReceptiveField, ReceptiveField | None]:
    """``(field of model's output, field of target or None)`` when ``model``'s input has field ``entry``."""
    fields: dict[str, ReceptiveField] = {}
    previous = entry
    for current in model.layers:
        if isinstance(model, keras.Sequential):  # a chain: each layer reads the one before
            inbound = [previous]
        else:
            inbound = [fields[name] for name in _inbound_layer_names(current) if name in fields] or [entry]
        widest = max(inbound, key=lambda field: field.size)
        if isinstance(current, keras.Model):
            output, inside = _fields(current, widest, target)
            if inside is not None:
                return output, inside
            fields[current.name] = output
        else:
            fields[current.name] = _through(current, widest)
        if current is target:
            return fields[current.name], fields[current.name]
        previous = fields[current.name]
    if isinstance(model, keras.Sequential):
        return previous, None
    ends = [fields[t._keras_history[0].name] for t in model.outputs if t._keras_history[0].name in fields]
    return (max(ends, key=lambda field: field.size) if ends else previous), None


def _inbound_layer_names(layer) -> list[str]:
    names = []
    for node in getattr(layer, "_inbound_nodes", []):
        for tensor in node.input_tensors:
            history = getattr(tensor, "_keras_history", None)
            if history is not None:
                names.append(history[0].name)
    return names


def _through(layer, field: ReceptiveField) -> ReceptiveField:
    if isinstance(layer, keras.layers.ZeroPadding2D):
        top = layer.padding[0][0]
        return ReceptiveField(field.size, field.jump, field.start - top * field.jump)
    if isinstance(layer, keras.layers.Cropping2D):
        top = layer.cropping[0][0]
        return ReceptiveField(field.size, field.jump, field.start + top * field.jump)
    if isinstance(layer, _CONVOLUTIONS):
        kernel, stride, dilation, padding = (layer.kernel_size[0], layer.strides[0],
                                             layer.dilation_rate[0], layer.padding)
    elif isinstance(layer, _POOLING):
        kernel, stride, dilation, padding = layer.pool_size[0], layer.strides[0], 1, layer.padding
    else:
        return field  # element-wise layers (activations, batch norm, add, ...) keep the field
    effective = dilation * (kernel - 1) + 1
    pad_before = max(effective - stride, 0) // 2 if padding == "same" else 0
    return ReceptiveField(size=field.size + (effective - 1) * field.jump,
                          jump=field.jump * stride,
                          start=field.start - pad_before * field.jump)


# ----------------------------------------------------------------------------- what excites a unit

def unit_activations(model: keras.Model, layer: str, images, batch_size: int | None = None) -> np.ndarray:
    """One number per (image, unit) of ``layer``: ``(N, units)``.

    A unit of a Dense (or any 2-D) layer is one of its outputs. A unit of a convolution layer is
    one channel, and its activation for an image is the channel's largest value anywhere in the
    map (the strongest match of its pattern).
    """
    out = feature_maps(model, images, layers=[layer], batch_size=batch_size)[layer]
    if out.ndim == 4:
        return out.max(axis=(1, 2))
    if out.ndim != 2:
        raise ValueError(f"Layer {layer!r} outputs shape {out.shape[1:]} per image; top_activating "
                         "needs a Dense layer (N, units) or a convolution layer (N, H, W, channels).")
    return out


def top_activating(model: keras.Model, layer: str, images, k: int = 10,
                   batch_size: int | None = None) -> np.ndarray:
    """Indices of the ``k`` images that most activate each unit of ``layer``.

    ``images`` is the model's preprocessed batch ``(N, ...)``; activations are as in
    :func:`unit_activations`. Returns ``(units, k)`` integers into ``images``: row ``u`` lists the
    images for unit ``u``, strongest first (ties broken by the lower index).
    """
    count = len(images)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number >= 1; got {k!r}.")
    if k > count:
        raise ValueError(f"k={k} is more than the {count} images given: pass more images or a smaller k.")
    activations = unit_activations(model, layer, images, batch_size=batch_size)
    order = np.argsort(-activations, axis=0, kind="stable")[:k]
    return order.T
