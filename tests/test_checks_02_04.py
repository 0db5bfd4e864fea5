"""The exercise checks of lessons 02-04: right answers pass, wrong or memorised ones get a hint."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from check_helpers import Memorised, outcome, usual_forms

from coursekit import checks, filters
from coursekit.checks.core import close

# ----------------------------------------------------------------------------- reference answers

def filter_objective(feature_maps, filter_index):
    h, w = feature_maps.shape[1], feature_maps.shape[2]
    b_h, b_w = filters.border_width(h), filters.border_width(w)
    return tf.reduce_mean(feature_maps[:, b_h:h - b_h, b_w:w - b_w, filter_index], axis=(1, 2))


def gradient_of(images, objective):
    with tf.GradientTape() as tape:
        tape.watch(images)
        value = objective(images)
    return tape.gradient(value, images)


def per_image_norm(gradients):
    return tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=(1, 2, 3), keepdims=True))


def ascent_step(images, objective, lr):
    gradients = gradient_of(images, objective)
    return images + lr * gradients / tf.maximum(per_image_norm(gradients), 1e-12)


def to_display(image):
    std = image.std()
    standard = (image - image.mean()) / std if std > 0 else np.zeros_like(image)
    return np.clip(standard * 64 + 128, 0, 255).round().astype(np.uint8)


def logit_gradients(scores_model, images, class_index):
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        score = scores_model(images)[:, class_index]
    return tape.gradient(score, images).numpy()


def saliency_map(scores_model, images, class_index):
    return np.abs(logit_gradients(scores_model, images, class_index)).max(axis=-1)


def smoothgrad_map(gradients_of, images, noises):
    magnitudes = [np.abs(gradients_of(images + noise)) for noise in noises]
    return np.mean(magnitudes, axis=0).max(axis=-1)


def probability_gradient(gradients, probabilities, class_index):
    return probabilities[class_index] * (gradients[class_index] - np.tensordot(probabilities, gradients, axes=1))


def channel_weights(gradients):
    return gradients.mean(axis=(1, 2))


def grad_cam_map(feature_maps, weights):
    positive = np.maximum(np.einsum("nhwk,nk->nhw", feature_maps, weights), 0)
    peak = positive.max(axis=(1, 2), keepdims=True)
    return positive / np.where(peak > 0, peak, 1)


def gradcam_layer(model):
    for layer in reversed(model.layers):
        shape = layer.output.shape
        if len(shape) == 4 and tuple(shape[1:3]) != (1, 1):
            return layer.name


def integrated_gradients_map(scores_model, image, baseline, class_index, steps):
    alphas = (np.arange(steps) + 0.5) / steps
    points = tf.constant((baseline[None] + alphas[:, None, None, None] * (image - baseline)[None]).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(points)
        scores = scores_model(points)[:, class_index]
    return (image - baseline) * tape.gradient(scores, points).numpy().mean(axis=0)


def grouped_integrated_gradients(scores_model, image, baseline, class_index, steps, points_per_tape, send_last):
    """Integrated Gradients a tape per group of points; ``send_last=False`` is the slip of a loop
    that stops one group early, so its last group is never sent."""
    alphas = (np.arange(steps) + 0.5) / steps
    total = np.zeros(image.shape)
    for start in range(0, steps if send_last else steps - points_per_tape, points_per_tape):
        group = alphas[start:start + points_per_tape]
        points = tf.constant((baseline[None] + group[:, None, None, None] * (image - baseline)[None]).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(points)
            scores = scores_model(points)[:, class_index]
        total += tape.gradient(scores, points).numpy().sum(axis=0)
    return (image - baseline) * total / steps


def integrated_gradients_in_groups(scores_model, image, baseline, class_index, steps, points_per_tape=4):
    """The task's own form: a tape per group of points (the check's 6-16 steps leave a smaller last group)."""
    return grouped_integrated_gradients(scores_model, image, baseline, class_index, steps, points_per_tape, True)


def integrated_gradients_without_last_group(scores_model, image, baseline, class_index, steps, points_per_tape=4):
    """A slip of the grouped form: the loop stops one group early, so the last group is never sent."""
    return grouped_integrated_gradients(scores_model, image, baseline, class_index, steps, points_per_tape, False)


def test_integrated_gradients_in_groups_passes_and_one_batch_too():
    """03.4 asks for a tape per group of points; the one-batch form computes the same and keeps its points."""
    assert outcome("03.4", integrated_gradients_in_groups).points == 3
    assert outcome("03.4", integrated_gradients_map).points == 3


def test_integrated_gradients_losing_the_last_group_fails_with_a_hint_on_it():
    result = outcome("03.4", integrated_gradients_without_last_group)
    assert not result.passed and result.points == 0
    assert "only the first" in result.message and "last group" in result.message


def integrated_gradients_with_coursekit(scores_model, image, baseline, class_index, steps):
    from coursekit import saliency
    return saliency.integrated_gradients(scores_model, image, class_index, baseline=baseline, steps=steps)[0]


RIGHT = {"02.1": filter_objective, "02.2": ascent_step, "02.3": to_display, "02.4": {"b", "c", "d"},
         "03.1": saliency_map, "03.2": smoothgrad_map, "03.3": probability_gradient,
         "03.4": integrated_gradients_map, "03.5": {"b", "c", "f", "g"},
         "04.1": channel_weights, "04.2": grad_cam_map, "04.3": gradcam_layer, "04.4": {"a", "d", "f"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def ascent_step_with_epsilon(epsilon):
    def ascent_step_guarded(images, objective, lr):
        gradients = gradient_of(images, objective)
        return images + lr * gradients / (per_image_norm(gradients) + epsilon)
    ascent_step_guarded.__name__ = f"ascent_step[norm + {epsilon:g}]"
    return ascent_step_guarded


def to_display_with_epsilon(image):
    return np.clip((image - image.mean()) / (image.std() + 1e-5) * 64 + 128, 0, 255).round().astype(np.uint8)


def grad_cam_map_with_epsilon(epsilon):
    def grad_cam_map_guarded(feature_maps, weights):
        positive = np.maximum(np.einsum("nhwk,nk->nhw", feature_maps, weights), 0)
        return positive / (positive.max(axis=(1, 2), keepdims=True) + epsilon)
    grad_cam_map_guarded.__name__ = f"grad_cam_map[max + {epsilon:g}]"
    return grad_cam_map_guarded


def grad_cam_map_in_tensorflow(feature_maps, weights):
    positive = tf.nn.relu(tf.einsum("nhwk,nk->nhw", feature_maps, weights))
    return tf.math.divide_no_nan(positive, tf.reduce_max(positive, axis=(1, 2), keepdims=True))


NUMBERS = ["float64", "float32", "tensor", "list", "big-endian", "computed in float64"]
USUAL_FORMS = [
    *usual_forms("02.1", filter_objective, ["computed in float64"]),
    *usual_forms("02.2", ascent_step, NUMBERS),
    *[pytest.param("02.2", ascent_step_with_epsilon(eps), id=f"02.2-norm + {eps:g}") for eps in (1e-12, 1e-8, 1e-5)],
    *usual_forms("02.3", to_display, ["tensor", "big-endian", "computed in float64"]),
    pytest.param("02.3", to_display_with_epsilon, id="02.3-std + 1e-5"),
    *usual_forms("03.1", saliency_map, NUMBERS),
    *usual_forms("03.2", smoothgrad_map, NUMBERS),
    *usual_forms("03.3", probability_gradient, NUMBERS),
    *usual_forms("03.4", integrated_gradients_map, NUMBERS[:-1]),
    *usual_forms("04.1", channel_weights, NUMBERS),
    *usual_forms("04.2", grad_cam_map, NUMBERS),
    *[pytest.param("04.2", grad_cam_map_with_epsilon(eps), id=f"04.2-max + {eps:g}") for eps in (1e-7, 1e-6, 1e-5)],
    pytest.param("04.2", grad_cam_map_in_tensorflow, id="04.2-TensorFlow, divide_no_nan"),
    *[pytest.param(task_id, " ".join(sorted(RIGHT[task_id])).upper(), id=f"{task_id}-a string of capitals")
      for task_id in ("02.4", "03.5", "04.4")],
]


@pytest.mark.parametrize("task_id, answer", USUAL_FORMS)
def test_usual_forms_of_a_right_answer_pass(task_id, answer):
    """Float64 or float32, tensors, lists, either byte order, 0-d arrays, an epsilon in a
    denominator: what students write, and what check() and the grader both accept."""
    result = outcome(task_id, answer)
    assert result.passed, result.message


def test_coursekit_integrated_gradients_passes_03_4():
    """The reference the task describes is coursekit's default rule (the middle of each piece)."""
    assert outcome("03.4", integrated_gradients_with_coursekit).passed


# ----------------------------------------------------------------------------- wrong answers: 02

def whole_map(feature_maps, filter_index):
    return tf.reduce_mean(feature_maps[..., filter_index], axis=(1, 2))


def border_always_two(feature_maps, filter_index):
    h, w = feature_maps.shape[1:3]
    return tf.reduce_mean(feature_maps[:, 2:h - 2, 2:w - 2, filter_index], axis=(1, 2))


def borders_swapped(feature_maps, filter_index):
    h, w = feature_maps.shape[1:3]
    b_h, b_w = filters.border_width(w), filters.border_width(h)
    return tf.reduce_mean(feature_maps[:, b_h:h - b_h, b_w:w - b_w, filter_index], axis=(1, 2))


def next_channel(feature_maps, filter_index):
    return filter_objective(feature_maps, (filter_index + 1) % feature_maps.shape[-1])


def summed(feature_maps, filter_index):
    h, w = feature_maps.shape[1:3]
    b_h, b_w = filters.border_width(h), filters.border_width(w)
    return tf.reduce_sum(feature_maps[:, b_h:h - b_h, b_w:w - b_w, filter_index], axis=(1, 2))


def one_number(feature_maps, filter_index):
    return tf.reduce_mean(filter_objective(feature_maps, filter_index))


def as_numpy(feature_maps, filter_index):
    return filter_objective(feature_maps, filter_index).numpy()


def through_numpy(feature_maps, filter_index):
    return tf.constant(filter_objective(feature_maps, filter_index).numpy())


def not_normalised(images, objective, lr):
    return images + lr * gradient_of(images, objective)


def batch_normalised(images, objective, lr):
    gradients = gradient_of(images, objective)
    return images + lr * gradients / tf.norm(gradients)


def descent(images, objective, lr):
    return 2 * images - ascent_step(images, objective, lr)


def step_only(images, objective, lr):
    return ascent_step(images, objective, lr) - images


def unguarded(images, objective, lr):
    gradients = gradient_of(images, objective)
    return images + lr * gradients / per_image_norm(gradients)


def all_stay_if_one_is_stuck(images, objective, lr):
    gradients = gradient_of(images, objective)
    norms = per_image_norm(gradients)
    return images if bool(tf.reduce_any(norms == 0)) else images + lr * gradients / norms


def unwatched(images, objective, lr):
    with tf.GradientTape() as tape:
        value = objective(images)
    gradients = tape.gradient(value, images)  # None: constants are not watched
    return images + lr * gradients / tf.norm(gradients)


def unclipped(image):
    return (((image - image.mean()) / image.std()) * 64 + 128).round().astype(np.uint8)


def floats(image):
    return to_display(image).astype("float32")


def not_standardised(image):
    return np.clip(image * 64 + 128, 0, 255).astype(np.uint8)


def flat_unguarded(image):
    with np.errstate(all="ignore"):
        return np.nan_to_num(np.clip((image - image.mean()) / image.std() * 64 + 128, 0, 255)).astype(np.uint8)


def cropped(image):
    return filters.deprocess(image)  # crops the border


WRONG_02 = [
    ("02.1", whole_map, "border included"),
    ("02.1", border_always_two, "border_width"),
    ("02.1", borders_swapped, "height"),
    ("02.1", next_channel, "those of channel"),
    ("02.1", summed, "add the inner values up"),
    ("02.1", one_number, "per image"),
    ("02.1", as_numpy, "numpy array"),
    ("02.1", through_numpy, "cannot differentiate"),
    ("02.2", not_normalised, "normalise"),
    ("02.2", batch_normalised, "its own L2 norm"),
    ("02.2", descent, "lowers the objective"),
    ("02.2", step_only, "the step itself"),
    ("02.2", unguarded, "0 / 0"),
    ("02.2", all_stay_if_one_is_stuck, "other images"),
    ("02.2", unwatched, "raised"),
    ("02.3", unclipped, "wraps around"),
    ("02.3", floats, "uint8"),
    ("02.3", not_standardised, "standardise"),
    ("02.3", flat_unguarded, "mid-grey"),
    ("02.3", cropped, "no crop"),
]


# ----------------------------------------------------------------------------- wrong answers: 03

def scaled_saliency(scores_model, images, class_index):
    maps = saliency_map(scores_model, images, class_index)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def signed_saliency(scores_model, images, class_index):
    return logit_gradients(scores_model, images, class_index).max(axis=-1)


def mean_over_channels(scores_model, images, class_index):
    return np.abs(logit_gradients(scores_model, images, class_index)).mean(axis=-1)


def top_class_saliency(scores_model, images, class_index):
    images = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        scores = scores_model(images)
        score = tf.reduce_max(scores, axis=1)
    return np.abs(tape.gradient(score, images).numpy()).max(axis=-1)


def per_channel(scores_model, images, class_index):
    return np.abs(logit_gradients(scores_model, images, class_index))


def no_noise(gradients_of, images, noises):
    return np.abs(gradients_of(images)).max(axis=-1)


def max_then_mean(gradients_of, images, noises):
    return np.mean([np.abs(gradients_of(images + noise)).max(axis=-1) for noise in noises], axis=0)


def signed_mean(gradients_of, images, noises):
    return np.abs(np.mean([gradients_of(images + noise) for noise in noises], axis=0)).max(axis=-1)


def never_calls(gradients_of, images, noises):
    return np.ones(images.shape[:3])


def logit_gradient_only(gradients, probabilities, c):
    return gradients[c]


def no_other_classes(gradients, probabilities, c):
    return probabilities[c] * gradients[c]


def no_factor(gradients, probabilities, c):
    return gradients[c] - np.tensordot(probabilities, gradients, axes=1)


def unweighted(gradients, probabilities, c):
    return probabilities[c] * (gradients[c] - gradients.mean(axis=0))


def flipped(gradients, probabilities, c):
    return -probability_gradient(gradients, probabilities, c)


WRONG_03 = [
    ("03.1", scaled_saliency, "scaled"),
    ("03.1", signed_saliency, "negative gradients count too"),
    ("03.1", mean_over_channels, "largest magnitude"),
    ("03.1", top_class_saliency, "top class"),
    ("03.1", per_channel, "combine the colour channels"),
    ("03.2", no_noise, "clean images"),
    ("03.2", max_then_mean, "order matters"),
    ("03.2", signed_mean, "signed gradients"),
    ("03.2", never_calls, "never calls"),
    ("03.3", logit_gradient_only, "gradient of the logit"),
    ("03.3", no_other_classes, "other classes"),
    ("03.3", no_factor, "factor p_c"),
    ("03.3", unweighted, "by its probability"),
    ("03.3", flipped, "sign is flipped"),
]


# ----------------------------------------------------------------------------- wrong answers: 04

def grad_cam_unguarded(feature_maps, weights):
    positive = np.maximum(np.einsum("nhwk,nk->nhw", feature_maps, weights), 0)
    with np.errstate(all="ignore"):
        return positive / positive.max(axis=(1, 2), keepdims=True)


def grad_cam_no_relu(feature_maps, weights):
    summed = np.einsum("nhwk,nk->nhw", feature_maps, weights)
    return summed / np.abs(summed).max(axis=(1, 2), keepdims=True)


def grad_cam_unscaled(feature_maps, weights):
    return np.maximum(np.einsum("nhwk,nk->nhw", feature_maps, weights), 0)


def grad_cam_batch_max(feature_maps, weights):
    positive = grad_cam_unscaled(feature_maps, weights)
    return positive / positive.max()


def grad_cam_min_max(feature_maps, weights):
    positive = grad_cam_unscaled(feature_maps, weights)
    low, high = positive.min(axis=(1, 2), keepdims=True), positive.max(axis=(1, 2), keepdims=True)
    return (positive - low) / np.where(high > low, high - low, 1)


def grad_cam_relu_weights(feature_maps, weights):
    return grad_cam_map(feature_maps, np.maximum(weights, 0))


def last_4d_layer(model):
    return next(layer.name for layer in reversed(model.layers) if len(layer.output.shape) == 4)


def first_conv(model):
    return next(layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D))


def ig_variant(alphas_of, *, difference=True, times=None, average=True):
    def answer(scores_model, image, baseline, class_index, steps):
        alphas = alphas_of(steps)
        points = tf.constant((baseline[None] + alphas[:, None, None, None] * (image - baseline)[None]).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(points)
            scores = scores_model(points)[:, class_index]
        gradients = tape.gradient(scores, points).numpy()
        mean = gradients.mean(axis=0) if average else gradients.sum(axis=0)
        factor = (image - baseline) if difference else (image if times == "image" else 1.0)
        return factor * mean
    return answer


MIDDLE = lambda steps: (np.arange(steps) + 0.5) / steps  # noqa: E731
WRONG_03_4 = [
    ("03.4", ig_variant(MIDDLE, difference=False), "multiply it by (image - baseline)"),
    ("03.4", ig_variant(MIDDLE, difference=False, times="image"), "not by the image alone"),
    ("03.4", ig_variant(MIDDLE, average=False), "divide their sum by steps"),
    ("03.4", ig_variant(lambda steps: np.arange(steps) / steps), "start at the baseline itself"),
    ("03.4", ig_variant(lambda steps: np.arange(1, steps + 1) / steps), "end at the image"),
    ("03.4", ig_variant(lambda steps: np.ones(1)), "gradient at the image only"),
    ("03.4", ig_variant(lambda steps: np.linspace(0, 1, 3)), "completeness"),
    ("03.4", lambda scores_model, image, baseline, class_index, steps: (image - baseline).sum(axis=-1), "shape"),
]

WRONG_04 = [
    ("04.1", lambda g: g.mean(axis=(0, 1, 2)), "batch"),
    ("04.1", lambda g: g.sum(axis=(1, 2)), "add the gradients up"),
    ("04.1", lambda g: g.mean(axis=-1), "pooled over the channels"),
    ("04.1", lambda g: np.abs(g).mean(axis=(1, 2)), "keep the sign"),
    ("04.2", grad_cam_unguarded, "NaN"),
    ("04.2", grad_cam_no_relu, "negative values"),
    ("04.2", grad_cam_unscaled, "[0, 1]"),
    ("04.2", grad_cam_batch_max, "whole batch"),
    ("04.2", grad_cam_min_max, "subtract the minimum"),
    ("04.2", grad_cam_relu_weights, "not to the weights"),
    ("04.3", last_4d_layer, "1x1"),
    ("04.3", lambda model: model.layers[-1].name, "no height and width"),
    ("04.3", first_conv, "later layers"),
    ("04.3", lambda model: model.get_layer(gradcam_layer(model)), "not the layer itself"),
    ("04.3", lambda model: "conv_pw_13_relu", "no layer called"),
]


@pytest.mark.parametrize("task_id, answer, words", WRONG_02 + WRONG_03 + WRONG_03_4 + WRONG_04)
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message, result.message


def test_a_shape_hint_of_03_1_ends_in_a_whole_sentence():
    for shape in ((1, 2, 3, 4, 5), (2, 3), (2, 3, 4, 5)):
        message = outcome("03.1", lambda scores_model, images, class_index, shape=shape: np.zeros(shape)).message
        assert "should have shape" in message and message.endswith(".") and not message.rstrip(".").endswith(":"), \
            message


@pytest.mark.parametrize("answer, words", [case[1:] for case in WRONG_04 if case[0] == "04.2"])
def test_every_drawing_of_the_made_up_cam_case_gives_a_wrong_map_its_own_hint(answer, words):
    """The check's made-up case alone must catch each mistake: on a random network the maps of
    a batch can all be 0, or its pooled gradients all positive, and hide it."""
    from coursekit.checks import lesson04
    for seed in range(3000):
        feature_maps, weights = lesson04._made_up_cam_case(np.random.default_rng(seed))
        maps, weights = feature_maps.astype("float64"), weights.astype("float64")
        got = answer(maps, weights)
        assert not close(got, grad_cam_map(maps, weights), 1e-3), seed
        assert words in lesson04._map_hint(got, maps, weights), (seed, lesson04._map_hint(got, maps, weights))


@pytest.mark.parametrize("task_id", ["02.1", "02.3", "03.3", "03.4", "04.1", "04.2"])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id):
    memorised = Memorised(RIGHT[task_id])
    assert outcome(task_id, memorised).passed, "while it still calls the reference"
    memorised.recording = False
    assert not outcome(task_id, memorised).passed  # new random cases


@pytest.mark.parametrize("task_id, right", [("02.4", {"b", "c", "d"}), ("03.5", {"b", "c", "f", "g"}),
                                            ("04.4", {"a", "d", "f"})])
def test_multiple_choice_hint_is_the_same_whatever_is_wrong(task_id, right):
    wrong = [right - {min(right)}, right | {"e" if "e" not in right else "a"}, set("abcdef"), {"a"} ^ right]
    messages = {outcome(task_id, answer).message for answer in wrong}
    assert len(messages) == 1 and not any(outcome(task_id, answer).passed for answer in wrong)
    assert outcome(task_id, " ".join(sorted(right))).passed  # a string of letters works too
    assert "not options" in outcome(task_id, {"z"}).message

