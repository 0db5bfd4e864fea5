"""What saliency, Grad-CAM and filter patterns share: checking a batch, picking classes, batching."""
from __future__ import annotations

import numbers

import numpy as np

from .features import _check_input_shape

TOP_PREDICTION = -1  # class code meaning "the model's top class for this image"


def as_batch(model, images) -> np.ndarray:
    """``images`` as a float32 batch ``(N, H, W, C)`` that fits ``model``'s input, or a clear error.

    One image ``(H, W, C)`` becomes a batch of one; for a one-channel model (MNIST), a batch of
    ``(N, H, W)`` gets its channel axis.
    """
    batch = np.asarray(images, dtype="float32")
    expected = tuple(model.inputs[0].shape[1:])
    if (batch.ndim == len(expected) == 3 and expected[-1] == 1
            and all(e is None or e == g for e, g in zip(expected[:2], batch.shape[1:]))):
        batch = batch[..., None]
    elif batch.ndim == len(expected):
        batch = batch[None]
    _check_input_shape(batch.shape[1:], expected, model.name)
    if len(batch) == 0:
        raise ValueError("The batch is empty: pass at least one image.")
    return batch


def class_codes(class_index, count: int, n_classes: int) -> np.ndarray:
    """One class per image as int32 ``(count,)``; ``TOP_PREDICTION`` where ``class_index`` is None.

    ``class_index`` is None (each image's top class), one int (the same class for every image)
    or a list with one int (or None) per image.
    """
    if class_index is None:
        return np.full(count, TOP_PREDICTION, dtype="int32")
    if isinstance(class_index, numbers.Integral):
        wanted = [int(class_index)] * count
    else:
        wanted = list(np.asarray(class_index, dtype=object).ravel()) \
            if not isinstance(class_index, (list, tuple)) else list(class_index)
        if len(wanted) != count:
            raise ValueError(f"class_index has {len(wanted)} entries but there are {count} images: "
                             "give one class per image, a single int for all, or None for each "
                             "image's top prediction.")
    codes = []
    for value in wanted:
        if value is None:
            codes.append(TOP_PREDICTION)
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"class_index must hold ints (or None); got {value!r} "
                            f"({type(value).__name__}). For a class name, use "
                            "Pretrained.class_index('tabby').")
        if not 0 <= int(value) < n_classes:
            raise ValueError(f"class_index {int(value)} is out of range: the model has {n_classes} "
                             f"classes, numbered 0 to {n_classes - 1}.")
        codes.append(int(value))
    return np.asarray(codes, dtype="int32")


def n_classes(model) -> int:
    shape = model.outputs[0].shape
    if len(shape) != 2:
        raise ValueError(f"Model {model.name!r} outputs shape {tuple(shape)}; class scores "
                         "(N, classes) are needed.")
    return int(shape[-1])


def chunks(count: int, size: int):
    """``slice`` objects covering ``range(count)`` in pieces of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch_size must be at least 1; got {size}.")
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def scale_to_unit(maps: np.ndarray) -> np.ndarray:
    """Divide each map of ``(N, ...)`` by its maximum: values in [0, 1]; an all-zero map stays 0."""
    maps = np.asarray(maps, dtype="float32")
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0).astype("float32")
