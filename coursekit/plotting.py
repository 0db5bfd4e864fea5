"""Figures. Computing lives in the other modules; these functions only draw what they are given."""
from __future__ import annotations

import math

import cv2
import matplotlib.pyplot as plt
import numpy as np

BLANK_NOTE = "no positive\nevidence"


def _mark_blank(ax, heatmap) -> None:
    """Write "no positive evidence" across a panel whose heatmap has nothing above zero (Grad-CAM
    after its ReLU when every position speaks against the class), so that the empty panel is not
    read as a picture of something."""
    if not np.any(np.asarray(heatmap, dtype="float32") > 0):
        ax.text(0.5, 0.5, BLANK_NOTE, transform=ax.transAxes, ha="center", va="center", fontsize=8,
                color="black", bbox=dict(facecolor="white", alpha=0.85, edgecolor="none", pad=2))


def show_images(images, titles=None, columns: int = 6, size: float = 2.2, cmap=None,
                suptitle: str | None = None):
    """Draw a list (or batch) of images in a grid, each with an optional title. Returns the figure."""
    images = list(images)
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows + (0.4 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(images):
            image = np.asarray(images[index])
            ax.imshow(image.squeeze(), cmap=cmap if image.squeeze().ndim == 2 else None)
            if titles is not None:
                ax.set_title(str(titles[index]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)       # constrained layout keeps it clear of two-line titles
    return fig


def show_grid(grid: np.ndarray, title: str = "", scale: float = 0.04, cmap: str = "viridis",
              max_width: float = 16.0, min_width: float = 8.0):
    """Draw a 2-D grid from :func:`coursekit.features.tile_channels` at a readable size
    (``scale`` inches per grid pixel, kept between ``min_width`` and ``max_width`` inches)."""
    height, width = grid.shape
    fig_width = min(max_width, max(min_width, width * scale))
    fig, ax = plt.subplots(figsize=(fig_width, max(1.0, fig_width * height / width)))
    ax.imshow(grid, cmap=cmap, aspect="equal", interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def kernels_as_rgb(kernels: np.ndarray) -> np.ndarray:
    """First-layer kernels ``(kh, kw, 3, F)`` as ``F`` displayable RGB images in [0, 1], min-max per kernel."""
    kernels = np.moveaxis(np.asarray(kernels, dtype="float32"), -1, 0)
    low = kernels.min(axis=(1, 2, 3), keepdims=True)
    high = kernels.max(axis=(1, 2, 3), keepdims=True)
    return (kernels - low) / np.where(high > low, high - low, 1)


def dead_kernels(kernels: np.ndarray, share: float = 1e-3) -> np.ndarray:
    """Indices of the kernels of ``(kh, kw, C_in, F)`` whose largest absolute weight is below
    ``share`` of the layer's largest: (almost) all zero, so their channel ignores the image."""
    strength = np.abs(np.asarray(kernels, dtype="float32")).max(axis=(0, 1, 2))
    return np.flatnonzero(strength < share * strength.max())


def show_kernels_rgb(kernels: np.ndarray, columns: int = 16, title: str = "", dead_share: float = 1e-3):
    """Draw first-layer kernels ``(kh, kw, 3, F)`` as small colour images, each numbered.

    Each kernel is stretched from its own smallest weight (black) to its largest (white). A kernel
    whose weights are (almost) all zero (:func:`dead_kernels` with ``dead_share``) would be
    stretched into noise or drawn black; it is drawn black and titled "dead" in red instead.
    """
    images = kernels_as_rgb(kernels)
    dead = set(dead_kernels(kernels, dead_share).tolist())
    images[sorted(dead)] = 0.0
    fig = show_images(images, titles=[f"{k} dead" if k in dead else str(k) for k in range(len(images))],
                      columns=columns, size=0.8, suptitle=title or None)
    for k, ax in enumerate(fig.axes[:len(images)]):
        for image in ax.images:
            image.set_interpolation("nearest")
        ax.title.set_fontsize(7)
        if k in dead:
            ax.title.set_color("red")
    return fig


def show_kernels_grey(kernels: np.ndarray, label: str = "filter", columns: int = 16, title: str = "",
                      shared_scale: bool = True, size: float = 0.8):
    """Single-channel kernels ``(kh, kw, K)`` (kernel ``k`` is ``kernels[..., k]``) as grey squares.

    Grey is 0, white the most positive weight, black the most negative. ``shared_scale``: one scale
    for all (strong and weak kernels compared; the figure says its range), else each kernel on its
    own symmetric scale, with its largest absolute weight under its name. Titles are
    ``f"{label} {k}"``: a filter of a one-channel input (a grey digit), or a depthwise
    convolution's kernel for input channel ``k``. Returns the figure.
    """
    kernels = np.asarray(kernels, dtype="float32")
    if kernels.ndim != 3:
        raise ValueError(f"show_kernels_grey needs kernels of shape (kh, kw, K); got {kernels.shape}. "
                         "Select one input channel first, e.g. kernels[:, :, 0, :].")
    count = kernels.shape[-1]
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    strength = np.abs(kernels).max(axis=(0, 1))
    shared = float(strength.max()) or 1.0
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(size * columns, (size + (0.35 if shared_scale else 0.5)) * rows + 0.6))
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < count:
            limit = shared if shared_scale else (float(strength[k]) or 1.0)
            ax.imshow(kernels[..., k], cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(f"{label} {k}" if shared_scale else f"{label} {k}\n±{strength[k]:.2g}", fontsize=7)
    scale_note = (f"one scale: grey 0, white +{shared:.2g}, black -{shared:.2g}" if shared_scale
                  else "each kernel on its own scale: grey 0, white/black its largest |weight|")
    fig.suptitle(f"{title}\n({scale_note})" if title else f"({scale_note})", fontsize=10)
    fig.tight_layout()
    return fig


def show_kernel_channels(kernels: np.ndarray, filters: int = 8, channels: int = 8, title: str = ""):
    """Deeper kernels ``(kh, kw, C_in, F)``: one grey image per (filter, input channel) pair.

    Rows are filters, columns input channels. One symmetric colour scale is shared by the whole
    figure so that strong and weak weights can be compared: grey is 0, white the most positive
    weight shown, black the most negative (the figure says the range).
    """
    kernels = np.asarray(kernels)
    if kernels.ndim != 4:
        raise ValueError(f"show_kernel_channels needs kernels (kh, kw, input channels, filters); got shape "
                         f"{kernels.shape}.")
    filters, channels = min(filters, kernels.shape[3]), min(channels, kernels.shape[2])
    limit = float(np.abs(kernels[:, :, :channels, :filters]).max()) or 1.0
    fig, axes = plt.subplots(filters, channels, figsize=(max(3.0, 0.9 * channels), 0.9 * filters + 1.0),
                             squeeze=False)
    for f in range(filters):
        for c in range(channels):
            ax = axes[f, c]
            ax.imshow(kernels[:, :, c, f], cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"filter {f}", fontsize=7)
            if f == 0:
                ax.set_title(f"input {c}", fontsize=7)
    scale_note = f"rows: filters, columns: input channels; grey 0, white +{limit:.2g}, black -{limit:.2g}"
    fig.suptitle(f"{title}\n({scale_note})" if title else f"({scale_note})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(history, metrics=("loss", "accuracy"), title: str = ""):
    """Training and validation curves from a Keras ``History`` (or its ``.history`` dict)."""
    logs = getattr(history, "history", history)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in logs:
                ax.plot(np.arange(1, len(logs[key]) + 1), logs[key], style, marker="o", label=key)
        ax.set_xlabel("epoch"), ax.set_title(metric), ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- lessons 02-04: patterns and heatmaps

def show_heatmaps(image, heatmaps, titles=None, alpha: float = 0.5, cmap: str = "jet",
                  size: float = 2.6, image_title: str = "input", suptitle: str | None = None):
    """``image`` (displayable RGB), then each heatmap of ``heatmaps`` ``(M, H, W)`` drawn over it.

    Heatmaps are drawn by matplotlib with colour scale [0, 1] and opacity ``alpha`` (1: the
    heatmap alone). A heatmap that is zero everywhere says "no positive evidence" across its panel.
    Returns the figure.
    """
    heatmaps = list(heatmaps)
    titles = list(titles) if titles is not None else [""] * len(heatmaps)
    fig, axes = plt.subplots(1, len(heatmaps) + 1, figsize=(size * (len(heatmaps) + 1), size + 0.5),
                             squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title(image_title, fontsize=9)
    height, width = np.asarray(image).shape[:2]
    for ax, heatmap, title in zip(axes[1:], heatmaps, titles):
        ax.imshow(image)
        ax.imshow(heatmap, cmap=cmap, alpha=alpha, vmin=0, vmax=1, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        ax.set_title(title, fontsize=9)
        _mark_blank(ax, heatmap)
    for ax in axes:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_maps(maps, titles=None, cmap: str = "gray", columns: int = 6, size: float = 2.2,
              percentile: float | None = 99.0, suptitle: str | None = None):
    """Saliency maps (or any non-negative 2-D maps) in a grid.

    Each map is drawn from 0 (black) up to its ``percentile``-th percentile (white); brighter
    pixels are clipped, so that a few extreme pixels do not leave the rest of the map black (as
    Smilkov et al. do for SmoothGrad). ``percentile=None`` draws each map on [0, its maximum].
    An RGB image in the list (``(H, W, 3)``) is drawn as it is, e.g. the photo the maps explain.
    """
    maps = list(maps)
    columns = max(1, min(columns, len(maps)))
    rows = math.ceil(len(maps) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows + 0.4), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(maps):
            shown = np.asarray(maps[index])
            if shown.ndim == 3:
                ax.imshow(shown)
            else:
                top = np.percentile(shown, percentile) if percentile is not None else shown.max()
                ax.imshow(shown, cmap=cmap, vmin=0, vmax=top if top > 0 else 1)
            if titles is not None:
                ax.set_title(str(titles[index]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- lessons 05-07: shortcuts, units, sanity checks

def _draw_background(ax, image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)


def _outline(ax, mask, color="white"):
    """Draw the bounding box of a boolean mask (e.g. a decoy patch) on ``ax``, on pixel edges."""
    rows, cols = np.nonzero(np.asarray(mask))
    if len(rows):
        ax.add_patch(plt.Rectangle((cols.min() - 0.5, rows.min() - 0.5), cols.max() - cols.min() + 1,
                                   rows.max() - rows.min() + 1, fill=False, edgecolor=color, linewidth=1.2))


def show_explanations(images, maps: dict, row_titles=None, masks=None, alpha: float = 0.5,
                      cmap: str = "jet", size: float = 1.9, percentile: float | None = 99.0,
                      suptitle: str | None = None):
    """One row per image: the image, then each method's map drawn over it.

    ``images``: ``(N, H, W)`` grey, ``(N, H, W, 1)`` or RGB ``(N, H, W, 3)`` displayable images.
    ``maps``: ``{method name: (N, H, W) non-negative maps}``, each drawn from 0 up to its own
    ``percentile``-th percentile (brighter pixels clipped, so that a few extreme gradients do not
    leave the rest dark; ``None``: up to its maximum). ``masks``: optional boolean
    ``(N, H, W)`` regions whose bounding box is drawn in white on every panel (a decoy patch, an
    object's box).
    """
    images = list(images)
    names = list(maps)
    fig, axes = plt.subplots(len(images), len(names) + 1, squeeze=False,
                             figsize=(size * (len(names) + 1), size * len(images) + 0.5))
    for row, image in enumerate(images):
        height, width = np.asarray(image).shape[:2]
        for column, ax in enumerate(axes[row]):
            _draw_background(ax, image)
            if column:
                shown = np.asarray(maps[names[column - 1]][row], dtype="float32")
                top = np.percentile(shown, percentile) if percentile is not None else shown.max()
                ax.imshow(shown, cmap=cmap, alpha=alpha, vmin=0, vmax=top if top > 0 else 1,
                          extent=(-0.5, width - 0.5, height - 0.5, -0.5))
            if masks is not None:
                _outline(ax, masks[row])
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title("image" if column == 0 else names[column - 1], fontsize=9)
        if row_titles is not None:
            axes[row, 0].set_ylabel(str(row_titles[row]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_unit_images(images, indices, unit_names, maps=None, alpha: float = 0.6, size: float = 1.2,
                     suptitle: str | None = None):
    """The images that excite each unit most: one column per unit, strongest on top.

    ``images``: displayable ``(N, H, W[, C])``; ``indices``: ``(units, k)`` from
    :func:`coursekit.features.top_activating` (or a selection of its rows); ``unit_names`` one per
    row of ``indices``. ``maps`` (optional, ``(units, k, H, W)`` in [0, 1]) are drawn over the images,
    e.g. occlusion maps of the same units.
    """
    indices = np.asarray(indices)
    units, k = indices.shape
    fig, axes = plt.subplots(k, units, squeeze=False, figsize=(size * units, size * k + 0.5))
    for unit in range(units):
        for rank in range(k):
            ax = axes[rank, unit]
            image = np.asarray(images[indices[unit, rank]])
            _draw_background(ax, image)
            if maps is not None:
                height, width = image.shape[:2]
                ax.imshow(maps[unit][rank], cmap="jet", alpha=alpha, vmin=0, vmax=1,
                          extent=(-0.5, width - 0.5, height - 0.5, -0.5))
            ax.axis("off")
        axes[0, unit].set_title(str(unit_names[unit]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_embedding(points, labels, class_names=None, title: str = "", size: float = 6.0, ax=None):
    """A 2-D embedding ``(N, 2)`` (t-SNE, PCA) as a scatter plot coloured by class, each class named
    at its median point. Draws on ``ax`` when given; returns the figure."""
    points, labels = np.asarray(points), np.asarray(labels)
    classes = np.unique(labels)
    colours = plt.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size))
    for i, label in enumerate(classes):
        chosen = labels == label
        name = class_names[label] if class_names is not None else str(label)
        ax.scatter(points[chosen, 0], points[chosen, 1], s=10, color=colours(i), label=name)
        centre = np.median(points[chosen], axis=0)
        ax.text(centre[0], centre[1], name, fontsize=10, weight="bold", ha="center", va="center",
                bbox=dict(facecolor="white", alpha=0.6, edgecolor="none", pad=1))
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def plot_curves(fractions, curves: dict, aucs: dict | None = None, title: str = "",
                xlabel: str = "share of pixels", ylabel: str = "class probability", ax=None):
    """Mean curve per method (``{name: (N, steps + 1)}``) with a band of one standard error."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.6))
    fractions = np.asarray(fractions)
    for name, values in curves.items():
        values = np.asarray(values)
        mean = values.mean(axis=0)
        error = values.std(axis=0) / np.sqrt(len(values))
        label = f"{name} ({np.mean(aucs[name]):.2f})" if aucs is not None else name
        ax.plot(fractions, mean, marker=".", label=label)
        ax.fill_between(fractions, mean - error, mean + error, alpha=0.15)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, title="method (mean AUC)" if aucs is not None else None, title_fontsize=8)
    return ax.figure


def plot_cascade(steps, correlations: dict, title: str = "", ylabel: str = "rank correlation with the trained model"):
    """Cascading randomisation: one line per method, ``{name: (len(steps), N)}`` correlations.

    ``steps`` names the cascade's points (e.g. the last layer randomised so far), left to right.
    """
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(steps) + 2), 3.8))
    for name, values in correlations.items():
        values = np.asarray(values)
        ax.errorbar(np.arange(len(steps)), values.mean(axis=1), yerr=values.std(axis=1), marker="o",
                    capsize=3, label=name)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(np.arange(len(steps)), steps, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(-1.05, 1.05), ax.set_ylabel(ylabel), ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- heatmap overlays (OpenCV)

def overlay(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """``image`` with ``heatmap`` drawn over it in colour: uint8 RGB ``(H, W, 3)``.

    ``image``: a displayable RGB image, uint8 ``(H, W, 3)`` or float in [0, 1] (not the
    preprocessed model input). ``heatmap``: ``(h, w)`` in [0, 1], resized to the image if needed.
    ``alpha``: share of the heatmap colour in the result. ``colormap``: an OpenCV colour map name
    ("jet", "inferno", "turbo", ...).
    """
    image = _displayable(image)
    heatmap = np.asarray(heatmap, dtype="float32")
    if heatmap.ndim == 3 and heatmap.shape[0] == 1:
        heatmap = heatmap[0]
    if heatmap.ndim != 2:
        raise ValueError(f"overlay needs one heatmap (h, w); got shape {heatmap.shape}. "
                         "Pass heatmaps[i] for image i.")
    if not np.all(np.isfinite(heatmap)):
        raise ValueError("The heatmap contains NaN or infinite values.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}.")
    if heatmap.shape != image.shape[:2]:
        heatmap = cv2.resize(heatmap, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    levels = np.clip(heatmap * 255, 0, 255).round().astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(levels, _opencv_colormap(colormap)), cv2.COLOR_BGR2RGB)
    blended = (1 - alpha) * image.astype("float32") + alpha * colours.astype("float32")
    return np.clip(blended, 0, 255).round().astype(np.uint8)


def _displayable(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"overlay needs one RGB image (H, W, 3); got shape {image.shape}.")
    if image.dtype == np.uint8:
        return image
    if image.min() < 0 or image.max() > 255:
        raise ValueError(f"overlay needs a displayable image (uint8, or floats in [0, 1]); got values "
                         f"from {image.min():.2f} to {image.max():.2f}. Pass the image before "
                         "preprocessing (e.g. net.load_image(...)), not the model input.")
    scale = 255.0 if image.max() <= 1.0 else 1.0
    return np.clip(image * scale, 0, 255).round().astype(np.uint8)


def _opencv_colormap(name: str) -> int:
    code = getattr(cv2, f"COLORMAP_{str(name).upper()}", None)
    if code is None:
        known = sorted(n[len("COLORMAP_"):].lower() for n in dir(cv2) if n.startswith("COLORMAP_"))
        raise ValueError(f"Unknown colormap {name!r}. OpenCV has: {', '.join(known)}.")
    return code


# ----------------------------------------------------------------------------- blank maps (lesson 07)

NO_EVIDENCE = "no positive\nevidence"


def label_blank(ax, heatmap, text: str = NO_EVIDENCE) -> bool:
    """Write ``text`` across the panel ``ax`` when ``heatmap`` ``(H, W)`` is blank (one value everywhere).

    A Grad-CAM map with no positive evidence for the class is all 0: drawn as it is, it is a dark
    panel that a reader takes for a picture of something. Returns True when the panel was labelled.
    """
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2 or heatmap.max() != heatmap.min():
        return False
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="black",
            bbox=dict(facecolor="white", alpha=0.85, edgecolor="none", pad=2))
    return True


def plot_cascade_without_blanks(steps, correlations: dict, title: str = "",
                                ylabel: str = "rank correlation\nwith the trained map"):
    """Cascading randomisation, as :func:`plot_cascade`, where blank maps were left out.

    ``correlations``: ``{method: (len(steps), N)}`` with NaN where a map was blank (no positive
    evidence: :func:`coursekit.metrics.blank_maps`). Each point is the mean over the other maps,
    with their standard deviation; a point that leaves some maps out is drawn hollow, and the
    legend says how many maps were left out in all. A step where every map was blank has no point.
    """
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(steps) + 2), 3.8))
    for name, values in correlations.items():
        values = np.asarray(values, dtype="float64")
        counted = (~np.isnan(values)).sum(axis=1)
        mean = np.array([np.nanmean(row) if n else np.nan for row, n in zip(values, counted)])
        spread = np.array([np.nanstd(row) if n else np.nan for row, n in zip(values, counted)])
        left_out = int(values.size - counted.sum())
        label = f"{name} ({left_out} blank maps left out)" if left_out else name
        line = ax.errorbar(np.arange(len(steps)), mean, yerr=spread, marker="o", capsize=3, label=label)
        partial = (counted < values.shape[1]) & (counted > 0)
        ax.plot(np.flatnonzero(partial), mean[partial], "o", markersize=9, markerfacecolor="white",
                markeredgecolor=line[0].get_color(), zorder=3)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(np.arange(len(steps)), steps, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(-1.05, 1.05), ax.set_ylabel(ylabel), ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, title="hollow: blank maps left out", title_fontsize=7)
    fig.tight_layout()
    return fig
