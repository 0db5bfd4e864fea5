"""Checks of the exercises of lesson 02 (filter patterns): solutions/02_filter_patterns.ipynb.

Every check draws fresh random feature maps, objectives, networks and images, so an answer that
hard-codes what the notebook's own example produces does not pass. References:
``coursekit.filters`` (``border_width``, ``filter_patterns``, ``start_image``, ``deprocess``).
"""
from __future__ import annotations

import warnings

import numpy as np

from .core import Hint, as_array, as_numbers, call, choice_task, fresh_rng, require_callable, task, untraced

# ----------------------------------------------------------------------------- 02.1

def _inner_mean(maps: np.ndarray, filter_index: int, rows: int, cols: int) -> np.ndarray:
    """Mean of channel ``filter_index`` of ``(N, h, w, C)`` maps, ``rows`` / ``cols`` cut from each side."""
    h, w = maps.shape[1:3]
    return maps[:, rows:h - rows, cols:w - cols, filter_index].mean(axis=(1, 2))


def _objective_hint(got: np.ndarray, maps: np.ndarray, filter_index: int) -> str:
    """What the student's numbers match instead of the objective, as a hint."""
    from .. import filters
    h, w = maps.shape[1:3]
    rows, cols = filters.border_width(h), filters.border_width(w)
    size = f"{h}x{w} map"
    if not np.all(np.isfinite(got)):
        return (f"for a {size} your numbers are NaN: the mean of an empty slice? On this map the "
                f"border is filters.border_width({h}) = {rows} rows and filters.border_width({w}) = "
                f"{cols} columns on each side.")
    if np.allclose(got, _inner_mean(maps, filter_index, 0, 0), atol=1e-5):
        return (f"for a {size} your numbers are the mean over the whole map, border included. "
                "Leave out the border: filters.border_width(height) rows at the top and at the "
                "bottom, filters.border_width(width) columns at the left and at the right.")
    if np.allclose(got, _inner_mean(maps, filter_index, cols, rows), atol=1e-5):
        return (f"for a {size} you cut the rows by the width's border and the columns by the "
                "height's: the first spatial axis of (N, h, w, C) is the height.")
    for fixed in (1, 2):
        if (fixed, fixed) != (rows, cols) and np.allclose(got, _inner_mean(maps, filter_index, fixed, fixed), atol=1e-5):
            return (f"for a {size} you cut {fixed} pixel(s) on each side, but small maps have a "
                    f"narrower border: filters.border_width gives {rows} for the height and {cols} "
                    "for the width here.")
    for other in range(maps.shape[-1]):
        if other != filter_index and np.allclose(got, _inner_mean(maps, other, rows, cols), atol=1e-5):
            return (f"your numbers are those of channel {other}, not of channel filter_index="
                    f"{filter_index}: the channels are the last axis.")
    inner = maps[:, rows:h - rows, cols:w - cols, filter_index]
    if np.allclose(got, inner.sum(axis=(1, 2)), atol=1e-4):
        return "you add the inner values up; the objective is their mean."
    return (f"for a {size} (border {rows} rows, {cols} columns) your numbers are not the mean of "
            "the inner part of channel filter_index. Try it on a small map you fill by hand.")


@task("02.1", points=3, answer="filter_objective", title="The filter objective, border left out")
def _(filter_objective):
    import tensorflow as tf

    from .. import filters
    require_callable(filter_objective, "filter_objective")
    rng = fresh_rng()
    sides = [(int(rng.integers(9, 17)), int(rng.integers(9, 17))),   # border 2
             (int(rng.integers(5, 9)), int(rng.integers(9, 15))),    # 1 row, 2 columns
             (int(rng.integers(3, 5)), int(rng.integers(5, 9)))]     # 0 rows, 1 column
    rng.shuffle(sides)
    for h, w in sides:
        count, channels = int(rng.integers(1, 4)), int(rng.integers(3, 8))
        filter_index = int(rng.integers(0, channels))
        maps = rng.normal(size=(count, h, w, channels)) + rng.normal(size=(1, h, w, 1)) * 3
        maps = tf.constant(maps.astype("float32"))
        rows, cols = filters.border_width(h), filters.border_width(w)
        with tf.GradientTape() as tape:
            tape.watch(maps)
            value = call(filter_objective, maps, filter_index, what="filter_objective(feature_maps, filter_index)")
        got = as_numbers(value, "filter_objective(feature_maps, filter_index)")
        expected = _inner_mean(maps.numpy().astype("float64"), filter_index, rows, cols)
        if got.shape != expected.shape:
            if got.size == 1 and count > 1:
                raise Hint(f"for a batch of {count} feature maps you return one number; return one "
                           f"per image, shape ({count},): average over height and width only.")
            raise Hint(f"for feature maps of shape {tuple(maps.shape)} you return shape {got.shape}; "
                       f"the objective has one number per image: shape ({count},).")
        if not np.allclose(got, expected, atol=1e-4, rtol=1e-4):
            with warnings.catch_warnings():  # some wrong answers average empty slices
                warnings.simplefilter("ignore")
                raise Hint(_objective_hint(got, maps.numpy().astype("float64"), filter_index))
        if not tf.is_tensor(value):
            raise Hint("the numbers are right, but you return a numpy array: gradient ascent needs "
                       "the gradient of this value, so compute it with TensorFlow operations on the "
                       "tensor (slicing and tf.reduce_mean work; np.asarray or .numpy() cut the tape).")
        gradient = tape.gradient(value, maps)
        if gradient is None:
            raise Hint("the numbers are right, but TensorFlow cannot differentiate them with respect "
                       "to the feature maps: keep every step a TensorFlow operation (no .numpy(), "
                       "no np. functions) between the maps and the result.")


# ----------------------------------------------------------------------------- 02.2

def _random_conv_net(rng: np.random.Generator):
    """A random two-convolution network whose last convolution has no activation (no dead filters)."""
    import keras
    channels = int(rng.integers(1, 4))
    tag = int(rng.integers(1000, 10000))
    inputs = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(int(rng.integers(3, 7)), 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(int(rng.integers(3, 7)), 3, padding="same", name=f"target_{tag}")(x)
    return keras.Model(inputs, x, name=f"random_net_{tag}"), f"target_{tag}", channels


def _moved(call_result, images: np.ndarray, what: str) -> np.ndarray:
    got = as_numbers(call_result, what)
    if got.shape != images.shape:
        raise Hint(f"for images of shape {images.shape} your function returns shape {got.shape}; "
                   "it should return the moved images, of the same shape.")
    return got


def _step_hint(got: np.ndarray, images: np.ndarray, gradients: np.ndarray, lr: float) -> str:
    """Why ``got`` is not ``images`` moved by ``lr`` along each image's normalised gradient."""
    step = (got - images).reshape(len(images), -1)
    gradients = gradients.reshape(len(images), -1)
    lengths = np.linalg.norm(step, axis=1)
    norms = np.linalg.norm(gradients, axis=1)
    alive = norms > 0
    if np.allclose(got.reshape(len(images), -1), lr * gradients / np.maximum(norms, 1e-12)[:, None], atol=1e-4):
        return "you return the step itself; return the images after the step (images + the step)."
    if np.any(np.sum(step[alive] * gradients[alive], axis=1) < 0):
        return ("your step lowers the objective: gradient ascent moves the images along the "
                "gradient, not against it.")
    if np.allclose(lengths[alive], lr * norms[alive], rtol=1e-3):
        return ("the images move along the gradient but by lr times its length. Each image should "
                f"move by exactly lr (L2 length {lr:g}) whatever its gradient's size: normalise it.")
    if len(images) > 1 and np.isclose(np.sqrt(np.sum(lengths[alive] ** 2)), lr, rtol=1e-3):
        return ("the batch as a whole moves by lr, but each image should: normalise each image's "
                "gradient by its own L2 norm (over height, width and channels).")
    return (f"each image should move by L2 length lr={lr:g} along its own gradient; yours moved by "
            f"{np.round(lengths, 4).tolist()}, not all along the gradient.")


@task("02.2", points=3, answer="ascent_step", title="One normalised gradient-ascent step")
def _(ascent_step):
    import tensorflow as tf

    from .. import filters
    require_callable(ascent_step, "ascent_step")
    rng = fresh_rng()
    what = "ascent_step(images, objective, lr)"

    # 1. A linear objective: its gradient is known, and the images' gradients differ in size, all at
    # least 1 per pixel so that the usual guard against 0 / 0 (norm + 1e-5) changes no step.
    count, side, channels = int(rng.integers(2, 4)), int(rng.integers(6, 12)), int(rng.integers(1, 4))
    scales = 10.0 ** rng.uniform(0, 4, size=count)
    directions = (rng.normal(size=(count, side, side, channels)) * scales[:, None, None, None]).astype("float32")
    images = rng.normal(size=directions.shape).astype("float32")
    lr = float(rng.choice([0.5, 2.0, 5.0, 10.0]))

    def linear(batch):
        return tf.reduce_sum(batch * directions, axis=(1, 2, 3))

    got = _moved(call(ascent_step, tf.constant(images), linear, lr, what=what), images, what)
    if not np.all(np.isfinite(got)):
        raise Hint("your step returns NaN or infinite values for images with a non-zero gradient.")
    norms = np.linalg.norm(directions.reshape(count, -1), axis=1).reshape(-1, 1, 1, 1)
    expected = images + lr * directions / norms
    if not np.allclose(got, expected, atol=1e-4, rtol=1e-4):
        raise Hint("with objective(images) = a weighted sum of each image's pixels: "
                   + _step_hint(got, images, directions, lr))

    # 2. An image whose objective does not depend on it (a dead filter) must stay as it is.
    dead = int(rng.integers(0, count))
    stuck = directions.copy()
    stuck[dead] = 0.0

    def partly_dead(batch):
        return tf.reduce_sum(batch * stuck, axis=(1, 2, 3))

    got = _moved(call(ascent_step, tf.constant(images), partly_dead, lr, what=what), images, what)
    if not np.all(np.isfinite(got[dead])):
        raise Hint(f"image {dead} has an all-zero gradient (as for a dead filter) and your step "
                   "turns it into NaN: 0 / 0. Guard the division so that such an image stays as it is.")
    if not np.allclose(got[dead], images[dead], atol=1e-5):
        raise Hint(f"image {dead} has an all-zero gradient, so it should not move; yours did.")
    stuck_norms = np.maximum(np.linalg.norm(stuck.reshape(count, -1), axis=1), 1e-12).reshape(-1, 1, 1, 1)
    if not np.allclose(got, images + lr * stuck / stuck_norms, atol=1e-4, rtol=1e-4):
        raise Hint(f"image {dead} has an all-zero gradient and stays put, as it should, but the other "
                   "images should still move as usual, each by lr along its own gradient.")

    # 3. The real thing: one step of filters.filter_patterns on a random network.
    model, layer, channels = _random_conv_net(rng)
    size, seed = int(rng.integers(12, 20)), int(rng.integers(0, 1000))
    chosen = sorted(int(f) for f in rng.choice(model.get_layer(layer).output.shape[-1], size=2, replace=False))
    extractor = _extractor(model, layer)
    rows = cols = filters.border_width(size)  # "same" convolutions keep the size
    filter_of_image = tf.constant(chosen, dtype=tf.int32)

    def mean_activation(batch):  # image i is pushed towards filter chosen[i]
        maps = extractor(batch)[:, rows:size - rows, cols:size - cols, :]
        return tf.reduce_mean(tf.gather(maps, filter_of_image, axis=3, batch_dims=1), axis=(1, 2))

    start = np.stack([filters.start_image(seed, f, size, channels) for f in chosen])
    # The filters' gradients are small (about 0.01): scaled up, so that the usual guard against 0 / 0
    # changes no step; a positive factor leaves every normalised step as it is.
    factor = tf.constant(_gradient_scale(mean_activation, start, rng), dtype=tf.float32)

    def filter_objective(batch):
        return mean_activation(batch) * factor

    with warnings.catch_warnings(), untraced():
        warnings.simplefilter("ignore")
        reference = filters.filter_patterns(model, layer, chosen, steps=1, size=size, lr=lr, seed=seed,
                                            progress=False)
    got = _moved(call(ascent_step, tf.constant(start), filter_objective, lr, what=what), start, what)
    if not np.allclose(got, reference, atol=1e-4, rtol=1e-3):
        with tf.GradientTape() as tape:
            batch = tf.constant(start)
            tape.watch(batch)
            value = filter_objective(batch)
        raise Hint("on a random network's filters: "
                   + _step_hint(got, start, tape.gradient(value, batch).numpy(), lr))


def _gradient_scale(objective, images: np.ndarray, rng: np.random.Generator) -> float:
    """A factor that brings the smallest non-zero L2 norm of ``objective``'s gradients at ``images``
    to between 1 and 10 (1 if every gradient is zero)."""
    import tensorflow as tf
    batch = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(batch)
        value = objective(batch)
    norms = np.linalg.norm(tape.gradient(value, batch).numpy().reshape(len(images), -1), axis=1)
    alive = norms[norms > 0]
    return float(rng.uniform(1, 10) / alive.min()) if alive.size else 1.0


def _extractor(model, layer: str):
    """A model from ``model``'s input to the output of ``layer``."""
    import keras
    return keras.Model(model.inputs, model.get_layer(layer).output)


# ----------------------------------------------------------------------------- 02.3

@task("02.3", points=2, answer="to_display", title="An ascent image, ready to show")
def _(to_display):
    from .. import filters
    require_callable(to_display, "to_display")
    rng = fresh_rng()
    h, w = (int(v) for v in rng.integers(6, 20, size=2))
    channels = int(rng.choice([1, 3]))
    cases = {
        "an image with small values around a large offset":
            rng.uniform(-50, 50) + rng.uniform(0.01, 0.05) * rng.normal(size=(h, w, channels)),
        "an image with a few very bright and very dark pixels":
            rng.normal(size=(h, w, channels)) * rng.uniform(0.5, 20),
        "a flat image (every pixel the same value, e.g. a dead filter's)":  # exact in float32
            np.full((h, w, channels), int(rng.integers(-20, 21)) / 4),
    }
    spikes = cases["an image with a few very bright and very dark pixels"]
    spikes[0, 0], spikes[-1, -1] = spikes.std() * 8, -spikes.std() * 8
    for label, image in cases.items():
        image = image.astype("float32")
        result = call(to_display, image.copy(), what="to_display(image)")
        if result is None:
            raise Hint("to_display returned None: does it end with a `return`?")
        result = as_array(result)   # a tensor shows as well as an array
        if not isinstance(result, np.ndarray):
            raise Hint(f"to_display should return a numpy array; it returned a {type(result).__name__}.")
        if result.shape != image.shape:
            raise Hint(f"for an image of shape {image.shape} you return shape {result.shape}: keep the "
                       "whole image (no crop here), one value per pixel and channel.")
        if result.dtype != np.uint8:
            raise Hint(f"you return dtype {result.dtype}; matplotlib reads 0..255 as grey levels only "
                       "from uint8. Convert at the very end, after clipping.")
        expected = filters.deprocess(image, crop=0.0).astype("int64")
        error = np.abs(result.astype("int64") - expected)
        if error.max() <= 1:  # rounding or truncation: both fine
            continue
        if "flat" in label:
            raise Hint(f"for {label} every pixel should come out mid-grey (128): its standard "
                       "deviation is 0, so standardising it needs care (no division by zero).")
        standard = (image - image.mean()) / image.std() * 64 + 128
        outside = (standard > 255.5) | (standard < -0.5)
        wrong_end = ((standard > 255.5) & (result < 128)) | ((standard < -0.5) & (result > 128))
        if outside.any() and error[~outside].max(initial=0) <= 1 and wrong_end[outside].mean() > 0.5:
            raise Hint(f"for {label} some pixels come out at the wrong end of the grey scale: "
                       "uint8 wraps around (256 becomes 0), so clip to [0, 255] before converting.")
        if abs(float(result.mean()) - float(expected.mean())) > 8 or \
                abs(float(result.std()) - float(expected.std())) > 8:
            raise Hint(f"for {label} your grey levels have mean {result.mean():.0f} and standard "
                       f"deviation {result.std():.0f}; they should be about {expected.mean():.0f} and "
                       f"{expected.std():.0f}: standardise each image with its own mean and standard "
                       "deviation, then scale and shift as the task says.")
        raise Hint(f"for {label} {int((error > 1).sum())} pixel(s) differ by up to {int(error.max())} "
                   "grey levels from what the task describes.")


# ----------------------------------------------------------------------------- 02.4

choice_task(
    "02.4", points=2, answer="true_statements", title="What filter patterns tell us (multiple choice)",
    options="abcdef",
    key="386a2dd88626c52968c271c4456ab5884ba270caabb4e9316460c81d5a8f75f5",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 02 "
         "that speaks of it, or try it with your own functions above.")
