"""Occlusion maps (Zeiler & Fergus 2014): hide one patch at a time and measure how much a score drops."""
from __future__ import annotations

import keras
import numpy as np

from . import _forward, _inputs, batching
from .models import pre_softmax


def patch_corners(size: int, patch: int, stride: int) -> np.ndarray:
    """Top (or left) coordinates of the patches along one side of ``size`` pixels.

    Every ``stride`` pixels from 0, plus a last patch flush with the far edge so that every pixel
    is covered at least once.
    """
    corners = list(range(0, size - patch + 1, stride))
    if corners[-1] != size - patch:
        corners.append(size - patch)
    return np.array(corners)


def check_patch(patch, stride, height: int, width: int) -> None:
    """Raise a ValueError unless ``patch`` (1 to the image side) and ``stride`` (>= 1) are whole pixels."""
    if isinstance(patch, bool) or not (isinstance(patch, (int, np.integer)) and 1 <= patch <= min(height, width)):
        raise ValueError(f"patch must be a whole number of pixels between 1 and {min(height, width)} "
                         f"(the image side); got {patch!r}.")
    if isinstance(stride, bool) or not (isinstance(stride, (int, np.integer)) and stride >= 1):
        raise ValueError(f"stride must be a whole number of pixels >= 1; got {stride!r}.")


def occlusion_map(model: keras.Model, images, class_index=None, patch: int = 8, stride: int = 4,
                  fill: float = 0.0, batch_size: int | None = None) -> np.ndarray:
    """How much a score drops when a ``patch`` x ``patch`` square of each image is hidden.

    ``images``: the model's preprocessed batch ``(N, H, W, C)`` (or one image). Every position of the square,
    ``stride`` pixels apart (plus one flush with the right and bottom edges), is replaced by
    ``fill`` (a value in the model's input space: 0.0 is black for the course's MNIST models, mid
    grey for MobileNet's [-1, 1] inputs), and the occluded copies are made and sent through the
    model ``batch_size`` at a time (None: as many as fit the profile's memory budget for a forward
    pass, :mod:`coursekit.batching`); only one batch of copies exists at a time.

    The score is the model's output column ``class_index`` taken *before* the softmax (the logit):
    ``None`` = each image's top prediction, an int for all images, or a sequence with one per image.
    A model whose output is not a softmax (e.g. a sub-model ending at a hidden layer) is scored as
    it is, so occlusion maps of single units work too; a 4-D output ``(N, h, w, C)`` is averaged
    over ``h, w`` first.

    Returns ``(N, H, W)`` float32: at each pixel, the mean over the squares covering it of
    ``score(image) - score(occluded image)``. Positive: hiding it lowers the score.
    """
    batch = _inputs.image_batch(model, images)
    batch_size = _inputs.chosen_batch_size(model, batch_size, batching.FORWARD, batch.shape[1:])  # refuses a bad one first
    count, height, width = batch.shape[:3]
    check_patch(patch, stride, height, width)
    score_model = pre_softmax(model)   # logits, or the model's own output when it has no softmax
    base = _predict(score_model, batch, batch_size)
    classes = _inputs.resolve_classes(_inputs.class_codes(class_index, count, base.shape[1]), base)
    tops, lefts = patch_corners(height, patch, stride), patch_corners(width, patch, stride)
    positions = [(top, left) for top in tops for left in lefts]

    image_of = np.repeat(np.arange(count), len(positions))      # every (image, position) pair
    position_of = np.tile(np.arange(len(positions)), count)
    drops = np.zeros(count * len(positions), dtype="float32")
    for start in range(0, len(image_of), batch_size):  # a few forward passes, never one per position
        rows = slice(start, start + batch_size)
        occluded = batch[image_of[rows]]                      # fancy indexing copies
        for copy, p in zip(occluded, position_of[rows]):
            top, left = positions[p]
            copy[top:top + patch, left:left + patch, :] = fill
        scores = _predict(score_model, occluded, batch_size)
        target = classes[image_of[rows]]
        drops[rows] = base[image_of[rows], target] - scores[np.arange(len(target)), target]
    drops = drops.reshape(count, len(positions))

    total = np.zeros((count, height, width), dtype="float32")
    covered = np.zeros((height, width), dtype="float32")
    for p, (top, left) in enumerate(positions):
        total[:, top:top + patch, left:left + patch] += drops[:, p, None, None]
        covered[top:top + patch, left:left + patch] += 1
    return total / covered


def _predict(model: keras.Model, batch: np.ndarray, batch_size: int) -> np.ndarray:
    out = _forward.predict(model, batch, batch_size)
    if out.ndim == 4:
        out = out.mean(axis=(1, 2))
    if out.ndim != 2:
        raise ValueError(f"Occlusion needs a model with outputs (N, classes) or (N, h, w, channels); "
                         f"{model.name!r} gives shape {out.shape}.")
    return out
