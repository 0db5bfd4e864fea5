"""Checks of the exercises of lesson 03 (saliency): solutions/03_saliency.ipynb.

Every check draws a fresh random classifier, images, classes and noise, so an answer that
hard-codes what the notebook's own example produces does not pass. References:
``coursekit.saliency`` (``input_gradients``, ``vanilla_saliency``), ``coursekit.models.pre_softmax`` and,
for the probability's gradient, TensorFlow's own differentiation of the softmax.
"""
from __future__ import annotations

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, task, untraced


def _random_classifier(rng: np.random.Generator):
    """A small random ReLU CNN ending in a separate softmax layer, and a batch for it."""
    import keras
    side, channels, classes = int(rng.integers(8, 15)), int(rng.integers(2, 4)), int(rng.integers(3, 7))
    tag = int(rng.integers(1000, 10000))
    inputs = keras.Input((side, side, channels))
    x = keras.layers.Conv2D(int(rng.integers(4, 9)), 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(int(rng.integers(4, 9)), 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    logits = keras.layers.Dense(classes, name=f"logits_{tag}")(x)
    outputs = keras.layers.Activation("softmax", name=f"softmax_{tag}")(logits)
    model = keras.Model(inputs, outputs, name=f"random_classifier_{tag}")
    images = rng.normal(size=(int(rng.integers(2, 4)), side, side, channels)).astype("float32")
    return model, images


def _per_map_max(maps: np.ndarray) -> np.ndarray:
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return maps / np.where(peak > 0, peak, 1)


# ----------------------------------------------------------------------------- 03.1

def _saliency_hint(got: np.ndarray, gradients: np.ndarray, top_gradients: np.ndarray) -> str:
    expected = np.abs(gradients).max(axis=-1)
    if close(_per_map_max(got), _per_map_max(expected), 1e-3):
        return ("your maps have the right shape but are scaled: return the raw gradient "
                "magnitudes, not maps divided by their maximum.")
    if close(got, gradients.max(axis=-1), 1e-3):
        return ("negative gradients count too: a pixel whose brightening lowers the score a lot "
                "matters as much as one whose brightening raises it.")
    if close(got, np.abs(gradients).mean(axis=-1), 1e-3) or close(got, np.abs(gradients).sum(axis=-1), 1e-3):
        return "combine the colour channels of a pixel by their largest magnitude, not their mean or sum."
    if close(got, np.abs(top_gradients).max(axis=-1), 1e-3):
        return ("these are the maps of each image's top class; explain the class class_index for "
                "every image.")
    return ("each map should be the largest |gradient| over the colour channels of the score "
            "class_index (a logit) with respect to the image's pixels. Compare yours with "
            "coursekit.saliency.vanilla_saliency(..., normalize=False) on a small example.")


@task("03.1", points=2, answer="saliency_map", title="Vanilla saliency with a GradientTape")
def _(saliency_map):
    from .. import models, saliency
    require_callable(saliency_map, "saliency_map")
    rng = fresh_rng()
    model, images = _random_classifier(rng)
    logits_model = models.pre_softmax(model)
    classes = int(model.outputs[0].shape[-1])
    for class_index in rng.choice(classes, size=2, replace=False):
        class_index = int(class_index)
        what = "saliency_map(scores_model, images, class_index)"
        got = as_numbers(call(saliency_map, logits_model, images.copy(), class_index, what=what), what)
        with untraced():
            expected = saliency.vanilla_saliency(model, images, class_index=class_index, normalize=False)
        if got.shape != expected.shape:
            detail = {4: ": one value per pixel, so combine the colour channels",
                      2: ": one map per image of the batch"}.get(got.ndim, "")
            raise Hint(f"for a batch of shape {images.shape} your maps have shape {got.shape}; "
                       f"they should have shape {expected.shape}{detail}.")
        if not np.all(np.isfinite(got)):
            raise Hint("your maps contain NaN or infinite values.")
        if not close(got, expected, 1e-3):
            with untraced():
                gradients = saliency.input_gradients(model, images, class_index=class_index)
                top = saliency.input_gradients(model, images)
            raise Hint(_saliency_hint(got, gradients, top))


# ----------------------------------------------------------------------------- 03.2

@task("03.2", points=2, answer="smoothgrad_map", title="SmoothGrad: average over noisy copies")
def _(smoothgrad_map):
    from .. import saliency
    require_callable(smoothgrad_map, "smoothgrad_map")
    rng = fresh_rng()
    model, images = _random_classifier(rng)
    class_index = int(rng.integers(0, model.outputs[0].shape[-1]))
    samples = int(rng.integers(3, 6))
    sigma = 0.3 * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
    noises = (rng.normal(size=(samples, *images.shape)) * sigma.reshape(1, -1, 1, 1, 1)).astype("float32")
    seen = []

    def gradients_of(batch):
        batch = np.asarray(batch, dtype="float32")
        seen.append(batch.copy())
        with untraced():
            return saliency.input_gradients(model, batch, class_index=class_index)

    what = "smoothgrad_map(gradients_of, images, noises)"
    got = as_numbers(call(smoothgrad_map, gradients_of, images.copy(), noises.copy(), what=what), what)
    noisy = (images[None] + noises).reshape(-1, *images.shape[1:])
    with untraced():
        per_sample = saliency.input_gradients(model, noisy, class_index=class_index).reshape(samples, *images.shape)
    expected = np.abs(per_sample).mean(axis=0).max(axis=-1)
    if got.shape != expected.shape:
        raise Hint(f"for {samples} noise samples of a batch of shape {images.shape} your maps have "
                   f"shape {got.shape}; they should have shape {expected.shape}: one map per image, "
                   "averaged over the samples, one value per pixel.")
    if close(got, expected, 1e-3):
        return
    if not seen:
        raise Hint("your function never calls gradients_of: the gradients must come from it.")
    vanilla = np.abs(gradients_of(images)).max(axis=-1)
    if close(got, vanilla, 1e-3):
        raise Hint("your maps are those of the clean images: add each noise sample to the images "
                   "before taking the gradients.")
    if close(got, np.abs(per_sample).max(axis=-1).mean(axis=0), 1e-3):
        raise Hint("close, but the order matters: average the magnitudes over the samples first, "
                   "then take the largest over the colour channels (as coursekit.saliency.smoothgrad "
                   "does), not the other way round.")
    if close(got, np.abs(per_sample.mean(axis=0)).max(axis=-1), 1e-3):
        raise Hint("you average the signed gradients, so signs that flip from one noisy copy to the "
                   "next cancel out; this course's SmoothGrad averages their magnitudes |gradient|.")
    raise Hint(f"for each image, average |gradients_of(images + noises[s])| over the {samples} samples "
               "s, then take the largest value over the colour channels.")


# ----------------------------------------------------------------------------- 03.3

def _probability_hint(got, gradients, probabilities, c) -> str:
    g_c, p_c = gradients[c], probabilities[c]
    weighted = np.tensordot(probabilities, gradients, axes=1)
    if close(got, g_c, 1e-3):
        return ("that is the gradient of the logit z_c; the probability p_c also moves when any "
                "other class's logit moves.")
    if close(got, -p_c * (g_c - weighted), 1e-3):
        return "the sign is flipped: raising z_c raises p_c."
    if close(got, p_c * g_c, 1e-3):
        return "the term of the other classes is missing: the softmax ties every class to every other."
    if close(got, g_c - weighted, 1e-3):
        return "the factor p_c in front is missing."
    if close(got, p_c * (g_c - gradients.mean(axis=0)), 1e-3):
        return "weight each class's gradient by its probability p_j, not equally."
    return ("follow the formula in the task: p_c times (the gradient of z_c minus the sum over "
            "classes j of p_j times the gradient of z_j).")


@task("03.3", points=2, answer="probability_gradient", title="The gradient of a probability, through the softmax")
def _(probability_gradient):
    import tensorflow as tf

    from .. import saliency
    require_callable(probability_gradient, "probability_gradient")
    rng = fresh_rng()
    what = "probability_gradient(logit_gradients, probabilities, class_index)"

    # a random classifier: the reference is TensorFlow's own gradient of the softmax output
    model, images = _random_classifier(rng)
    image = images[:1]
    classes = int(model.outputs[0].shape[-1])
    with untraced():
        logit_gradients = saliency.input_gradients(model, np.repeat(image, classes, axis=0),
                                               class_index=list(range(classes)))
    batch = tf.constant(image)
    cases = []
    for c in rng.choice(classes, size=2, replace=False):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            probabilities = model(batch, training=False)[0]
            chosen = probabilities[int(c)]
        cases.append((logit_gradients, probabilities.numpy().astype("float64"), int(c),
                      tape.gradient(chosen, batch)[0].numpy(), "a random network"))

    # made-up gradients and a confident prediction, where the probability barely moves
    k, side = int(rng.integers(3, 6)), int(rng.integers(4, 9))
    gradients = rng.normal(size=(k, side, side, 1)).astype("float32")
    logits = rng.normal(size=k) * 2
    logits[0] += 9
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    for c in (0, int(rng.integers(1, k))):
        expected = probabilities[c] * (gradients[c] - np.tensordot(probabilities, gradients, axes=1))
        cases.append((gradients, probabilities, c, expected, "made-up gradients of a confident model"))

    for gradients, probabilities, c, expected, label in cases:
        got = as_numbers(call(probability_gradient, gradients.copy(), probabilities.copy(), c, what=what), what)
        if got.shape != expected.shape:
            raise Hint(f"for logit gradients of shape {gradients.shape} (one per class) you return shape "
                       f"{got.shape}; the gradient of one probability has the shape of one image, "
                       f"{expected.shape}.")
        if not close(got, expected, tolerance=2e-3):
            raise Hint(f"with {label}, class_index={c}: "
                       + _probability_hint(got, gradients.astype("float64"), probabilities, c))


# ----------------------------------------------------------------------------- 03.4

def _integrated_variants(model, image, baseline, class_index, steps):
    """Integrated Gradients and its usual slips, each ``(H, W, C)``, from one set of path gradients.

    The slips: the usual formula mistakes, and the grouped loop that sends only the first ``m`` of
    the ``steps`` points (its last group forgotten), one variant per ``m``."""
    from .. import saliency

    def gradients_at(alphas):
        points = baseline[None] + alphas[:, None, None, None].astype("float32") * (image - baseline)[None]
        with untraced():
            return saliency.input_gradients(model, points, class_index=class_index).astype("float64")

    k = np.arange(steps)
    at_middles = gradients_at((k + 0.5) / steps)
    middle = at_middles.mean(axis=0)
    difference = (image - baseline).astype("float64")
    right = difference * middle
    at_image = gradients_at(np.ones(1))[0]
    first_points = np.cumsum(at_middles, axis=0)
    return right, {
        "no_difference": middle,
        "image_only": image * middle,
        "sum": difference * middle * steps,
        "left": difference * gradients_at(k / steps).mean(axis=0),
        "right_end": difference * gradients_at((k + 1) / steps).mean(axis=0),
        "input_x_gradient": difference * at_image,
        **{f"first_points:{m}": difference * first_points[m - 1] / steps for m in range(1, steps)},
    }


def _nearest_slip(got, right, variants) -> str | None:
    """The name of the slip ``got`` matches (the nearest, where several do), or None."""
    matching = {name: float(np.abs(got - variant).max()) for name, variant in variants.items()
                if not close(variant, right, 2e-3) and close(got, variant, 2e-3)}
    return min(matching, key=matching.get) if matching else None


def _integrated_hint(slip: str, steps: int) -> str:
    if slip.startswith("first_points:"):
        counted = int(slip.split(":")[1])
        return (f"your attributions use only the first {counted} of the {steps} points: every point counts "
                "once, and the last group, which may hold fewer than points_per_tape points, must be sent "
                "too (range(0, steps, points_per_tape) visits every group).")
    return _INTEGRATED_HINTS[slip]


_INTEGRATED_HINTS = {
    "no_difference": "you return the average gradient along the path; multiply it by (image - baseline), "
                     "pixel by pixel and channel by channel.",
    "image_only": "multiply the average gradient by (image - baseline), not by the image alone: the "
                  "attributions share out the difference from the baseline.",
    "sum": "average the gradients over the steps points (divide their sum by steps).",
    "left": "your points start at the baseline itself (alpha = 0, 1/steps, ...). Take the middle of each "
            "of the steps pieces: alpha = (k + 0.5) / steps for k = 0, ..., steps - 1.",
    "right_end": "your points end at the image (alpha = 1/steps, ..., 1): that is another rule. Take the "
                 "middle of each piece: alpha = (k + 0.5) / steps for k = 0, ..., steps - 1.",
    "input_x_gradient": "you use the gradient at the image only. Take it at every point of the path from "
                        "the baseline to the image and average.",
}


@task("03.4", points=3, answer="integrated_gradients_map", title="Integrated Gradients from scratch")
def _(integrated_gradients_map):
    from .. import models
    require_callable(integrated_gradients_map, "integrated_gradients_map")
    rng = fresh_rng()
    model, images = _random_classifier(rng)
    logits_model = models.pre_softmax(model)
    classes = int(model.outputs[0].shape[-1])
    what = "integrated_gradients_map(scores_model, image, baseline, class_index, steps)"
    baselines = (np.zeros_like(images[0]), rng.normal(size=images[0].shape).astype("float32"))
    for baseline in baselines:
        image = images[int(rng.integers(len(images)))]
        class_index, steps = int(rng.integers(classes)), int(rng.integers(6, 17))
        got = as_numbers(call(integrated_gradients_map, logits_model, image.copy(), baseline.copy(), class_index,
                              steps, what=what), what)
        if got.shape != image.shape:
            raise Hint(f"for an image of shape {image.shape} your attributions have shape {got.shape}; they "
                       f"should have the image's shape {image.shape}: one share per pixel and channel.")
        right, variants = _integrated_variants(model, image, baseline, class_index, steps)
        if close(got, right, 2e-3):
            continue
        slip = _nearest_slip(got, right, variants)
        if slip:
            raise Hint(_integrated_hint(slip, steps))
        scores = np.asarray(logits_model(np.stack([image, baseline])))[:, class_index]
        raise Hint(f"with steps = {steps}, your attributions add up to {got.sum():.4g}; those of Integrated "
                   f"Gradients add up to {right.sum():.4g}, close to score(image) - score(baseline) = "
                   f"{scores[0] - scores[1]:.4g} (completeness). Average the gradient of the class score at "
                   "baseline + alpha * (image - baseline) for alpha = (k + 0.5) / steps, k = 0, ..., steps - 1, "
                   "then multiply by (image - baseline). Every point counts once: the last group may hold "
                   "fewer than points_per_tape points.")


# ----------------------------------------------------------------------------- 03.5

choice_task(
    "03.5", points=1, answer="true_statements", title="Reading saliency maps and attributions (multiple choice)",
    options="abcdefgh",
    key="7a4c0a402f495fa43a7453bd8f97fdb734ace09d84f3b69abbaf91a5b5ff1798",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 03 "
         "that speaks of it, or try it with your functions above.")
