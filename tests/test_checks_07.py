"""The exercise checks of lesson 07: right answers pass, wrong or memorised ones get a hint."""

import numpy as np
import pytest
from check_helpers import Memorised, outcome, usual_forms
from scipy.stats import rankdata, spearmanr

from coursekit import checks

pytestmark = pytest.mark.filterwarnings("ignore:An input array is constant")  # scipy on a constant map


# ----------------------------------------------------------------------------- reference answers

def pearson(x, y):
    x, y = np.ravel(x) - np.mean(x), np.ravel(y) - np.mean(y)
    denominator = np.sqrt((x ** 2).sum() * (y ** 2).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def spearman(map_a, map_b):
    return pearson(rankdata(np.ravel(map_a)), rankdata(np.ravel(map_b)))


def deleted_copies(image, heatmap, steps, baseline, order=None, counts=None):
    height, width, channels = image.shape
    n = height * width
    order = np.argsort(-np.ravel(heatmap)) if order is None else order
    counts = [(0, round(t * n / steps)) for t in range(steps + 1)] if counts is None else counts
    replacement = np.broadcast_to(np.asarray(baseline, dtype=image.dtype), image.shape).reshape(n, channels)
    copies = []
    for start, stop in counts:
        copy = image.reshape(n, channels).copy()
        copy[order[start:stop]] = replacement[order[start:stop]]
        copies.append(copy.reshape(image.shape))
    return np.stack(copies)


def deletion_scores(score, image, heatmap, steps, baseline=0.0):
    return score(deleted_copies(image, heatmap, steps, baseline))


def area_under_curve(scores):
    scores = np.asarray(scores, dtype="float64")
    return float((scores[1:] + scores[:-1]).sum() / (2 * (len(scores) - 1)))


def guided_relu_gradient(unit_inputs, upstream):
    return np.where((np.asarray(unit_inputs) > 0) & (np.asarray(upstream) > 0), upstream, 0.0)


RIGHT = {"07.1": spearman, "07.2": deletion_scores, "07.3": area_under_curve, "07.4": guided_relu_gradient,
         "07.5": {"a", "c", "f", "g"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def spearman_with_scipy(map_a, map_b):
    value = spearmanr(np.ravel(map_a), np.ravel(map_b)).statistic
    return 0.0 if np.isnan(value) else value


def area_with_numpy(scores):
    return np.trapezoid(scores, dx=1 / (len(scores) - 1))


USUAL_FORMS = [
    *usual_forms("07.1", spearman, ["0-d", "numpy scalar", "float32", "tensor", "list", "big-endian"]),
    pytest.param("07.1", spearman_with_scipy, id="07.1-scipy.stats.spearmanr"),
    *usual_forms("07.2", deletion_scores, ["float64", "float32", "tensor", "list", "big-endian"]),
    *usual_forms("07.3", area_under_curve, ["0-d", "numpy scalar", "float32", "tensor", "big-endian"]),
    pytest.param("07.3", area_with_numpy, id="07.3-numpy's trapezoid"),
    *usual_forms("07.4", guided_relu_gradient, ["float32", "tensor", "list", "big-endian", "computed in float64"]),
    pytest.param("07.5", ("a", "c", "f", "g"), id="07.5-a tuple"),
]


@pytest.mark.parametrize("task_id, answer", USUAL_FORMS)
def test_usual_forms_of_a_right_answer_pass(task_id, answer):
    """Float64 or float32, tensors, lists, either byte order, 0-d arrays, an epsilon in a
    denominator: what students write, and what check() and the grader both accept."""
    result = outcome(task_id, answer)
    assert result.passed, result.message


def test_scipy_spearmanr_with_a_guard_for_constant_maps_passes():
    def with_scipy(map_a, map_b):
        if np.ptp(map_a) == 0 or np.ptp(map_b) == 0:
            return 0.0
        return spearmanr(np.ravel(map_a), np.ravel(map_b)).statistic
    assert outcome("07.1", with_scipy).passed


# ----------------------------------------------------------------------------- wrong answers: 07.1

def ordinal_ranks(values):
    return np.argsort(np.argsort(np.ravel(values), kind="stable"), kind="stable")


def shortcut_formula(map_a, map_b):
    n = np.size(map_a)
    d = rankdata(np.ravel(map_a)) - rankdata(np.ravel(map_b))
    return 1 - 6 * (d ** 2).sum() / (n * (n ** 2 - 1))


WRONG_07_1 = [
    (lambda a, b: pearson(a, b), "Pearson correlation of the values"),
    (lambda a, b: np.corrcoef(rankdata(a), rankdata(b)), "2 x 2"),
    (lambda a, b: spearman(np.abs(a), np.abs(b)), "absolute values"),
    (lambda a, b: pearson(rankdata(a, axis=1), rankdata(b, axis=1)), "each row"),
    (lambda a, b: pearson(np.argsort(np.argsort(a)), np.argsort(np.argsort(b))), "each row"),
    (lambda a, b: pearson(ordinal_ranks(a), ordinal_ranks(b)), "share one rank"),
    (shortcut_formula, "exact only when no two values"),
    (lambda a, b: spearmanr(np.ravel(a), np.ravel(b)).statistic, "you return nan"),
    (lambda a, b: pearson(rankdata(a), rankdata(-b)), "wrong sign"),
    (lambda a, b: np.array([spearman(a, b)] * 2), "one number"),
]


# ----------------------------------------------------------------------------- wrong answers: 07.2

def ascending(score, image, heatmap, steps, baseline=0.0):
    return score(deleted_copies(image, heatmap, steps, baseline, order=np.argsort(np.ravel(heatmap))))


def one_slice_at_a_time(score, image, heatmap, steps, baseline=0.0):
    n = np.size(heatmap)
    counts = [(0, 0)] + [(round((t - 1) * n / steps), round(t * n / steps)) for t in range(1, steps + 1)]
    return score(deleted_copies(image, heatmap, steps, baseline, counts=counts))


def t_pixels_at_step_t(score, image, heatmap, steps, baseline=0.0):
    return score(deleted_copies(image, heatmap, steps, baseline, counts=[(0, t) for t in range(steps + 1)]))


def ignores_baseline(score, image, heatmap, steps, baseline=0.0):
    return deletion_scores(score, image, heatmap, steps, 0.0)


def normalised(score, image, heatmap, steps, baseline=0.0):
    curve = deletion_scores(score, image, heatmap, steps, baseline)
    return curve / curve[0]


def first_channel_only(score, image, heatmap, steps, baseline=0.0):
    height, width, channels = image.shape
    order = np.argsort(-np.ravel(heatmap))
    rows, cols = np.unravel_index(order, (height, width))
    replacement = np.broadcast_to(np.asarray(baseline, dtype=image.dtype), image.shape)
    copies = []
    for t in range(steps + 1):
        copy = image.copy()
        k = round(t * height * width / steps)
        copy[rows[:k], cols[:k], 0] = replacement[rows[:k], cols[:k], 0]
        copies.append(copy)
    return score(np.stack(copies))


def in_place(score, image, heatmap, steps, baseline=0.0):
    height, width, channels = image.shape
    n = height * width
    flat = image.reshape(n, channels)  # a view: deleting here deletes in the caller's image
    order = np.argsort(-np.ravel(heatmap))
    replacement = np.broadcast_to(np.asarray(baseline, dtype=image.dtype), image.shape).reshape(n, channels)
    scores = []
    for t in range(steps + 1):
        chosen = order[:round(t * n / steps)]
        flat[chosen] = replacement[chosen]
        scores.append(score(image[None])[0])
    return np.array(scores)


def without_the_untouched_image(score, image, heatmap, steps, baseline=0.0):
    return deletion_scores(score, image, heatmap, steps, baseline)[1:]


def one_image_without_batch(score, image, heatmap, steps, baseline=0.0):
    return np.array([score(copy) for copy in deleted_copies(image, heatmap, steps, baseline)])


WRONG_07_2 = [
    (ascending, "least important pixels first"),
    (one_slice_at_a_time, "Deletion accumulates"),
    (t_pixels_at_step_t, "you delete t pixels"),
    (ignores_baseline, "value of `baseline`"),
    (normalised, "without dividing"),
    (first_channel_only, "only one channel"),
    (in_place, "changes the image it is given"),
    (without_the_untouched_image, "Return steps + 1"),
    (one_image_without_batch, "pass image[None]"),
]


# ----------------------------------------------------------------------------- wrong answers: 07.3

WRONG_07_3 = [
    (lambda y: np.mean(y), "end points count half"),
    (lambda y: np.sum(y[:-1]) / (len(y) - 1), "rectangles"),
    (lambda y: np.trapezoid(y), "times too large"),
    (lambda y: np.trapezoid(y) / len(y), "divide by the number of intervals"),
    (lambda y: np.full(2, area_under_curve(y)), "one number"),
]

# ----------------------------------------------------------------------------- wrong answers: 07.4

WRONG_07_4 = [
    (lambda x, up: up * (x > 0), "ordinary gradient"),
    (lambda x, up: np.maximum(up, 0), "deconvnet"),
    (lambda x, up: up * (x >= 0) * (up > 0), "exactly 0 is off"),
    (lambda x, up: ((x > 0) & (up > 0)).astype(float), "not a mask"),
    (lambda x, up: np.abs(up) * (x > 0), "absolute value"),
    (lambda x, up: up * (x > 0) * (up < 0), "AND upstream is positive"),
    (lambda x, up: guided_relu_gradient(x, up).ravel()[:-1], "shape"),
]

WRONG = ([("07.1", *case) for case in WRONG_07_1] + [("07.2", *case) for case in WRONG_07_2]
         + [("07.3", *case) for case in WRONG_07_3] + [("07.4", *case) for case in WRONG_07_4])


@pytest.mark.parametrize("task_id, answer, words", WRONG)
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message, result.message


@pytest.mark.parametrize("task_id", ["07.1", "07.2", "07.3", "07.4"])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id):
    memorised = Memorised(RIGHT[task_id])
    assert outcome(task_id, memorised).passed, "while it still calls the reference"
    memorised.recording = False
    assert not outcome(task_id, memorised).passed  # new random cases


def test_multiple_choice_hint_is_the_same_whatever_is_wrong():
    right = RIGHT["07.5"]
    wrong = [right - {"a"}, right - {"g"}, right | {"h"}, set("abcdefgh"), {"a"} ^ right, {"d", "e"}]
    messages = {outcome("07.5", answer).message for answer in wrong}
    assert len(messages) == 1 and not any(outcome("07.5", answer).passed for answer in wrong)
    assert outcome("07.5", "a, c, f, g").passed  # a string of letters works too
    assert "not options" in outcome("07.5", {"z"}).message

