"""Figures. Computing lives in the other modules; these functions only draw what they are given."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np


def show_images(images, titles=None, columns: int = 6, size: float = 2.2, cmap=None,
                suptitle: str | None = None):
    """Draw a list (or batch) of images in a grid, each with an optional title. Returns the figure."""
    images = list(images)
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(images):
            image = np.asarray(images[index])
            ax.imshow(image.squeeze(), cmap=cmap if image.squeeze().ndim == 2 else None)
            if titles is not None:
                ax.set_title(str(titles[index]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
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


def show_kernels_rgb(kernels: np.ndarray, columns: int = 16, title: str = ""):
    """Draw first-layer kernels ``(kh, kw, 3, F)`` as small colour images."""
    images = kernels_as_rgb(kernels)
    fig = show_images(images, columns=columns, size=0.8, suptitle=title or None)
    for ax in fig.axes:
        for image in ax.images:
            image.set_interpolation("nearest")
    return fig


def show_kernel_channels(kernels: np.ndarray, filters: int = 8, channels: int = 8, title: str = ""):
    """Deeper kernels ``(kh, kw, C_in, F)``: one grey image per (filter, input channel) pair.

    Rows are filters, columns input channels; one colour scale is shared by the whole figure so
    that strong and weak weights can be compared.
    """
    kernels = np.asarray(kernels)
    filters, channels = min(filters, kernels.shape[3]), min(channels, kernels.shape[2])
    limit = np.abs(kernels[:, :, :channels, :filters]).max() or 1.0
    fig, axes = plt.subplots(filters, channels, figsize=(max(3.0, 0.9 * channels), 0.9 * filters + 0.7),
                             squeeze=False)
    for f in range(filters):
        for c in range(channels):
            ax = axes[f, c]
            ax.imshow(kernels[:, :, c, f], cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"f{f}", fontsize=7)
            if f == 0:
                ax.set_title(f"in {c}", fontsize=7)
    if title:
        fig.suptitle(title)
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
    heatmap alone). Returns the figure.
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
