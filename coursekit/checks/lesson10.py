"""Checks of the exercises of lesson 10 (concepts and TCAV): solutions/10_concepts.ipynb.

Every check draws fresh activations, networks, gradients and scores, so an answer that hard-codes
what the notebook's own example produces does not pass. References: scikit-learn's logistic
regression (10.1), ``coursekit.concepts.layer_gradients`` (10.2), ``concepts.tcav_score`` (10.3)
and ``scipy.stats.ttest_ind`` (10.4). Each case is drawn so that the typical mistakes (a flipped
CAV, the probability instead of the logit, zero derivatives counted as positive, a one-sided
p-value) give other numbers than the right answer.
"""
from __future__ import annotations

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, task


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


# ----------------------------------------------------------------------------- 10.1

SHIFT = 7.0   # how far the concept's activations are moved along the planted direction (noise: 1)


def _planted_activations(rng: np.random.Generator):
    """Activations ``(n_c, h, w, c)`` of concept images and ``(n_r, h, w, c)`` of random images.

    Both share a large mean (3 to 6 per value) and unit noise; the concept's are moved SHIFT along
    a unit direction ``u`` of the flattened space. Measured over 2,000 drawings: scikit-learn's
    logistic regression finds a direction at least 0.888 in cosine from ``u``; the difference of
    the two means at least 0.95. Redrawn while the concept's mean alone points within 0.7 of ``u``,
    so that returning it cannot pass.
    """
    for _ in range(100):
        h, w, c = int(rng.integers(2, 4)), int(rng.integers(2, 4)), int(rng.integers(2, 5))
        size = h * w * c
        concept_count, random_count = int(rng.integers(30, 41)), int(rng.integers(30, 41))
        mean = rng.uniform(3, 6, size)
        u = _unit(rng.normal(size=size))
        concept = mean + rng.normal(size=(concept_count, size)) + SHIFT * u
        random = mean + rng.normal(size=(random_count, size))
        if _unit(concept.mean(axis=0)) @ u < 0.7:
            shape = (h, w, c)
            return (concept.reshape(concept_count, *shape).astype("float32"),
                    random.reshape(random_count, *shape).astype("float32"), u)
    raise RuntimeError("check 10.1 could not draw a case in 100 tries; run it again.")


@task("10.1", points=2, answer="concept_direction", title="The concept activation vector")
def _(concept_direction):
    require_callable(concept_direction, "concept_direction")
    rng = fresh_rng()
    what = "concept_direction(concept_activations, random_activations)"
    for _ in range(2):
        concept, random, u = _planted_activations(rng)
        size, channels = u.size, concept.shape[-1]
        got = as_numbers(call(concept_direction, concept.copy(), random.copy(), what=what), what)
        if got.shape == (1, size):
            raise Hint(f"you return shape (1, {size}), as a classifier's coef_ holds it; the CAV is the one "
                       f"row of it, shape ({size},).")
        if got.shape == (channels,):
            raise Hint(f"you return {channels} numbers, one per channel: did you average over the positions? "
                       "Flatten each image's activations instead (h * w * c numbers per image).")
        if got.shape != (size,):
            raise Hint(f"for activations of shape {concept.shape} (N, h, w, c) the CAV has one number per "
                       f"activation of an image, shape ({size},); you return shape {got.shape}.")
        norm = float(np.linalg.norm(got))
        if not np.isfinite(got).all() or norm == 0:
            raise Hint("your direction is all zeros or holds NaN; a CAV is the weight vector of a classifier "
                       "that tells the two sets apart.")
        cosine = float(got @ u) / norm
        if cosine < -0.8:
            raise Hint("your direction points from the concept towards the random images: label the concept "
                       "images 1 and the random ones 0, so that the classifier's weights point to the concept.")
        if cosine < 0.8:
            concept_mean = _unit(concept.reshape(len(concept), -1).mean(axis=0))
            if got @ concept_mean / norm > 0.99:
                raise Hint("you return the direction of the concept's mean activations; the CAV is the direction "
                           "that *separates* the concept from the random images (a classifier's weights).")
            raise Hint("your direction does not separate the two sets as it should: fit scikit-learn's "
                       "LogisticRegression (its default settings) to the flattened activations, concept 1, "
                       "random 0, and take its weights (coef_).")
        if abs(norm - 1) > 1e-3:
            raise Hint(f"your direction is right but has length {norm:.3g}: divide it by its norm, so that the "
                       "CAV has length 1.")


# ----------------------------------------------------------------------------- 10.2

def _random_concept_net(rng: np.random.Generator, separate_softmax: bool):
    """A random CNN with two named convolutions and a softmax head, one of its layers, images, and
    a class that is not every image's top class."""
    import keras
    tag = int(rng.integers(1000, 10000))
    side, channels, classes = int(rng.integers(8, 13)), int(rng.integers(1, 4)), int(rng.integers(3, 7))
    inputs = keras.Input((side, side, channels))
    # at least 4 channels, more than the images have: gradients taken at the input have another shape
    x = keras.layers.Conv2D(int(rng.integers(4, 8)), 3, padding="same", activation="relu", name=f"conv_a_{tag}")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(int(rng.integers(4, 8)), 3, padding="same", activation="relu", name=f"conv_b_{tag}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(int(rng.integers(6, 12)), activation="relu")(x)
    if separate_softmax:
        x = keras.layers.Dense(classes, name=f"logits_{tag}")(x)
        outputs = keras.layers.Activation("softmax", name=f"softmax_{tag}")(x)
    else:
        outputs = keras.layers.Dense(classes, activation="softmax", name=f"predictions_{tag}")(x)
    model = keras.Model(inputs, outputs, name=f"random_concept_net_{tag}")
    layer = f"conv_{'ab'[int(rng.integers(0, 2))]}_{tag}"
    images = rng.uniform(0, 1, size=(int(rng.integers(3, 6)), side, side, channels)).astype("float32")
    top = model(images).numpy().argmax(axis=1)
    others = [k for k in range(classes) if not np.all(top == k)]
    return model, layer, images, int(rng.choice(others))


def _layer_gradients(model, layer: str, images: np.ndarray, class_index: int, score: str) -> np.ndarray:
    """Gradients ``(N, h, w, c)`` at ``layer`` of a chosen score: the reference and typical mistakes."""
    import keras
    import tensorflow as tf

    from .. import models
    logits_model = models.pre_softmax(model)
    both = keras.Model(logits_model.inputs[0], [logits_model.get_layer(layer).output, logits_model.outputs[0]])
    with tf.GradientTape() as tape:
        activations, logits = both(tf.constant(images), training=False)
        tape.watch(activations)
        top = tf.argmax(logits, axis=1)
        values = {"probability": lambda: tf.nn.softmax(logits)[:, class_index],
                  "log-probability": lambda: tf.nn.log_softmax(logits)[:, class_index],
                  "top logit": lambda: tf.gather(logits, top, axis=1, batch_dims=1),
                  "all logits": lambda: tf.reduce_sum(logits, axis=1)}[score]()
        total = tf.reduce_sum(values)
    return tape.gradient(total, activations).numpy().astype("float64")


def _gradients_hint(got: np.ndarray, expected: np.ndarray, model, layer, images, class_index) -> str:
    if close(got, -expected, 1e-3):
        return "your gradients have the wrong sign: differentiate the class score itself."
    if close(got, expected / len(images), 1e-3):
        return ("your gradients are divided by the number of images: differentiate the *sum* of the images' "
                "scores (each image's gradient is then its own), not their mean.")
    for score, hint in (
            ("probability", "you differentiate the class *probability* (the model's output, after the softmax); "
                            "take the score before it, the logit: models.pre_softmax(model)."),
            ("log-probability", "you differentiate the log-probability; take the class score before the "
                                "softmax, the logit: models.pre_softmax(model)."),
            ("top logit", "you differentiate each image's *top* class; take the class `class_index` for every image."),
            ("all logits", "you differentiate the sum of all classes' logits; take the logit of `class_index` only.")):
        if close(got, _layer_gradients(model, layer, images, class_index, score), 1e-3):
            return hint
    return ("each image's gradient should be d(logit of class_index) / d(the layer's activations), the logit "
            "taken before the softmax (models.pre_softmax).")


@task("10.2", points=3, answer="class_gradients", title="Gradients of the class logit at a layer",
      from_scratch=("concepts.layer_gradients", "concepts.directional_derivatives"))
def _(class_gradients):
    from .. import concepts
    require_callable(class_gradients, "class_gradients")
    rng = fresh_rng()
    what = "class_gradients(model, layer, images, class_index)"
    for separate_softmax in rng.permutation([False, True]):
        model, layer, images, class_index = _random_concept_net(rng, bool(separate_softmax))
        shape = tuple(model.get_layer(layer).output.shape[1:])
        expected = concepts.layer_gradients(model, layer, images, class_index).reshape(len(images), *shape)
        got = as_numbers(call(class_gradients, model, layer, images.copy(), class_index, what=what), what)
        if got.shape == images.shape and got.shape != expected.shape:
            raise Hint(f"you return shape {got.shape}, the images' shape: the gradient is taken with respect to "
                       f"the layer's activations, shape {expected.shape}, not the input.")
        if got.shape == (len(images), int(np.prod(shape))):
            raise Hint(f"keep the layer's shape, {expected.shape} (N, h, w, c); flattening comes in the next task.")
        if got.shape != expected.shape:
            raise Hint(f"for {len(images)} images, layer {layer!r} (output {shape}) gives gradients of shape "
                       f"{expected.shape}; you return shape {got.shape}.")
        if not close(got, expected, 1e-3):
            raise Hint(_gradients_hint(got, expected.astype("float64"), model, layer, images, class_index))


# ----------------------------------------------------------------------------- 10.3

def _derivative_case(rng: np.random.Generator):
    """Gradients ``(N, h, w, c)`` and a unit CAV whose directional derivatives have chosen signs:
    some positive, some negative, at least two exactly 0 (gradients of all zeros, as behind a dead
    ReLU), with the counts drawn so that counting zeros as positive, counting the negatives, the
    mean derivative and the share of positive products all give other numbers than the share of
    positive derivatives."""
    while True:
        h, w, c = int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(2, 6))
        positive, negative, zero = int(rng.integers(2, 10)), int(rng.integers(2, 10)), int(rng.integers(2, 4))
        count = positive + negative + zero
        if positive in (negative, negative + zero) or positive + zero == negative:
            continue
        cav = _unit(rng.normal(size=h * w * c))
        gradients = rng.normal(size=(count, h * w * c)) * rng.uniform(0.5, 5)
        signs = np.array([1] * positive + [-1] * negative + [0] * zero)[rng.permutation(count)]
        derivatives = gradients @ cav
        gradients *= (np.sign(derivatives) * signs)[:, None]          # flip rows to the wanted sign; zero rows
        derivatives = gradients @ cav
        share = positive / count
        products = np.mean(gradients * cav > 0)
        # the shares that the other mistakes give: the product mistake must give none of them, or its
        # answer would get another mistake's hint (seen in 1 of 20 rounds of bench/check_flakiness.py)
        other_shares = np.array([positive + zero, negative, negative + zero]) / count
        if (abs(derivatives.mean() - share) > 0.05 and abs(products - share) > 0.5 / count
                and np.abs(products - other_shares).min() > 1e-6):
            return gradients.reshape(count, h, w, c), cav, share


@task("10.3", points=2, answer="tcav_score_from", title="The TCAV score from gradients and a CAV",
      from_scratch=("concepts.tcav_score",))
def _(tcav_score_from):
    require_callable(tcav_score_from, "tcav_score_from")
    rng = fresh_rng()
    what = "tcav_score_from(gradients, cav)"
    for _ in range(2):
        gradients, cav, expected = _derivative_case(rng)
        count = len(gradients)
        got = as_numbers(call(tcav_score_from, gradients.copy(), cav.copy(), what=what), what)
        if got.size != 1:
            raise Hint(f"return one number, the share of the images whose derivative is positive; you return "
                       f"shape {got.shape}.")
        got = float(got.ravel()[0])
        if abs(got - expected) < 1e-9:
            continue
        derivatives = gradients.reshape(count, -1) @ cav
        if abs(got - np.mean(derivatives >= 0)) < 1e-9:
            raise Hint("a derivative of exactly 0 (the score does not move at all) does not count as positive: "
                       "count only derivatives > 0.")
        if abs(got - np.mean(derivatives < 0)) < 1e-9 or abs(got - np.mean(derivatives <= 0)) < 1e-9:
            raise Hint("you count the images whose score *falls* along the CAV; TCAV counts those where it rises.")
        if abs(got - derivatives.mean()) < 1e-6:
            raise Hint("you return the mean directional derivative; the TCAV score is the *share* of images with "
                       "a positive derivative.")
        if abs(got - np.mean(gradients.reshape(count, -1) * cav > 0)) < 1e-9:
            raise Hint("take each image's directional derivative first (the dot product of its flattened "
                       "gradient with the CAV), then count the images where it is positive.")
        if abs(got - expected * count) < 1e-9:
            raise Hint(f"you return a count ({got:g}); the TCAV score is a share: divide by the number of images.")
        raise Hint("the TCAV score is the share of images whose directional derivative (flattened gradient · "
                   "CAV) is above 0.")


# ----------------------------------------------------------------------------- 10.4

def _score_lists(rng: np.random.Generator, concept_higher: bool):
    """TCAV scores of a concept and of random CAVs over runs: shares k/m, both varying, of
    different lengths half of the time."""
    images = int(rng.integers(10, 31))
    runs = int(rng.integers(5, 13))
    random_runs = runs if rng.uniform() < 0.5 else runs + int(rng.integers(1, 4))
    centre = rng.uniform(0.35, 0.65)
    gap = rng.uniform(0.05, 0.3) * (1 if concept_higher else -1)
    while True:
        concept = rng.binomial(images, np.clip(centre + gap, 0.05, 0.95), runs) / images
        random = rng.binomial(images, centre, random_runs) / images
        if np.ptp(concept) > 0 and np.ptp(random) > 0 and (concept.mean() > random.mean()) == concept_higher:
            return concept, random


@task("10.4", points=1, answer="two_sided_p", title="The p-value of the TCAV test", from_scratch=("concepts.p_value",))
def _(two_sided_p):
    from scipy import stats
    require_callable(two_sided_p, "two_sided_p")
    rng = fresh_rng()
    what = "two_sided_p(concept_scores, random_scores)"
    for concept_higher in rng.permutation([True, False]):
        concept, random = _score_lists(rng, bool(concept_higher))
        got = as_numbers(call(two_sided_p, concept.copy(), random.copy(), what=what), what)
        student, welch = stats.ttest_ind(concept, random), stats.ttest_ind(concept, random, equal_var=False)
        if got.shape == (2,):
            raise Hint("you return two numbers (scipy's result holds the t statistic and the p-value); return "
                       "the p-value alone: result.pvalue.")
        if got.size != 1:
            raise Hint(f"return one number, the p-value; you return shape {got.shape}.")
        got = float(got.ravel()[0])
        if any(abs(got - test.pvalue) <= 1e-6 * max(test.pvalue, 1e-12) + 1e-12 for test in (student, welch)):
            continue
        for test in (student, welch):
            if abs(got - test.pvalue / 2) < 1e-9 or abs(got - (1 - test.pvalue / 2)) < 1e-9:
                raise Hint("that is a one-sided p-value. A concept can differ from chance both ways (raise the "
                           "class or lower it): the test is two-sided.")
            if abs(got - (1 - test.pvalue)) < 1e-9:
                raise Hint("you return 1 − p; the p-value is the probability of a difference at least this large "
                           "if the concept were no different from random CAVs.")
            if abs(got - test.statistic) < 1e-9 or abs(got - abs(test.statistic)) < 1e-9:
                raise Hint("you return the t statistic; return the test's p-value.")
        if len(concept) == len(random) and abs(got - stats.ttest_rel(concept, random).pvalue) < 1e-9:
            raise Hint("you compare the two lists run by run (a paired test); they are two independent samples "
                       "of scores: scipy.stats.ttest_ind.")
        raise Hint("the p-value should be that of a two-sided t-test of the two lists as independent samples "
                   "(scipy.stats.ttest_ind(concept_scores, random_scores).pvalue).")


# ----------------------------------------------------------------------------- 10.5

choice_task(
    "10.5", points=2, answer="true_statements", title="Reading a TCAV significance test (multiple choice)",
    options="abcdef",
    key="6a0f714e07b7f8ddef12d1a3db6dc43b236185a34425e47755972159d2271b98",
    hint="at least one statement is judged wrongly. For each one, find the part of lesson 10 that speaks "
         "of it: sections 4 (the test), 5 (what a score near 0 means) and 6 (what can go wrong).")
