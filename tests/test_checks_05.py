"""The exercise checks of lesson 05: right answers pass, wrong or memorised ones get a hint."""

import numpy as np
import pytest
import tensorflow as tf
from check_helpers import Memorised, outcome, usual_forms

from coursekit import checks, models

# ----------------------------------------------------------------------------- reference answers

def add_patches(images, digits, corners, side=4, far=24, level=lambda digit: 255 - 25 * digit):
    decoyed = images.copy()
    for image, digit, corner in zip(decoyed, digits, corners):
        top, left = far * (corner // 2), far * (corner % 2)
        image[top:top + side, left:left + side] = level(digit)
    return decoyed


def share_in_mask(maps, masks):
    inside = (maps * masks).sum(axis=(1, 2))
    total = maps.sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def input_gradients(model, images, objective=lambda logits: tf.reduce_sum(tf.nn.log_softmax(logits))):
    images = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        value = objective(models.pre_softmax(model)(images))
    return tape.gradient(value, images).numpy()[..., 0]


def right_reasons_penalty(model, images, masks):
    return ((input_gradients(model, images) * masks) ** 2).sum(axis=(1, 2))


def penalty_from_probabilities(model, images, masks):
    """The log of the model's own output instead of log_softmax: as good on these models."""
    images = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(tf.math.log(model(images)))
    gradients = tape.gradient(total, images)[..., 0]
    return tf.reduce_sum(tf.square(gradients * tf.cast(masks, tf.float32)), axis=(1, 2))


RIGHT = {"05.1": add_patches, "05.2": share_in_mask, "05.3": right_reasons_penalty, "05.4": {"a", "d", "e"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def share_in_mask_with_epsilon(maps, masks):
    return (maps * masks).sum(axis=(1, 2)) / (maps.sum(axis=(1, 2)) + 1e-5)


NUMBERS = ["float64", "float32", "tensor", "list", "big-endian", "computed in float64"]
USUAL_FORMS = [
    *usual_forms("05.1", add_patches, ["tensor", "big-endian"]),
    *usual_forms("05.2", share_in_mask, NUMBERS),
    pytest.param("05.2", share_in_mask_with_epsilon, id="05.2-total + 1e-5"),
    *usual_forms("05.3", right_reasons_penalty, NUMBERS),
    pytest.param("05.4", ["a", "d", "e"], id="05.4-a list"),
]


@pytest.mark.parametrize("task_id, answer", USUAL_FORMS)
def test_usual_forms_of_a_right_answer_pass(task_id, answer):
    """Float64 or float32, tensors, lists, either byte order, 0-d arrays, an epsilon in a
    denominator: what students write, and what check() and the grader both accept."""
    result = outcome(task_id, answer)
    assert result.passed, result.message


def test_other_right_answers_pass():
    def vectorised(images, digits, corners):  # no loop, a tensor-free numpy answer
        decoyed = np.array(images)
        rows, cols = np.arange(28)[None, :, None], np.arange(28)[None, None, :]
        top, left = (np.asarray(corners) // 2 * 24)[:, None, None], (np.asarray(corners) % 2 * 24)[:, None, None]
        inside = (rows >= top) & (rows < top + 4) & (cols >= left) & (cols < left + 4)
        return np.where(inside, (255 - 25 * np.asarray(digits))[:, None, None], decoyed).astype(np.uint8)

    assert outcome("05.1", vectorised).passed
    assert outcome("05.2", lambda maps, masks: np.nan_to_num(share_in_mask(maps, masks))).passed
    assert outcome("05.3", penalty_from_probabilities).passed


# ----------------------------------------------------------------------------- wrong answers: 05.1

def in_place(images, digits, corners):
    for image, digit, corner in zip(images, digits, corners):
        image[24 * (corner // 2):24 * (corner // 2) + 4, 24 * (corner % 2):24 * (corner % 2) + 4] = 255 - 25 * digit
    return images


def added(images, digits, corners):
    decoyed = images.copy()
    for image, digit, corner in zip(decoyed, digits, corners):
        top, left = 24 * (corner // 2), 24 * (corner % 2)
        image[top:top + 4, left:left + 4] += np.uint8(255 - 25 * digit)  # wraps around
    return decoyed


WRONG_05_1 = [
    (in_place, "changed the `images`"),
    (lambda images, digits, corners: images, "very array"),
    (lambda images, digits, corners: images.copy(), "unchanged"),
    (lambda images, digits, corners: None, "return"),
    (lambda images, digits, corners: add_patches(images, digits, corners)[..., None], "same shape"),
    (lambda images, digits, corners: add_patches(images, digits, corners).astype("float32"), "uint8"),
    (lambda images, digits, corners: add_patches(images, digits, np.array([0, 2, 1, 3])[corners]), "swapped"),
    (lambda images, digits, corners: add_patches(images, digits, corners, side=3, far=25), "3x3"),
    (lambda images, digits, corners: add_patches(images, digits, corners, side=5), "5x5"),
    (lambda images, digits, corners: add_patches(images, digits, corners, far=23), "starts at pixel 23"),
    (lambda images, digits, corners: add_patches(images, digits, 3 - corners), "outside its patch"),
    (lambda images, digits, corners: add_patches(images, digits, corners, level=lambda d: 25 * d), "wrong way"),
    (lambda images, digits, corners: add_patches(images, np.full_like(digits, digits[0]), corners), "same grey"),
    (lambda images, digits, corners: add_patches(images, digits, corners, level=lambda d: 250 - 25 * d), "255 - 25 * digit"),
    (added, "same grey level"),
]


# ----------------------------------------------------------------------------- wrong answers: 05.2

def share_unguarded(maps, masks):
    with np.errstate(all="ignore"):
        return (maps * masks).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


def share_of_outside(maps, masks):
    inside = (maps * masks).sum(axis=(1, 2))
    outside = (maps * ~masks).sum(axis=(1, 2))
    return np.divide(inside, outside, out=np.zeros_like(inside), where=outside > 0)


def mean_inside(maps, masks):
    return (maps * masks).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))


def over_maximum(maps, masks):
    peak = maps.max(axis=(1, 2))
    return np.divide((maps * masks).sum(axis=(1, 2)), peak, out=np.zeros_like(peak), where=peak > 0)


WRONG_05_2 = [
    (share_unguarded, "NaN"),
    (lambda maps, masks: (maps * masks).sum(axis=(1, 2)), "divide it by the map's total mass"),
    (lambda maps, masks: 1 - share_in_mask(maps, masks), "*outside*"),
    (share_of_outside, "mass outside the mask"),
    (mean_inside, "average the map over the mask's pixels"),
    (lambda maps, masks: masks.mean(axis=(1, 2)), "size of the mask"),
    (over_maximum, "not by its maximum"),
    (lambda maps, masks: (maps * masks).sum() / maps.sum(), "one number for"),
    (lambda maps, masks: maps * masks, "one share per map"),
    (lambda maps, masks: share_in_mask(maps, masks)[::-1].copy(), "sum of the whole map"),
]


# ----------------------------------------------------------------------------- wrong answers: 05.3

def penalty_of(objective):
    def penalty(model, images, masks):
        return ((input_gradients(model, images, objective) * masks) ** 2).sum(axis=(1, 2))
    return penalty


def top(values, logits):
    return tf.reduce_sum(tf.gather(values, tf.argmax(logits, axis=1), axis=1, batch_dims=1))


def unwatched(model, images, masks):
    images = tf.constant(images)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(tf.math.log(model(images)))
    gradients = tape.gradient(total, images)  # None: a constant is not watched
    return tf.reduce_sum(tf.square(gradients[..., 0] * masks), axis=(1, 2))


WRONG_05_3 = [
    (penalty_of(lambda logits: top(tf.nn.log_softmax(logits), logits)), "top class only"),
    (penalty_of(lambda logits: top(tf.nn.softmax(logits), logits)), "top class's probability"),
    (penalty_of(lambda logits: top(logits, logits)), "top class's logit"),
    (penalty_of(tf.reduce_sum), "sum of the logits"),
    (penalty_of(lambda logits: tf.reduce_sum(tf.nn.softmax(logits))), "always 1"),
    (lambda model, images, masks: np.abs(input_gradients(model, images) * masks).sum(axis=(1, 2)), "square the gradients"),
    (lambda model, images, masks: np.sqrt(right_reasons_penalty(model, images, masks)), "square root"),
    (lambda model, images, masks: (input_gradients(model, images) ** 2).sum(axis=(1, 2)), "whole image"),
    (lambda model, images, masks: ((input_gradients(model, images) * ~masks) ** 2).sum(axis=(1, 2)), "*outside* the mask"),
    (lambda model, images, masks: right_reasons_penalty(model, images, masks) / np.maximum(masks.sum(axis=(1, 2)), 1),
     "average over the masked pixels"),
    (lambda model, images, masks: right_reasons_penalty(model, images, masks).mean(), "one number for"),
    (lambda model, images, masks: (input_gradients(model, images) * masks) ** 2, "add the squares up over the pixels"),
    (unwatched, "tape.watch"),
]


@pytest.mark.parametrize("task_id, answer, words", [("05.1", *case) for case in WRONG_05_1]
                         + [("05.2", *case) for case in WRONG_05_2] + [("05.3", *case) for case in WRONG_05_3])
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message, result.message


@pytest.mark.parametrize("task_id", ["05.1", "05.2"])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id):
    memorised = Memorised(RIGHT[task_id])
    assert outcome(task_id, memorised).passed, "while it still calls the reference"
    memorised.recording = False
    assert not outcome(task_id, memorised).passed  # new random cases


def test_a_penalty_hard_coded_from_one_check_fails_the_next():
    remembered = []

    def memorised(model, images, masks):
        if not remembered:
            remembered.append(right_reasons_penalty(model, images, masks))
        return remembered[0]

    outcome("05.3", memorised)
    assert not outcome("05.3", memorised).passed  # other networks, images and masks


def test_multiple_choice_hint_is_the_same_whatever_is_wrong():
    right = RIGHT["05.4"]
    wrong = [right - {"a"}, right | {"b"}, set("abcdef"), {"c", "f"}, right ^ {"a", "f"}]
    messages = {outcome("05.4", answer).message for answer in wrong}
    assert len(messages) == 1 and not any(outcome("05.4", answer).passed for answer in wrong)
    assert outcome("05.4", "a, d, e").passed  # a string of letters works too
    assert "not options" in outcome("05.4", {"g"}).message


def test_the_penalty_check_redraws_a_net_whose_masks_see_no_gradient(monkeypatch):
    """With no gradient under the masks, the whole image and the outside of the mask give the
    same penalty, and the right answer is 0: the check must not grade on such a drawing."""
    from coursekit.checks import lesson05
    draw, blank_draws = lesson05._random_digit_net, []

    def first_draw_masks_nothing(rng, separate_softmax):
        model, images, masks = draw(rng, separate_softmax)
        if not blank_draws:
            blank_draws.append(True)
            masks = np.zeros_like(masks)
        return model, images, masks

    monkeypatch.setattr(lesson05, "_random_digit_net", first_draw_masks_nothing)
    outside = outcome("05.3", lambda model, images, masks: ((input_gradients(model, images) * ~masks) ** 2).sum(axis=(1, 2)))
    assert blank_draws and "*outside* the mask" in outside.message, outside.message


def test_masks_that_see_no_gradient_are_told_apart():
    from coursekit.checks.lesson05 import _masks_see_the_gradients
    gradients = np.ones((3, 8, 8))
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[1:, 2:5, 2:5] = True
    assert _masks_see_the_gradients(gradients, masks)
    assert not _masks_see_the_gradients(gradients, np.zeros_like(masks))
    dead_under_masks = gradients.copy()
    dead_under_masks[1:, 2:5, 2:5] = 0
    assert not _masks_see_the_gradients(dead_under_masks, masks)
    dead_under_masks[2, 4, 4] = 0.5  # 0.25 of image 0's 64: 0.4%, under the 1% needed
    assert not _masks_see_the_gradients(dead_under_masks, masks)
    dead_under_masks[2, 4, 4] = 1  # 1 of 64: 1.6%
    assert _masks_see_the_gradients(dead_under_masks, masks)
    assert not _masks_see_the_gradients(np.zeros_like(gradients), masks)
