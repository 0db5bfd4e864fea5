"""Checks of the exercises of lesson 07 (sanity checks): solutions/07_sanity_checks.ipynb.

Every check draws fresh random maps, images, scores and curves, so an answer that hard-codes what
the notebook's own example produces does not pass. References: ``coursekit.metrics``
(``rank_correlation``, ``deletion_curve``, ``area_under``) and ``scipy.stats.spearmanr``.
"""
from __future__ import annotations

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, task, untraced

# ----------------------------------------------------------------------------- 07.1

def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    denominator = np.sqrt((x ** 2).sum() * (y ** 2).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _ordinal_ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values.ravel(), kind="stable"), kind="stable").astype("float64")


def _row_ranks(values: np.ndarray, method: str) -> np.ndarray:
    from scipy.stats import rankdata
    return rankdata(values, axis=1, method=method)


def _shortcut_formula(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata
    n = a.size
    d = rankdata(a.ravel()) - rankdata(b.ravel())
    return float(1 - 6 * (d ** 2).sum() / (n * (n ** 2 - 1)))


def _correlation_hint(got: float, a: np.ndarray, b: np.ndarray, expected: float) -> str:
    from scipy.stats import rankdata
    if abs(got + expected) < 1e-6 and abs(expected) > 1e-3:
        return ("your correlation has the right size but the wrong sign: rank both maps the same way "
                "(the smallest value gets the lowest rank in each).")
    if abs(got - _pearson(a, b)) < 1e-6:
        return ("that is the Pearson correlation of the values themselves. Spearman's correlation "
                "replaces every value by its rank first, then correlates the ranks.")
    if abs(got - _pearson(rankdata(np.abs(a).ravel()), rankdata(np.abs(b).ravel()))) < 1e-6:
        return ("correlate the maps as they are given: these maps have negative values, and taking "
                "absolute values changes their order.")
    if any(abs(got - _pearson(_row_ranks(a, m), _row_ranks(b, m))) < 1e-6 for m in ("average", "ordinal")):
        return ("you rank the pixels of each row separately. Rank all H x W pixels of a map together "
                "(flatten it first).")
    if abs(got - _pearson(_ordinal_ranks(a), _ordinal_ranks(b))) < 1e-6:
        return ("these maps have ties (many pixels with the same value, such as the zeros a ReLU "
                "leaves). Tied values must share one rank, the average of the ranks they occupy, as "
                "scipy.stats.rankdata does; sorting gives them different ranks.")
    if abs(got - _shortcut_formula(a, b)) < 1e-6:
        return ("the formula 1 - 6 * sum(d**2) / (n * (n**2 - 1)) is exact only when no two values "
                "tie. With ties, compute the Pearson correlation of the (average) ranks.")
    return ("Spearman's correlation is the Pearson correlation of the two maps' pixel ranks (all "
            "pixels of a map ranked together, ties sharing their average rank).")


def _correlated_maps(rng: np.random.Generator, height: int, width: int):
    a = rng.normal(size=(height, width))
    b = np.exp(2.0 * (a + rng.normal(scale=0.7, size=a.shape))) - rng.uniform(2, 5)
    return a * rng.uniform(0.5, 5), b


@task("07.1", points=2, answer="spearman", title="Rank correlation of two maps",
      from_scratch=("metrics.rank_correlation",))
def _(spearman):
    from scipy.stats import spearmanr

    from .. import metrics
    require_callable(spearman, "spearman")
    rng = fresh_rng()
    what = "spearman(map_a, map_b)"
    height, width = int(rng.integers(5, 10)), int(rng.integers(10, 16))

    signed = _correlated_maps(rng, height, width)
    # ReLU-like maps rounded to one decimal: a block of zeros and many repeated values
    tied = tuple(np.round(np.maximum(m / np.abs(m).max() * 2, 0), 1) for m in _correlated_maps(rng, height, width))
    constant = (np.full((height, width), float(rng.uniform(0.1, 1))), rng.uniform(size=(height, width)))
    cases = [(signed, "two maps with negative values"), (tied, "two maps with ties"),
             (constant, "a constant map and a random one")]
    for (a, b), label in cases:
        got_value = call(spearman, a.copy(), b.copy(), what=what)
        got = as_numbers(got_value, what, "an array or a float")
        if got.shape == (2, 2):
            raise Hint("you return a 2 x 2 matrix (np.corrcoef gives one): the correlation of the two "
                       "maps is its off-diagonal entry, [0, 1].")
        if got.size != 1:
            raise Hint(f"{what} should return one number for two (H, W) maps; it returned shape "
                       f"{got.shape}.")
        got = float(got.ravel()[0])
        expected = float(metrics.rank_correlation(a, b)[0])
        if label.startswith("a constant"):
            if np.isnan(got):
                raise Hint("for a constant map you return nan. A constant map has no order to compare: "
                           "return 0.0 when either map's ranks do not vary.")
            if abs(got) > 1e-6:
                raise Hint(f"for a constant map you return {got:.3g}; a map whose pixels all tie has no "
                           "order to compare: return 0.0.")
            continue
        if np.isnan(got) or abs(got - expected) > 1e-6:
            raise Hint(f"with {label}: " + _correlation_hint(got, a, b, expected))
        if abs(got - float(spearmanr(a.ravel(), b.ravel()).statistic)) > 1e-6:
            raise Hint(f"with {label}: your value differs from scipy.stats.spearmanr.")


# ----------------------------------------------------------------------------- 07.2

def _score_function(height: int, width: int, channels: int, compute):
    """A score function of a batch ``(N, H, W, C)``; a clear error for anything else."""
    def score(batch):
        batch = np.asarray(batch, dtype="float32")
        if batch.shape[1:] != (height, width, channels) or batch.ndim != 4:
            raise ValueError(f"score takes a batch of images (N, {height}, {width}, {channels}); got shape "
                             f"{batch.shape}. For one image, pass image[None]")
        return np.asarray(compute(batch), dtype="float64").reshape(len(batch))
    return score


def _deleted(image, order, counts, baseline, channels=None):
    """One copy of ``image`` per count, the first ``count`` pixels of ``order`` set to ``baseline``."""
    height, width, depth = image.shape
    channels = slice(None) if channels is None else channels
    copies = []
    for start, stop in counts:
        copy = image.copy().reshape(-1, depth)
        chosen = order[start:stop]
        copy[chosen, channels] = baseline.reshape(-1, depth)[chosen, channels]
        copies.append(copy.reshape(height, width, depth))
    return np.stack(copies)


def _deletion_variants(score, image, heatmap, steps, baseline):
    """The right curve and the curves of typical mistakes, by name."""
    n = heatmap.size
    descending = np.argsort(-heatmap.ravel(), kind="stable")
    cumulative = [(0, round(t * n / steps)) for t in range(steps + 1)]
    right = score(_deleted(image, descending, cumulative, baseline))
    variants = {
        "ascending": score(_deleted(image, descending[::-1], cumulative, baseline)),
        "slice": score(_deleted(image, descending, [(0, 0)] + [(round((t - 1) * n / steps), round(t * n / steps))
                                                              for t in range(1, steps + 1)], baseline)),
        "count": score(_deleted(image, descending, [(0, t) for t in range(steps + 1)], baseline)),
        "zero": score(_deleted(image, descending, cumulative, np.zeros_like(baseline))),
        "normalised": right / right[0] if right[0] != 0 else right,
    }
    if image.shape[-1] > 1:
        variants["channel"] = score(_deleted(image, descending, cumulative, baseline, channels=0))
    return right, variants


_DELETION_HINTS = {
    "ascending": "you delete the least important pixels first. Deletion starts with the pixel the "
                 "heatmap ranks highest (its largest value).",
    "slice": "at step t only the t-th share of pixels is deleted, from the original image. Deletion "
             "accumulates: at step t the top t/steps of ALL pixels are gone.",
    "count": "at step t you delete t pixels. Delete round(t * n / steps) pixels, where n = H * W: a "
             "share t/steps of the whole image.",
    "zero": "deleted pixels should take the value of `baseline` (a number, or an image of the same "
            "shape whose pixels replace the deleted ones), not 0.",
    "normalised": "return the scores as the score function gives them, without dividing by the first one.",
    "channel": "you delete only one channel of each pixel. A deleted pixel takes the baseline in every "
               "channel (C values).",
}


def _tiny_classifier(rng: np.random.Generator, height: int, width: int, channels: int):
    import keras
    tag = int(rng.integers(1000, 10000))
    inputs = keras.Input((height, width, channels))
    x = keras.layers.Conv2D(int(rng.integers(3, 7)), 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(int(rng.integers(3, 6)), activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"tiny_classifier_{tag}")


@task("07.2", points=3, answer="deletion_scores", title="The deletion curve")
def _(deletion_scores):
    from .. import metrics
    require_callable(deletion_scores, "deletion_scores")
    rng = fresh_rng()
    what = "deletion_scores(score, image, heatmap, steps, baseline)"

    def sizes():
        steps = int(rng.integers(4, 9))
        return int(rng.integers(3, 7)), steps * int(rng.integers(1, 3)), int(rng.integers(2, 4)), steps

    # a linear score: every pixel adds its own contribution, so the right curve is known exactly
    cases = []
    for baseline_kind in ("number", "image"):
        height, width, channels, steps = sizes()
        weights = rng.normal(size=(height, width, channels))
        bias = float(rng.normal())
        score = _score_function(height, width, channels,
                                lambda batch, w=weights, b=bias: np.einsum("nhwc,hwc->n", batch, w) + b)
        image = rng.normal(size=(height, width, channels)).astype("float32")
        heatmap = rng.uniform(size=(height, width))
        if baseline_kind == "number":
            baseline = float(rng.choice([-1, 1]) * rng.uniform(0.5, 2))
        else:
            baseline = rng.normal(size=image.shape).astype("float32")
        cases.append((score, image, heatmap, steps, baseline, f"a linear score and a baseline {baseline_kind}"))

    for score, image, heatmap, steps, baseline, label in cases:
        given = image.copy()
        returned = call(deletion_scores, score, given, heatmap.copy(), steps, baseline, what=what)
        got = as_numbers(returned, what, "an array")
        if not np.array_equal(given, image):
            raise Hint("your function changes the image it is given. Delete pixels in a copy "
                       "(image.copy()), so that the caller's image stays as it was.")
        right, variants = _deletion_variants(score, image, heatmap, steps,
                                             np.broadcast_to(np.asarray(baseline, "float32"), image.shape))
        if got.shape != right.shape:
            if got.shape == (steps,):
                raise Hint(f"with steps = {steps} you return {steps} scores. Return steps + 1: the "
                           "untouched image (nothing deleted) first and the fully deleted image last.")
            raise Hint(f"with steps = {steps}, return the {steps + 1} scores in a 1-D array (shape "
                       f"({steps + 1},)); you return shape {got.shape}.")
        if close(got, right, 1e-5, floor=1.0):
            continue
        for name, curve in variants.items():
            if not close(curve, right, 1e-5, floor=1.0) and close(got, curve, 1e-5, floor=1.0):
                raise Hint(f"with {label}: " + _DELETION_HINTS[name])
        raise Hint(f"with {label}: your scores differ from the expected deletion curve. At step t "
                   "(0 to steps), the round(t * n / steps) pixels with the highest heatmap values "
                   "take the baseline's value in every channel, and the score of that image is entry t.")

    # a small CNN's class probability, against coursekit.metrics.deletion_curve
    height, width, channels, steps = sizes()
    model = _tiny_classifier(rng, height, width, channels)
    class_index = int(rng.integers(0, model.outputs[0].shape[-1]))
    image = rng.normal(size=(height, width, channels)).astype("float32")
    heatmap = rng.uniform(size=(height, width))
    score = _score_function(height, width, channels,
                            lambda batch: model(batch, training=False).numpy()[:, class_index])
    returned = call(deletion_scores, score, image.copy(), heatmap.copy(), steps, 0.0, what=what)
    got = as_numbers(returned, what, "an array")
    with untraced():
        _, expected = metrics.deletion_curve(model, image[None], heatmap[None], class_index=class_index,
                                             steps=steps, baseline=0.0)
    if not close(got, expected[0], tolerance=1e-4, floor=1.0):
        raise Hint("with a small CNN's class probability as the score, your curve differs from "
                   "coursekit.metrics.deletion_curve. Compare the two on a small example.")


# ----------------------------------------------------------------------------- 07.3

@task("07.3", points=2, answer="area_under_curve", title="Area under a curve",
      from_scratch=("metrics.area_under",))
def _(area_under_curve):
    from .. import metrics
    require_callable(area_under_curve, "area_under_curve")
    rng = fresh_rng()
    what = "area_under_curve(scores)"
    lengths = [2, int(rng.integers(3, 8)), int(rng.integers(8, 30))]
    rng.shuffle(lengths)
    for length in lengths:
        scores = rng.uniform(size=length)
        scores[[0, -1]] = rng.choice([rng.uniform(0.8, 1), rng.uniform(0, 0.2)], size=2, replace=False)
        got = as_numbers(call(area_under_curve, scores.copy(), what=what), what, "a float")
        if got.size != 1:
            raise Hint(f"{what} should return one number for a 1-D curve; it returned shape {got.shape}.")
        got = float(got.ravel()[0])
        expected = float(metrics.area_under(scores))
        if abs(got - expected) <= 1e-9 + 1e-6 * abs(expected):
            continue
        intervals = length - 1
        if abs(got - scores.mean()) < 1e-9:
            raise Hint("the mean of the points counts the two end points as much as the others. With "
                       "trapezoids, each interval's area is the mean of its two ends times its width, "
                       "so the end points count half.")
        if any(abs(got - scores[part].sum() / intervals) < 1e-9 for part in (slice(None, -1), slice(1, None))):
            raise Hint("you add up rectangles (one end of each interval). Use trapezoids: each interval "
                       "contributes the mean of its two end values times its width.")
        if abs(got - expected * intervals) < 1e-9:
            raise Hint(f"your area is {intervals} times too large for {length} points: x runs from 0 to 1, "
                       "so each interval between neighbouring points is 1 / (number of points - 1) wide.")
        if abs(got - expected * intervals / length) < 1e-9:
            raise Hint(f"{length} points make {intervals} intervals, not {length}: divide by the number "
                       "of intervals.")
        raise Hint(f"for a curve of {length} points at x = 0, 1/{intervals}, ..., 1 the area by trapezoids "
                   f"is different from yours ({got:.4g}).")


# ----------------------------------------------------------------------------- 07.4

_GUIDED_HINTS = {
    "plain": "that is the ordinary gradient of a ReLU (passed where the unit's input is positive). Guided "
             "Backprop also stops the gradient where the gradient arriving from above is negative.",
    "deconvnet": "that is the deconvnet's rule (only the sign of the gradient from above). Guided Backprop "
                 "also needs the unit to have been on: its input positive.",
    "at_zero": "a unit whose input is exactly 0 is off: nothing passes back through it (TensorFlow's ReLU "
               "gradient at 0 is 0). Use > 0, not >= 0.",
    "mask": "return the gradient that passes back (upstream values where both conditions hold, 0 elsewhere), "
            "not a mask of where it passes.",
    "absolute": "keep the values of the gradient from above as they are where it passes; do not take their "
                "absolute value.",
}


@task("07.4", points=2, answer="guided_relu_gradient", title="Guided Backprop's rule at a ReLU")
def _(guided_relu_gradient):
    require_callable(guided_relu_gradient, "guided_relu_gradient")
    rng = fresh_rng()
    what = "guided_relu_gradient(unit_inputs, upstream)"
    for shape in ((int(rng.integers(5, 12)),), tuple(int(n) for n in rng.integers(2, 6, size=3))):
        unit_inputs = rng.normal(size=shape)
        unit_inputs[rng.random(shape) < 0.2] = 0.0          # units sitting exactly at the kink
        upstream = rng.normal(size=shape) * rng.uniform(0.5, 3)
        # every case holds each kind of unit, so that no wrong rule can agree with the right one by chance:
        # on and passed, on but blocked from above, off, exactly at 0, off with a negative gradient
        kinds = rng.permutation(unit_inputs.size)[:5]
        unit_inputs.flat[kinds] = np.abs(unit_inputs.flat[kinds]) + 0.1
        unit_inputs.flat[kinds[2]] *= -1
        unit_inputs.flat[kinds[3]] = 0.0
        unit_inputs.flat[kinds[4]] *= -1
        upstream.flat[kinds] = np.abs(upstream.flat[kinds]) + 0.1
        upstream.flat[kinds[1]] *= -1
        upstream.flat[kinds[4]] *= -1
        got = as_numbers(call(guided_relu_gradient, unit_inputs.copy(), upstream.copy(), what=what), what)
        right = upstream * (unit_inputs > 0) * (upstream > 0)
        if got.shape != right.shape:
            raise Hint(f"for inputs of shape {shape} you return shape {got.shape}: the gradient passed back has "
                       "the shape of the unit's inputs.")
        if close(got, right, 1e-6, floor=1.0):   # float32 rounding is fine; a wrong rule is off by 0.1 or more
            continue
        variants = {"plain": upstream * (unit_inputs > 0), "deconvnet": np.maximum(upstream, 0),
                    "at_zero": upstream * (unit_inputs >= 0) * (upstream > 0),
                    "mask": ((unit_inputs > 0) & (upstream > 0)).astype("float64"),
                    "absolute": np.abs(upstream) * (unit_inputs > 0)}
        for name, variant in variants.items():
            if close(got, variant, 1e-6, floor=1.0):
                raise Hint(_GUIDED_HINTS[name])
        raise Hint("Guided Backprop passes the gradient from above (upstream) back through a ReLU only where the "
                   "unit's input is positive AND upstream is positive; everywhere else 0.")


# ----------------------------------------------------------------------------- 07.5

choice_task(
    "07.5", points=1, answer="true_statements", title="Reading sanity checks (multiple choice)",
    options="abcdefgh",
    key="27400ed0f7d0ac894c9d3348e04fe0c51bc118c7f8014988aae54262885017e4",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 07 "
         "that speaks of it, or try it with your functions above.")
