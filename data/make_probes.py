"""Write the probe images: gratings.png and colour_patches.png, made by formula, nothing downloaded.

gratings.png: 2 rows x 4 columns of 64x64 sinusoidal gratings, grey levels 128 +- 100;
orientations 0, 45, 90, 135 degrees (columns; 0 = vertical stripes), 4 and 8 cycles per tile
(rows). colour_patches.png: 1 row of 8 flat 32x32 patches: red, yellow, green, cyan, blue,
magenta, black, white. Images to probe what a filter responds to (orientation, frequency,
colour). Run from the repository root: ``python data/make_probes.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
TILE = 64
ORIENTATIONS = (0, 45, 90, 135)       # degrees; 0: the grey level changes along x (vertical stripes)
CYCLES = (4, 8)                       # per tile
COLOURS = ((255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255),
           (0, 0, 0), (255, 255, 255))


def grating(degrees: float, cycles: float, size: int = TILE) -> np.ndarray:
    """uint8 ``(size, size, 3)`` grey sinusoidal grating, ``cycles`` periods across the tile."""
    y, x = np.mgrid[0:size, 0:size] / size
    angle = np.deg2rad(degrees)
    phase = 2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle))
    grey = np.round(128 + 100 * np.cos(phase)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def gratings() -> np.ndarray:
    rows = [np.concatenate([grating(d, c) for d in ORIENTATIONS], axis=1) for c in CYCLES]
    return np.concatenate(rows, axis=0)


def colour_patches(side: int = 32) -> np.ndarray:
    return np.concatenate([np.full((side, side, 3), colour, np.uint8) for colour in COLOURS], axis=1)


def main(folder: Path = HERE) -> list[Path]:
    paths = [folder / "gratings.png", folder / "colour_patches.png"]
    Image.fromarray(gratings()).save(paths[0])
    Image.fromarray(colour_patches()).save(paths[1])
    return paths


if __name__ == "__main__":
    print("wrote", *main())
