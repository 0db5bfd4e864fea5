"""The exercise checks of lesson 06: right answers pass, wrong or memorised ones get a hint."""

import numpy as np
import pytest
from check_helpers import Memorised, outcome, usual_forms

from coursekit import checks, occlusion

# ----------------------------------------------------------------------------- reference answers

def unit_strength(activations, unit):
    column = np.asarray(activations)[..., unit]
    return column.max(axis=(1, 2)) if column.ndim == 3 else column


def top_images(activations, unit, k):
    return np.argsort(-unit_strength(activations, unit), kind="stable")[:k]


def occlusion_by_hand(score, image, patch, stride, fill, corners=occlusion.patch_corners, average=True,
                      sign=1.0):
    height, width = image.shape[:2]
    places = [(top, left) for top in corners(height, patch, stride) for left in corners(width, patch, stride)]
    copies = np.repeat(image[None], len(places), axis=0)
    for copy, (top, left) in zip(copies, places):
        copy[top:top + patch, left:left + patch] = fill
    drops = sign * (score(image[None])[0] - score(copies))
    total, covered = np.zeros((height, width)), np.zeros((height, width))
    for drop, (top, left) in zip(drops, places):
        total[top:top + patch, left:left + patch] += drop
        covered[top:top + patch, left:left + patch] += 1
    return total / np.maximum(covered, 1) if average else total


def pca_2d(features):
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


RIGHT = {"06.1": top_images, "06.2": occlusion_by_hand, "06.3": pca_2d, "06.4": {"b", "d", "f"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def pca_with_scikit_learn(features):
    from sklearn.decomposition import PCA
    return PCA(n_components=2).fit_transform(features)


NUMBERS = ["float64", "float32", "tensor", "list", "big-endian", "computed in float64"]
USUAL_FORMS = [
    *usual_forms("06.1", top_images, ["list", "tensor", "big-endian", "float64"]),
    *usual_forms("06.2", occlusion_by_hand, NUMBERS),
    *usual_forms("06.3", pca_2d, NUMBERS),
    pytest.param("06.3", pca_with_scikit_learn, id="06.3-scikit-learn's PCA"),
    pytest.param("06.4", "b, d, f", id="06.4-a string with commas"),
]


@pytest.mark.parametrize("task_id, answer", USUAL_FORMS)
def test_usual_forms_of_a_right_answer_pass(task_id, answer):
    """Float64 or float32, tensors, lists, either byte order, 0-d arrays, an epsilon in a
    denominator: what students write, and what check() and the grader both accept."""
    result = outcome(task_id, answer)
    assert result.passed, result.message


def test_other_right_answers_pass_too():
    def top_by_sorting_pairs(activations, unit, k):  # a list of ints; the check's tied top pair: higher index first
        strength = unit_strength(activations, unit)
        pairs = sorted(((float(s), i) for i, s in enumerate(strength)), reverse=True)
        return [i for _, i in pairs[:k]]

    def pca_by_covariance(features):  # eigenvectors of the covariance matrix, in float32
        centred = (features - features.mean(axis=0)).astype("float32")
        values, vectors = np.linalg.eigh(centred.T @ centred)
        return centred @ vectors[:, ::-1][:, :2]

    def occlusion_one_copy_at_a_time(score, image, patch, stride, fill):
        return occlusion_by_hand(lambda batch: np.concatenate([score(one[None]) for one in batch]),
                                 image, patch, stride, fill)

    for task_id, answer in [("06.1", top_by_sorting_pairs), ("06.3", pca_by_covariance),
                            ("06.2", occlusion_one_copy_at_a_time)]:
        result = outcome(task_id, answer)
        assert result.passed, (task_id, result.message)


# ----------------------------------------------------------------------------- wrong answers: 06.1

def top_by_mean(activations, unit, k):
    column = np.asarray(activations)[..., unit]
    strength = column.mean(axis=(1, 2)) if column.ndim == 3 else column
    return np.argsort(-strength)[:k]


def top_by_sum(activations, unit, k):
    column = np.asarray(activations)[..., unit]
    strength = column.sum(axis=(1, 2)) if column.ndim == 3 else column
    return np.argsort(-strength)[:k]


def weakest_first(activations, unit, k):
    return top_images(activations, unit, k)[::-1]


def least_active(activations, unit, k):
    return np.argsort(unit_strength(activations, unit))[:k]


def next_unit(activations, unit, k):
    return top_images(activations, unit + 1, k)


def previous_unit(activations, unit, k):
    return top_images(activations, unit - 1, k)


def all_units(activations, unit, k):
    strength = activations.max(axis=(1, 2)) if activations.ndim == 4 else activations
    return np.argsort(-strength, axis=0)[:k].T


def max_over_channels_too(activations, unit, k):
    strength = activations.max(axis=tuple(range(1, activations.ndim)))
    return np.argsort(-strength)[:k]


def ranked_positions(activations, unit, k):  # a conv unit: every position of every map ranked together
    return np.argsort(-np.asarray(activations)[..., unit].reshape(-1))[:k]


def image_of_ranked_positions(activations, unit, k):
    column = np.asarray(activations)[..., unit]
    per_image = int(np.prod(column.shape[1:]))
    return np.argsort(-column.reshape(-1))[:k] // per_image


def the_values(activations, unit, k):
    return np.sort(unit_strength(activations, unit))[::-1][:k]


def everything_sorted(activations, unit, k):
    return np.argsort(-unit_strength(activations, unit))


def dense_row(activations, unit, k):  # activations[unit]: one image's units
    if activations.ndim == 4:
        return top_images(activations, unit, k)
    return np.argsort(-activations[unit])[:k]


def conv_only_mean(activations, unit, k):  # right for Dense layers, the average for convolutions
    return top_by_mean(activations, unit, k)


WRONG_06_1 = [
    (top_by_mean, "average (or sum)"),
    (top_by_sum, "average (or sum)"),
    (weakest_first, "most active image comes first"),
    (least_active, "least active"),
    (next_unit, "top images of unit"),
    (previous_unit, "top images of unit"),
    (all_units, "a table for all"),
    (max_over_channels_too, "over all units"),
    (ranked_positions, "ranked the positions"),
    (image_of_ranked_positions, "more than once"),
    (the_values, "activation values"),
    (everything_sorted, "keep only the k"),
    (dense_row, "row of one image"),
]


# ----------------------------------------------------------------------------- wrong answers: 06.2

def no_flush(score, image, patch, stride, fill):
    return occlusion_by_hand(score, image, patch, stride, fill,
                             corners=lambda size, p, s: list(range(0, size - p + 1, s)))


def summed_drops(score, image, patch, stride, fill):
    return occlusion_by_hand(score, image, patch, stride, fill, average=False)


def flipped_sign(score, image, patch, stride, fill):
    return occlusion_by_hand(score, image, patch, stride, fill, sign=-1.0)


def black_fill(score, image, patch, stride, fill):
    return occlusion_by_hand(score, image, patch, stride, 0.0)


def occluded_scores(score, image, patch, stride, fill):
    return score(image[None])[0] - occlusion_by_hand(score, image, patch, stride, fill)


def no_copy(score, image, patch, stride, fill):
    height, width = image.shape[:2]
    places = [(t, left) for t in occlusion.patch_corners(height, patch, stride)
              for left in occlusion.patch_corners(width, patch, stride)]
    original = score(image[None])[0]
    total, covered = np.zeros((height, width)), np.zeros((height, width))
    for top, left in places:
        image[top:top + patch, left:left + patch] = fill  # the same image, square after square
        total[top:top + patch, left:left + patch] += original - score(image[None])[0]
        covered[top:top + patch, left:left + patch] += 1
    return total / covered


def drops_per_position(score, image, patch, stride, fill):
    height, width = image.shape[:2]
    tops, lefts = occlusion.patch_corners(height, patch, stride), occlusion.patch_corners(width, patch, stride)
    copies = []
    for top in tops:
        for left in lefts:
            copy = image.copy()
            copy[top:top + patch, left:left + patch] = fill
            copies.append(copy)
    return (score(image[None])[0] - score(np.stack(copies))).reshape(len(tops), len(lefts))


def with_channel_axis(score, image, patch, stride, fill):
    return np.repeat(occlusion_by_hand(score, image, patch, stride, fill)[..., None], image.shape[-1], axis=-1)


def single_image_to_score(score, image, patch, stride, fill):
    return occlusion_by_hand(lambda batch: np.array([score(one) for one in batch]).ravel(),
                             image, patch, stride, fill)


WRONG_06_2 = [
    (no_flush, "flush with"),
    (summed_drops, "take their mean"),
    (flipped_sign, "sign is flipped"),
    (black_fill, "value `fill`"),
    (occluded_scores, "average the drops instead"),
    (no_copy, "changed `image`"),
    (drops_per_position, "one drop per position"),
    (with_channel_axis, "no channel axis"),
    (single_image_to_score, "add a batch axis"),
]


# ----------------------------------------------------------------------------- wrong answers: 06.3

def svd_parts(features):
    centred = features - features.mean(axis=0)
    return np.linalg.svd(centred, full_matrices=False)


def not_centred(features):
    _, _, vt = np.linalg.svd(features, full_matrices=False)
    return features @ vt[:2].T


def raw_points_projected(features):
    _, _, vt = svd_parts(features)
    return features @ vt[:2].T


def unscaled_u(features):
    u, _, _ = svd_parts(features)
    return u[:, :2]


def smallest_components(features):  # np.linalg.eigh sorts eigenvalues in increasing order
    centred = features - features.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return centred @ vectors[:, :2]


def swapped_columns(features):
    return pca_2d(features)[:, ::-1]


def standardised(features):
    z = (features - features.mean(axis=0)) / features.std(axis=0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    return z @ vt[:2].T


def the_directions(features):
    _, _, vt = svd_parts(features)
    return vt[:2]


def every_component(features):
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt.T


def transposed(features):
    return pca_2d(features).T


WRONG_06_3 = [
    (not_centred, "centre the features first"),
    (raw_points_projected, "not centred"),
    (unscaled_u, "length 1"),
    (smallest_components, "smallest"),
    (swapped_columns, "swapped"),
    (standardised, "standard deviation"),
    (the_directions, "project the centred points"),
    (every_component, "keep the first two"),
    (transposed, "one row per point"),
]


@pytest.mark.parametrize("task_id, answer, words",
                         [("06.1", *case) for case in WRONG_06_1] + [("06.2", *case) for case in WRONG_06_2]
                         + [("06.3", *case) for case in WRONG_06_3])
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message, result.message


@pytest.mark.parametrize("task_id", ["06.1", "06.2", "06.3"])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id):
    memorised = Memorised(RIGHT[task_id])
    assert outcome(task_id, memorised).passed, "while it still calls the reference"
    memorised.recording = False
    assert not outcome(task_id, memorised).passed  # new random cases


def test_multiple_choice_hint_is_the_same_whatever_is_wrong():
    right = RIGHT["06.4"]
    wrong = [right - {"b"}, right | {"a"}, set("abcdef"), {"a"} ^ right, {"c", "e"}]
    messages = {outcome("06.4", answer).message for answer in wrong}
    assert len(messages) == 1 and not any(outcome("06.4", answer).passed for answer in wrong)
    assert outcome("06.4", "b, d, f").passed  # a string of letters works too
    assert "not options" in outcome("06.4", {"g"}).message

