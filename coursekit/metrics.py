"""Numbers for explanations: where a heatmap puts its mass, and whether the pixels it ranks first matter.

* :func:`mass_in_mask`, :func:`pointing_game`: agreement of heatmaps with a known region
  (a decoy patch, an object's box).
* :func:`deletion_curve` / :func:`insertion_curve` and their areas :func:`deletion_auc` /
  :func:`insertion_auc` (Petsiuk, Das and Saenko 2018, "RISE"): remove (or reveal) pixels in the
  order a heatmap ranks them and follow the class probability. A faithful heatmap makes the
  probability fall fast when deleting (low area) and rise fast when inserting (high area).
* :func:`rank_correlation`: Spearman correlation of two sets of maps, as in the sanity checks of
  Adebayo et al. 2018.
"""
from __future__ import annotations

import keras
import numpy as np

from . import _cache, _forward, _inputs, batching
from .models import ends_in_softmax

# ----------------------------------------------------------------------------- agreement with a region

def _heatmaps_and_masks(heatmaps, masks, name: str):
    heatmaps = np.asarray(heatmaps, dtype="float64")
    masks = np.asarray(masks)
    if heatmaps.ndim == 2:
        heatmaps = heatmaps[None]
    if heatmaps.ndim != 3:
        raise ValueError(f"{name} needs heatmaps of shape (N, H, W) or (H, W); got {heatmaps.shape}.")
    if masks.ndim == 2:
        masks = np.broadcast_to(masks, heatmaps.shape)
    if masks.shape != heatmaps.shape:
        raise ValueError(f"{name}: masks of shape {masks.shape} do not match heatmaps of shape "
                         f"{heatmaps.shape}. Give one (H, W) mask per heatmap, or one for all; "
                         "resize heatmaps to the image size first (Grad-CAM's are already).")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError(f"{name}: masks must be boolean (or 0/1); got values such as "
                             f"{np.unique(masks)[:5]}.")
        masks = masks.astype(bool)
    if not np.isfinite(heatmaps).all():
        raise ValueError(f"{name}: heatmaps contain NaN or infinity.")
    return heatmaps, masks


def mass_in_mask(heatmaps, masks) -> np.ndarray:
    """Share of each heatmap's total mass that lies inside its mask, in [0, 1].

    ``heatmaps``: ``(N, H, W)`` non-negative (saliency, Grad-CAM; take ``np.abs`` of signed maps
    first). ``masks``: boolean ``(N, H, W)`` or one ``(H, W)`` for all. Returns ``(N,)``; an all-zero
    heatmap puts no mass anywhere and scores 0. For comparison, a flat heatmap scores the mask's
    share of the image.
    """
    heatmaps, masks = _heatmaps_and_masks(heatmaps, masks, "mass_in_mask")
    if (heatmaps < 0).any():
        raise ValueError("mass_in_mask needs non-negative heatmaps: pass np.abs(maps) for signed "
                         "gradients, or np.maximum(maps, 0) to keep only positive evidence.")
    total = heatmaps.sum(axis=(1, 2))
    inside = (heatmaps * masks).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def pointing_game(heatmaps, masks, tolerance: int = 0) -> np.ndarray:
    """Whether each heatmap's hottest pixel falls in its mask (Zhang et al. 2016): ``(N,)`` bool.

    ``tolerance`` (pixels) counts a hit when the maximum lies within that (Euclidean) distance of
    the mask; TorchRay's benchmark uses 15 px at ImageNet resolution. Ties go to the first maximum
    in raster order. ``hits.mean()`` is the pointing accuracy: read it against
    :func:`centre_pointing_game`, the score of a map that always points at the image's centre
    (TorchRay, VOC07 all / difficult images: Grad-CAM on VGG16 86.6% / 74.0%, centre 69.6% / 42.4%).
    """
    heatmaps, masks = _heatmaps_and_masks(heatmaps, masks, "pointing_game")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels; got {tolerance}.")
    count, height, width = heatmaps.shape
    flat = heatmaps.reshape(count, -1).argmax(axis=1)
    rows, cols = np.unravel_index(flat, (height, width))
    if tolerance == 0:
        return masks[np.arange(count), rows, cols]
    yy, xx = np.mgrid[:height, :width]
    near = (yy[None] - rows[:, None, None]) ** 2 + (xx[None] - cols[:, None, None]) ** 2 <= tolerance ** 2
    return (near & masks).any(axis=(1, 2))


def centre_pointing_game(masks, tolerance: int = 0) -> np.ndarray:
    """The pointing game of a map that ignores the image and points at its centre: ``(N,)`` bool.

    The baseline a pointing accuracy should beat (objects are often in the middle of a photo).
    ``masks``: boolean ``(N, H, W)`` or one ``(H, W)``; the centre is pixel ``(H // 2, W // 2)``;
    ``tolerance`` as in :func:`pointing_game`.
    """
    masks = np.asarray(masks)
    if masks.ndim not in (2, 3):
        raise ValueError(f"centre_pointing_game needs masks of shape (N, H, W) or (H, W); got {masks.shape}.")
    stack = masks[None] if masks.ndim == 2 else masks
    height, width = stack.shape[1:]
    centre = np.zeros((height, width), dtype="float64")
    centre[height // 2, width // 2] = 1.0
    return pointing_game(np.broadcast_to(centre, stack.shape), stack, tolerance)


# ----------------------------------------------------------------------------- a model-free baseline

def edge_map(images, normalize: bool = True) -> np.ndarray:
    """Sobel edge strength of each image, a map that knows nothing of any model: float32 ``(N, H, W)``.

    ``images``: ``(N, H, W, C)`` or one ``(H, W, C)`` (displayable or preprocessed: any range).
    The channels are averaged to one grey image, then OpenCV's 3x3 Sobel derivatives give the
    magnitude ``sqrt(dx**2 + dy**2)`` at each pixel. With ``normalize`` each map is divided by its
    maximum ([0, 1]; a flat image gives zeros). Adebayo et al. 2018 compare saliency methods with it.
    """
    import cv2
    batch = np.asarray(images, dtype="float32")
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4:
        raise ValueError(f"edge_map needs images of shape (N, H, W, C) or (H, W, C); got {batch.shape}.")
    maps = []
    for grey in batch.mean(axis=-1):
        dx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        dy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        maps.append(np.sqrt(dx ** 2 + dy ** 2))
    maps = np.stack(maps).astype("float32")
    if not normalize:
        return maps
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0).astype("float32")


# ----------------------------------------------------------------------------- deletion / insertion

def _probabilities(model: keras.Model) -> keras.Model:
    """``model`` itself when it ends in a softmax, else ``model`` followed by one (cached)."""
    if ends_in_softmax(model):
        return model

    def build():
        return keras.Model(model.inputs, keras.layers.Softmax()(model.outputs[0]),
                           name=f"{model.name}_probabilities")
    return _cache.per_model(model, "probabilities", build)


def blurred(images, sigma: float | None = None) -> np.ndarray:
    """Gaussian-blurred copies of a batch ``(N, H, W, C)`` (OpenCV): insertion's default start.

    ``sigma`` defaults to a tenth of the image side, enough to erase digits' strokes and photos' detail.
    """
    import cv2
    images = np.asarray(images, dtype="float32")
    sigma = sigma or max(images.shape[1:3]) / 10
    out = np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in images])
    return out.reshape(images.shape)


def _curve(model, images, heatmaps, class_index, steps, baseline, delete: bool, seed: int,
           batch_size: int):
    images = _inputs.image_batch(model, images)
    batch_size = _inputs.chosen_batch_size(model, batch_size, batching.FORWARD, images.shape[1:])  # refuses a bad one first
    count, height, width = images.shape[:3]
    heatmaps = np.asarray(heatmaps, dtype="float64")
    if heatmaps.shape == (height, width) and count == 1:
        heatmaps = heatmaps[None]
    if heatmaps.shape != (count, height, width):
        raise ValueError(f"heatmaps must be (N, H, W) = {(count, height, width)}, one per image at the "
                         f"image's resolution; got {heatmaps.shape}. Resize them to the image first.")
    if not (isinstance(steps, (int, np.integer)) and 1 <= steps <= height * width):
        raise ValueError(f"steps must be a whole number from 1 to the pixel count {height * width}; got {steps!r}.")
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number, an array like images, or 'blur'; got {baseline!r}.")
        baseline = blurred(images)
    baseline = np.broadcast_to(np.asarray(baseline, dtype="float32"), images.shape)

    probabilities = _probabilities(model)
    first = _forward.predict(probabilities, images, batch_size)
    classes = _inputs.resolve_classes(_inputs.class_codes(class_index, count, first.shape[1]), first)

    # Pixels in decreasing heatmap order; ties (flat regions) in a seeded random order, not raster order.
    rng = np.random.default_rng(seed)
    flat = heatmaps.reshape(count, -1)
    order = np.stack([np.lexsort((rng.random(flat.shape[1]), -row)) for row in flat])
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(flat.shape[1])[None].repeat(count, 0), axis=1)
    rank = rank.reshape(count, height, width)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    thresholds = np.round(fractions * height * width).astype(int)

    start, end = (images, baseline) if delete else (baseline, images)
    curves = np.zeros((count, steps + 1), dtype="float32")
    untouched = 0 if delete else steps      # the step that is the image itself: its forward pass is `first`
    curves[:, untouched] = first[np.arange(count), classes]
    pairs = [(i, t) for i in range(count) for t in range(steps + 1) if t != untouched]
    for first_pair in range(0, len(pairs), batch_size):
        chunk = pairs[first_pair:first_pair + batch_size]
        batch = np.stack([np.where((rank[i] < thresholds[t])[..., None], end[i], start[i]) for i, t in chunk])
        probs = _forward.predict(probabilities, batch, batch_size)
        for row, (i, t) in enumerate(chunk):
            curves[i, t] = probs[row, classes[i]]
    return fractions, curves


def deletion_curve(model, images, heatmaps, class_index=None, steps: int = 20, baseline=0.0,
                   seed: int = 0, batch_size: int | None = None):
    """Class probability as the pixels a heatmap ranks highest are deleted, most important first.

    ``images``: the model's preprocessed batch ``(N, H, W, C)`` (or one image); ``heatmaps``:
    ``(N, H, W)`` (or one ``(H, W)``), any scale (only the order counts). At step ``t`` of
    ``steps`` the top ``t / steps`` of the pixels (all channels) take the value of ``baseline``
    (a number in the model's input space, an array like ``images``, or ``"blur"``).
    ``class_index``: None = each image's top class, or an int / one per image. The probability
    is the model's softmax output (a softmax is added to a model without one). The changed images
    are made and sent through the model ``batch_size`` at a time (None: as many as fit the
    profile's memory budget for a forward pass, :mod:`coursekit.batching`), so only one batch of
    them exists at a time; ``batch_size`` never changes the result.

    Returns ``(fractions, curves)``: ``(steps + 1,)`` from 0 to 1 and ``(N, steps + 1)`` probabilities.
    """
    return _curve(model, images, heatmaps, class_index, steps, baseline, True, seed, batch_size)


def insertion_curve(model, images, heatmaps, class_index=None, steps: int = 20, baseline="blur",
                    seed: int = 0, batch_size: int | None = None):
    """Class probability as pixels are revealed, most important first, on a ``baseline`` image.

    Starts from ``baseline`` (default: a blurred copy of each image, as Petsiuk et al.) and copies
    in the top ``t / steps`` of the pixels the heatmap ranks. Arguments and result as
    :func:`deletion_curve`.
    """
    return _curve(model, images, heatmaps, class_index, steps, baseline, False, seed, batch_size)


def area_under(curves) -> np.ndarray:
    """Area under curves sampled at evenly spaced fractions from 0 to 1 (trapezoids): ``(N,)``."""
    curves = np.asarray(curves, dtype="float64")
    return (curves[..., 1:] + curves[..., :-1]).sum(axis=-1) / (2 * (curves.shape[-1] - 1))


def deletion_auc(model, images, heatmaps, class_index=None, steps: int = 20, baseline=0.0,
                 seed: int = 0, batch_size: int | None = None) -> np.ndarray:
    """Area under :func:`deletion_curve` per image, in [0, 1]: lower means a more faithful heatmap."""
    return area_under(deletion_curve(model, images, heatmaps, class_index, steps, baseline, seed, batch_size)[1])


def insertion_auc(model, images, heatmaps, class_index=None, steps: int = 20, baseline="blur",
                  seed: int = 0, batch_size: int | None = None) -> np.ndarray:
    """Area under :func:`insertion_curve` per image, in [0, 1]: higher means a more faithful heatmap."""
    return area_under(insertion_curve(model, images, heatmaps, class_index, steps, baseline, seed, batch_size)[1])


# ----------------------------------------------------------------------------- comparing maps

def rank_correlation(maps_a, maps_b, constant: float = 0.0) -> np.ndarray:
    """Spearman rank correlation between paired maps, one number per pair: ``(N,)`` in [-1, 1].

    ``maps_a``, ``maps_b``: ``(N, H, W)`` (or ``(H, W)``). A constant map has no ranking (a
    Grad-CAM map with no positive evidence is all 0, see :func:`blank_maps`): its pair gets
    ``constant``, 0 by default; ``np.nan`` leaves such pairs out of ``np.nanmean``.
    """
    from scipy.stats import rankdata
    a, b = np.asarray(maps_a, dtype="float64"), np.asarray(maps_b, dtype="float64")
    if a.ndim == 2 and b.ndim == 2:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"rank_correlation needs two stacks of maps of the same shape (N, H, W); "
                         f"got {a.shape} and {b.shape}.")
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    return np.divide((ra * rb).sum(axis=1), denominator, out=np.full(len(a), float(constant)), where=denominator > 0)


def blank_maps(maps) -> np.ndarray:
    """True for each map of ``maps`` ``(N, H, W)`` (or one ``(H, W)``) that is constant: nothing to rank or show.

    A Grad-CAM map whose channel-weighted sum is negative everywhere is all 0 after its ReLU: the
    method found no positive evidence for the class anywhere. Such a map is not a picture of
    anything; a rank correlation with it is undefined, so compare only the others (and count these).
    """
    maps = np.asarray(maps, dtype="float64")
    maps = maps[None] if maps.ndim == 2 else maps
    if maps.ndim != 3:
        raise ValueError(f"blank_maps needs maps of shape (N, H, W) or (H, W); got {maps.shape}.")
    flat = maps.reshape(len(maps), -1)
    return flat.max(axis=1) == flat.min(axis=1)
