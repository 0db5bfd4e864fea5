"""A stand-in for ``tensorflow_datasets`` in tests (never installed; put on the path by a test).

``load("cycle_gan/horse2zebra", split=[...], as_supervised=True)`` answers as the real one does for
that data set: one dataset per split, each yielding ``(image, label)`` pairs with images uint8
``(256, 256, 3)``, as many as the real split holds (or its ``"[:n]"`` slice asks for). The photos
are synthetic: brown blobs for horses (trainA, testA), black and white stripes for zebras.
"""
import re

import numpy as np

SPLIT_SIZES = {"trainA": 1067, "trainB": 1334, "testA": 120, "testB": 140}
SHAPE = (256, 256, 3)
requested: list = []  # every split list asked for, for tests to look at


def load(name, split, as_supervised=False, **kwargs):
    if name != "cycle_gan/horse2zebra" or not as_supervised:
        raise ValueError(f"this stand-in knows only cycle_gan/horse2zebra with as_supervised=True; got {name!r}")
    requested.append(list(split))
    return [_photos(text) for text in split]


def as_numpy(dataset):
    return dataset


def _photos(text):
    match = re.fullmatch(r"(train|test)([AB])(?:\[:(\d+)\])?", text)
    if not match:
        raise ValueError(f"unknown split {text!r}")
    name = match.group(1) + match.group(2)
    count = min(int(match.group(3)), SPLIT_SIZES[name]) if match.group(3) else SPLIT_SIZES[name]
    zebra = match.group(2) == "B"
    rng = np.random.default_rng(count + 7 * zebra)
    columns = np.arange(SHAPE[1])
    for _ in range(count):
        image = rng.normal(110, 20, SHAPE)
        top, left, side = (int(v) for v in rng.integers(20, 120, 3))
        if zebra:
            stripes = np.where((columns // int(rng.integers(6, 14))) % 2 == 0, 235.0, 20.0)
            image[top:top + side + 60, left:left + side + 60] = stripes[left:left + side + 60][None, :, None]
        else:
            image[top:top + side + 60, left:left + side + 60] = (140, 90, 50)
        yield np.clip(image, 0, 255).astype(np.uint8), int(zebra)
