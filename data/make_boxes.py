"""Write boxes.json: object boxes drawn by hand on the course's bundled photos.

The boxes were read off each photo drawn with a 25-pixel grid (matplotlib), at the photo's own
size as `coursekit.data.sample_image(name)` returns it. Coordinates are pixels, ``[x0, y0, x1, y1]``
with ``x1``/``y1`` exclusive; `box_mask` scales a box to any resized copy of the photo.
Run from the repository root: ``python data/make_boxes.py`` (rewrites data/boxes.json).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BOXES = {
    "cat": {  # scikit-image "chelsea"
        "image_size": [300, 451],
        "boxes": {
            "cat": [0, 0, 385, 300],        # the head fills the left; right of x=385 is the sofa
            "eyes": [130, 90, 350, 195],    # both eyes
        },
    },
    "coffee": {  # scikit-image "coffee"
        "image_size": [400, 600],
        "boxes": {
            "espresso": [75, 15, 480, 372],  # cup, saucer and spoon
            "cup": [175, 15, 420, 300],      # the cup and its handle
        },
    },
    "grace_hopper": {  # matplotlib "grace_hopper.jpg"
        "image_size": [600, 512],
        "boxes": {
            "person": [45, 20, 512, 600],   # cap to the bottom edge, left shoulder to the right edge
            "jacket": [45, 330, 512, 600],  # the uniform below the chin (the class is military_uniform)
            "face": [195, 150, 405, 340],
        },
    },
}


def box_mask(photo: str, label: str, size: tuple[int, int] | None = None, boxes: dict | None = None) -> np.ndarray:
    """Boolean ``(H, W)`` mask of one box, at the photo's size or scaled to ``size`` = ``(H, W)``."""
    entry = (boxes or BOXES)[photo]
    height, width = entry["image_size"]
    out_h, out_w = size or (height, width)
    x0, y0, x1, y1 = entry["boxes"][label]
    mask = np.zeros((out_h, out_w), dtype=bool)
    mask[int(round(y0 * out_h / height)):int(round(y1 * out_h / height)),
         int(round(x0 * out_w / width)):int(round(x1 * out_w / width))] = True
    return mask


def main(path: Path = HERE / "boxes.json") -> Path:
    path.write_text(json.dumps(BOXES, indent=1) + "\n")
    return path


if __name__ == "__main__":
    print("wrote", main())
