"""Checks of the exercises of lesson 05 (shortcut learning): solutions/05_shortcut_learning.ipynb.

Every check draws fresh random digits, corners, maps, masks and networks, so an answer that
hard-codes what the notebook's own example produces does not pass. References:
``coursekit.data.decoy_mnist`` (the patch rule), ``coursekit.metrics.mass_in_mask`` and
``coursekit.shortcuts.right_reasons_gradients`` (the input gradients the penalty squares).
"""
from __future__ import annotations

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, task, untraced

# ----------------------------------------------------------------------------- 05.1

CORNER_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")


def _corners_of(masks: np.ndarray) -> np.ndarray:
    """The corner code (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of each patch mask."""
    return 2 * masks[:, -1, :].any(axis=1) + masks[:, :, -1].any(axis=1)


def _painted(images: np.ndarray, digits: np.ndarray, corners: np.ndarray, side: int = 4,
             start: int = 24, levels=None) -> np.ndarray:
    """The patch rule with a chosen side, far-corner start and grey levels: to recognise mistakes."""
    out = images.copy()
    levels = 255 - 25 * digits if levels is None else levels
    for i, (level, corner) in enumerate(zip(levels, corners)):
        top, left = (corner // 2) * start, (corner % 2) * start
        out[i, top:top + side, left:left + side] = level
    return out


def _decoy_case(rng: np.random.Generator):
    """Random 'digits' (uint8 noise), labels, and decoy_mnist's output for them, every corner used."""
    from .. import data
    count = int(rng.integers(6, 10))
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    digits = rng.permutation(np.resize(rng.permutation(10), count))  # distinct digits where possible
    for _ in range(100):
        decoyed, masks = data.decoy_mnist(images, digits, seed=int(rng.integers(2 ** 31)))
        corners = _corners_of(masks)
        if len(set(corners.tolist())) == 4:
            return images, digits, corners, decoyed, masks
    raise RuntimeError("decoy_mnist kept leaving a corner out")


def _patch_hint(got: np.ndarray, images: np.ndarray, digits: np.ndarray, corners: np.ndarray,
                expected: np.ndarray, masks: np.ndarray) -> str:
    changed = got != images
    if not changed.any():
        return "your images come back unchanged: paint the patch into the copy you return."
    swapped = np.array([0, 2, 1, 3])[corners]
    if np.array_equal(got, _painted(images, digits, swapped)):
        return ("your patches for corners 1 and 2 are swapped. Corner 1 is top-right (rows 0-3, the "
                "last four columns), corner 2 bottom-left; an image is indexed image[row, column].")
    for side in (3, 5):
        for start in (28 - side, 24):
            if np.array_equal(got, _painted(images, digits, corners, side=side, start=start)):
                return (f"your patches are {side}x{side} pixels; the patch is 4x4, e.g. rows "
                        "top:top + 4. A bottom or right patch covers pixels 24 to 27, the last four.")
    for start in (23, 25):
        if np.array_equal(got, _painted(images, digits, corners, start=start)):
            return (f"a bottom or right patch of yours starts at pixel {start}; it should cover "
                    "pixels 24 to 27, the last four of the 28.")
    if (changed & ~masks).any():
        wrong = int(np.flatnonzero((changed & ~masks).any(axis=(1, 2)))[0])
        return (f"image {wrong} (corner {corners[wrong]}, {CORNER_NAMES[corners[wrong]]}) has pixels "
                "changed outside its patch. Corner 0 is top-left, 1 top-right, 2 bottom-left, "
                "3 bottom-right; the patch is 4x4 and touches the image's edges.")
    inside = got[masks].reshape(len(got), -1).astype("int64")
    if np.any(inside != inside[:, :1]):
        return ("the pixels of a patch should all have the same grey level: set them to it; do not "
                "add it to (or blend it with) the digit's pixels.")
    levels = inside[:, 0]
    if np.array_equal(levels, 25 * digits):
        return ("your grey levels run the wrong way: a 0 gets a white patch (255) and a 9 a dark "
                "one (30).")
    if len(set(levels.tolist())) == 1 and len(set(digits.tolist())) > 1:
        return "every patch of yours has the same grey; each image's patch encodes its own digit."
    return (f"the grey level of a patch is 255 - 25 * digit; for digits {digits[:3].tolist()} "
            f"you painted {levels[:3].tolist()}.")


@task("05.1", points=3, answer="add_patches", title="Painting the decoy patches")
def _(add_patches):
    require_callable(add_patches, "add_patches")
    rng = fresh_rng()
    what = "add_patches(images, digits, corners)"
    images, digits, corners, expected, masks = _decoy_case(rng)
    given = images.copy()
    got = call(add_patches, given, digits.copy(), corners.copy(), what=what)
    if not np.array_equal(given, images):
        raise Hint("your function changed the `images` it was given. Paint the patches on a copy "
                   "(images.copy()) and return that: the caller still needs the clean digits.")
    if got is None:
        raise Hint(f"{what} returned None: does it end with a `return`?")
    if got is given:
        raise Hint("you return the very array you were given; make a copy first and paint on it.")
    got = np.asarray(got)
    if got.shape != expected.shape:
        raise Hint(f"for images of shape {images.shape} you return shape {got.shape}; return the "
                   "decoyed images, same shape as the input.")
    if got.dtype != np.uint8:
        raise Hint(f"you return dtype {got.dtype}; keep the images' own dtype, uint8 (grey levels 0-255).")
    if not np.array_equal(got, expected):
        raise Hint(_patch_hint(got, images, digits, corners, expected, masks))


# ----------------------------------------------------------------------------- 05.2

def _share_hint(got: np.ndarray, maps: np.ndarray, masks: np.ndarray, expected: np.ndarray) -> str:
    if not np.all(np.isfinite(got)):
        return ("some shares are NaN: an all-zero map has no mass at all (0 / 0). Its share "
                "should be 0.")
    inside = (maps * masks).sum(axis=(1, 2))
    total = maps.sum(axis=(1, 2))
    outside = total - inside
    with np.errstate(all="ignore"):
        candidates = [
            (inside, "you return the mass inside the mask; divide it by the map's total mass."),
            (1 - expected, "that is the share *outside* the mask; the task asks for the share inside."),
            (np.where(outside > 0, inside / outside, 0),
             "you divide by the mass outside the mask; divide by the whole map's mass, inside and outside."),
            (np.where(masks.sum(axis=(1, 2)) > 0, inside / np.maximum(masks.sum(axis=(1, 2)), 1), 0),
             "you average the map over the mask's pixels; the share is the mass inside divided by "
             "the map's total mass."),
            (masks.mean(axis=(1, 2)),
             "you measure the size of the mask, not where the map puts its mass."),
            (np.where(total > 0, inside / maps.max(axis=(1, 2)), 0),
             "divide by the map's total mass (its sum), not by its maximum."),
        ]
    for candidate, hint in candidates:
        if close(got, np.nan_to_num(candidate), 1e-6):
            return hint
    if got.min() < -1e-9 or got.max() > 1 + 1e-9:
        return "a share lies in [0, 1]; some of yours do not."
    return ("each share is (sum of the map inside its mask) / (sum of the whole map), one per map; "
            "an all-zero map scores 0.")


@task("05.2", points=2, answer="share_in_mask", title="How much of a map falls on the patch")
def _(share_in_mask):
    from .. import metrics
    require_callable(share_in_mask, "share_in_mask")
    rng = fresh_rng()
    what = "share_in_mask(maps, masks)"
    count, height, width = int(rng.integers(4, 7)), int(rng.integers(8, 16)), int(rng.integers(16, 24))
    maps = rng.exponential(size=(count, height, width)) ** 2
    masks = np.zeros((count, height, width), dtype=bool)
    for i in range(count):
        side_h, side_w = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        top, left = int(rng.integers(0, height - side_h)), int(rng.integers(0, width - side_w))
        masks[i, top:top + side_h, left:left + side_w] = True
    zero, inside_only = rng.choice(count, size=2, replace=False)
    maps[zero] = 0.0                         # no mass at all: share 0, not NaN
    maps[inside_only] *= masks[inside_only]  # all its mass on the mask: share 1
    maps *= rng.uniform(1, 100, size=(count, 1, 1))   # totals of 100 or more: total + 1e-5 changes no share
    expected = metrics.mass_in_mask(maps, masks)

    got = as_numbers(call(share_in_mask, maps.copy(), masks.copy(), what=what), what)
    if got.shape != expected.shape:
        if got.size == 1:
            raise Hint(f"you return one number for {count} maps; return one share per map, shape ({count},).")
        raise Hint(f"for {count} maps of shape ({height}, {width}) you return shape {got.shape}; "
                   f"one share per map is shape ({count},).")
    if not close(got, expected, 1e-5):   # float32 sums of a few hundred values are fine
        raise Hint(_share_hint(got, maps, masks, expected))


# ----------------------------------------------------------------------------- 05.3

def _random_digit_net(rng: np.random.Generator, separate_softmax: bool):
    """A small random CNN for (side, side, 1) inputs in [0, 255], ending in a softmax."""
    import keras
    side, classes = int(rng.integers(10, 17)), int(rng.integers(3, 8))
    tag = int(rng.integers(1000, 10000))
    inputs = keras.Input((side, side, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(int(rng.integers(3, 7)), 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    if separate_softmax:
        x = keras.layers.Dense(classes, name=f"logits_{tag}")(x)
        outputs = keras.layers.Activation("softmax", name=f"softmax_{tag}")(x)
    else:
        outputs = keras.layers.Dense(classes, activation="softmax", name=f"predictions_{tag}")(x)
    model = keras.Model(inputs, outputs, name=f"random_digit_net_{tag}")
    count = int(rng.integers(3, 6))
    images = rng.uniform(0, 255, size=(count, side, side, 1)).astype("float32")
    masks = np.zeros((count, side, side), dtype=bool)
    for i in range(1, count):                # image 0 has nothing masked: penalty 0
        patch = int(rng.integers(3, 5))
        top, left = int(rng.integers(0, side - patch + 1)), int(rng.integers(0, side - patch + 1))
        masks[i, top:top + patch, left:left + patch] = True
    return model, images, masks


def _masks_see_the_gradients(gradients: np.ndarray, masks: np.ndarray) -> bool:
    """Whether some image keeps at least 1% of the largest image's squared gradient (N, H, W)
    inside its mask (N, H, W, bool). The penalties of the whole image and of the outside of the
    mask differ by the inside's; the check tells them apart at 0.1% of the largest, so 1% leaves
    a margin of ten."""
    energy = gradients ** 2
    inside, whole = (energy * masks).sum(axis=(1, 2)), energy.sum(axis=(1, 2))
    return bool(inside.max() >= 0.01 * whole.max() > 0)


def _draw_penalty_case(rng: np.random.Generator, separate_softmax: bool):
    """A random net, its images and masks, and the reference input gradients (N, H, W) of
    Σ_k log p_k, redrawn while a ReLU that is dead under a mask would leave it no gradient."""
    from .. import shortcuts
    for _ in range(20):
        model, images, masks = _random_digit_net(rng, separate_softmax)
        with untraced():
            gradients = shortcuts.right_reasons_gradients(model, images)[..., 0].astype("float64")
        if _masks_see_the_gradients(gradients, masks):
            return model, images, masks, gradients
    raise RuntimeError("check 05.3 drew 20 random nets whose masks saw no gradient; run it again.")


def _input_gradients(model, images, objective: str) -> np.ndarray:
    """Input gradients (N, H, W) of a chosen objective: the reference and typical mistakes."""
    import tensorflow as tf

    from .. import models
    logits_model = models.pre_softmax(model)
    batch = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(batch)
        logits = logits_model(batch, training=False)
        log_probabilities = tf.nn.log_softmax(logits)
        top = tf.argmax(logits, axis=1)
        if objective == "top log p":
            value = tf.reduce_sum(tf.gather(log_probabilities, top, axis=1, batch_dims=1))
        elif objective == "top p":
            value = tf.reduce_sum(tf.gather(tf.nn.softmax(logits), top, axis=1, batch_dims=1))
        elif objective == "logits":
            value = tf.reduce_sum(logits)
        elif objective == "top logit":
            value = tf.reduce_sum(tf.gather(logits, top, axis=1, batch_dims=1))
        else:
            raise ValueError(objective)
    return tape.gradient(value, batch).numpy()[..., 0].astype("float64")


def _penalty_hint(got: np.ndarray, model, images, masks, gradients: np.ndarray) -> str:
    masked = gradients * masks
    candidates = [
        (np.abs(masked).sum(axis=(1, 2)), "square the gradients before you add them up."),
        (np.sqrt((masked ** 2).sum(axis=(1, 2))),
         "the penalty is the sum of the squares itself, not its square root."),
        ((gradients ** 2).sum(axis=(1, 2)),
         "you add up the squared gradients of the whole image; only the pixels inside the mask count."),
        ((gradients ** 2 * ~masks).sum(axis=(1, 2)),
         "you add up the squared gradients *outside* the mask; the penalty is on the masked pixels."),
        ((masked ** 2).sum(axis=(1, 2)) / np.maximum(masks.sum(axis=(1, 2)), 1),
         "you average over the masked pixels; add the squares up instead."),
    ]
    for candidate, hint in candidates:
        if close(got, candidate, 1e-3):
            return hint
    for objective, hint in (
            ("top log p", "you differentiate the log-probability of the top class only; the penalty "
                          "uses the sum of the log-probabilities of *all* classes, Σ_k log p_k."),
            ("top p", "you differentiate the top class's probability; the penalty uses the sum of "
                      "the log-probabilities of all classes, Σ_k log p_k."),
            ("logits", "you differentiate the sum of the logits (scores before the softmax); take "
                       "the log-probabilities: log_softmax of the logits, or the log of the model's output."),
            ("top logit", "you differentiate the top class's logit; the penalty uses the sum of the "
                          "log-probabilities of all classes, Σ_k log p_k.")):
        other = _input_gradients(model, images, objective)
        if close(got, ((other * masks) ** 2).sum(axis=(1, 2)), 1e-3):
            return hint
    if np.allclose(got, 0, atol=1e-12):
        return ("your penalties are all 0. If you differentiate the sum of the probabilities, "
                "remember that it is always 1, so its gradient is 0: take the log of each "
                "probability first.")
    return ("the penalty of an image is Σ over the pixels of (mask · ∂(Σ_k log p_k)/∂x)², with the "
            "gradient taken with respect to the model's input images.")


@task("05.3", points=3, answer="right_reasons_penalty", title="The right-for-the-right-reasons penalty")
def _(right_reasons_penalty):
    require_callable(right_reasons_penalty, "right_reasons_penalty")
    rng = fresh_rng()
    what = "right_reasons_penalty(model, images, masks)"
    for separate_softmax in rng.permutation([False, True]):
        model, images, masks, gradients = _draw_penalty_case(rng, bool(separate_softmax))
        count = len(images)
        expected = ((gradients * masks) ** 2).sum(axis=(1, 2))
        try:
            value = call(right_reasons_penalty, model, images.copy(), masks.copy(), what=what)
        except Hint as hint:
            message = str(hint)
            if " raised " in message and "None" in message.split(" raised ", 1)[1]:
                raise Hint(f"{hint} A gradient of None means the tape did not watch the images: "
                           "turn them into a tensor (tf.convert_to_tensor) and call tape.watch on "
                           "it inside the `with` block, before the model's forward pass.") from None
            raise
        got = as_numbers(value, what)
        if got.shape != expected.shape:
            if got.size == 1:
                raise Hint(f"you return one number for {count} images; return one penalty per image, "
                           f"shape ({count},), adding up over the pixels only.")
            if got.shape[:1] == (count,) and got.ndim > 1:
                raise Hint(f"you return shape {got.shape}; add the squares up over the pixels, so that "
                           f"each image gets one number: shape ({count},).")
            raise Hint(f"for {count} images you return shape {got.shape}; one penalty per image is "
                       f"shape ({count},).")
        if not np.all(np.isfinite(got)):
            raise Hint("some penalties are NaN or infinite: did a probability become 0 before its "
                       "log? Use tf.nn.log_softmax on the logits of models.pre_softmax(model).")
        if not close(got, expected, 1e-3):
            raise Hint(_penalty_hint(got, model, images, masks, gradients))


# ----------------------------------------------------------------------------- 05.4

choice_task(
    "05.4", points=2, answer="true_statements", title="Reading a shortcut (multiple choice)",
    options="abcdef",
    key="d2630ea8dba3601b2ce8bb4d8d37b7f98c665c940d04c522c06e69c884ef2ad5",
    hint="at least one statement is judged wrongly. For each one, find the part of lesson 05 or "
         "of this notebook that speaks of it, and look again at the numbers above.")
