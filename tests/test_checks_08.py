"""The exercise checks of lesson 08: right answers pass, wrong or memorised ones get a hint."""
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from check_helpers import Memorised, outcome, usual_forms

from coursekit import checks

# ----------------------------------------------------------------------------- reference answers


def walk(container, prefix=""):
    for layer in container.layers:
        path = prefix + layer.name
        if isinstance(layer, keras.Model):
            yield from walk(layer, path + "/")
        else:
            yield path, layer


def last_spatial_path(model):
    found = None
    for path, layer in walk(model):
        shape = tuple(layer.output.shape)
        if len(shape) == 4 and shape[1:3] != (1, 1):
            found = path
    return found


def grad_cam_by_hand(model, images, class_index, layer, softmax=False, relu=True, scale=True):
    outer, inner = layer.split("/", 1)
    backbone = model.get_layer(outer)
    both = keras.Model(backbone.inputs, [backbone.get_layer(inner).output, backbone.outputs[0]])
    head = model.layers[model.layers.index(backbone) + 1:]
    with tf.GradientTape() as tape:
        maps, x = both(tf.constant(images), training=False)
        for step in head[:-1]:
            x = step(x, training=False)
        scores = head[-1](x) if softmax else tf.matmul(x, head[-1].kernel) + head[-1].bias
        score = tf.reduce_sum(scores[:, class_index])
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    cams = tf.reduce_sum(weights * maps, axis=-1).numpy()
    if relu:
        cams = np.maximum(cams, 0)
    if not scale:
        return cams
    peak = np.abs(cams).max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, cams / np.where(peak > 0, peak, 1), 0.0)


def nested_grad_cam(model, images, class_index, layer):
    return grad_cam_by_hand(model, images, class_index, layer)


def mass_in_box(heatmap, box):
    top, left, bottom, right = box
    total = heatmap.sum()
    return float(heatmap[top:bottom, left:right].sum() / total) if total > 0 else 0.0


RIGHT = {"08.1": last_spatial_path, "08.2": nested_grad_cam, "08.3": mass_in_box, "08.4": {"a", "c", "e"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def nested_grad_cam_with_epsilon(epsilon):
    def nested_grad_cam_guarded(model, images, class_index, layer):
        cams = grad_cam_by_hand(model, images, class_index, layer, scale=False)
        return cams / (cams.max(axis=(1, 2), keepdims=True) + epsilon)
    nested_grad_cam_guarded.__name__ = f"nested_grad_cam[max + {epsilon:g}]"
    return nested_grad_cam_guarded


def mass_in_box_with_epsilon(heatmap, box):
    top, left, bottom, right = box
    return heatmap[top:bottom, left:right].sum() / (heatmap.sum() + 1e-5)


NUMBERS = ["float64", "float32", "tensor", "list", "big-endian"]
USUAL_FORMS = [
    *usual_forms("08.2", nested_grad_cam, NUMBERS),
    *[pytest.param("08.2", nested_grad_cam_with_epsilon(eps), id=f"08.2-max + {eps:g}") for eps in (1e-7, 1e-5)],
    *usual_forms("08.3", mass_in_box, ["0-d", "numpy scalar", "float32", "tensor", "computed in float64"]),
    pytest.param("08.3", mass_in_box_with_epsilon, id="08.3-total + 1e-5"),
    pytest.param("08.4", ["a", "c", "e"], id="08.4-a list"),
]


@pytest.mark.parametrize("task_id, answer", USUAL_FORMS)
def test_usual_forms_of_a_right_answer_pass(task_id, answer):
    """Float64 or float32, tensors, lists, either byte order, 0-d arrays, an epsilon in a
    denominator: what students write, and what check() and the grader both accept."""
    result = outcome(task_id, answer)
    assert result.passed, result.message


@pytest.mark.parametrize("task_id", ["08.1", "08.2", "08.3"])
def test_each_check_takes_under_two_seconds(task_id):
    outcome(task_id, RIGHT[task_id])  # Keras and TensorFlow warmed up
    start = time.perf_counter()
    assert outcome(task_id, RIGHT[task_id]).passed
    assert time.perf_counter() - start < 2.0 * 2  # 2 s on an idle CPU; these machines are shared


# ----------------------------------------------------------------------------- wrong answers: 08.1

def top_level_only(model):
    found = None
    for layer in model.layers:
        shape = tuple(layer.output.shape)
        if len(shape) == 4 and shape[1:3] != (1, 1):
            found = layer.name
    return found


def own_name_only(model):
    return last_spatial_path(model).rsplit("/", 1)[-1]


def keeps_pooled_maps(model):
    found = None
    for path, layer in walk(model):
        if len(layer.output.shape) == 4:
            found = path
    return found


def first_spatial(model):
    for path, layer in walk(model):
        shape = tuple(layer.output.shape)
        if len(shape) == 4 and shape[1:3] != (1, 1) and not isinstance(layer, keras.layers.InputLayer):
            return path


def the_layer_itself(model):
    return dict(walk(model))[last_spatial_path(model)]


WRONG_08_1 = [
    (top_level_only, "look inside"),
    (own_name_only, "whole path"),
    (keeps_pooled_maps, "1x1"),
    (first_spatial, "later layer"),
    (the_layer_itself, "not the layer itself"),
    (lambda model: 3, "should return a path"),
]


# ----------------------------------------------------------------------------- wrong answers: 08.2

def flat_graph(model, images, class_index, layer):
    """The first thing everyone tries: fails with 'not connected' on a nested model."""
    backbone_name, inner = layer.split("/", 1)
    target = model.get_layer(backbone_name).get_layer(inner)
    both = keras.Model(model.inputs, [target.output, model.outputs[0]])
    return both(images)[0].numpy().mean(axis=-1)


WRONG_08_2 = [
    (lambda m, x, c, layer: grad_cam_by_hand(m, x, c, layer, softmax=True), "before it"),
    (lambda m, x, c, layer: grad_cam_by_hand(m, x, c, layer, relu=False), "negative values"),
    (lambda m, x, c, layer: grad_cam_by_hand(m, x, c, layer, scale=False) * 1e3 + 2.0, "own maximum"),
    (lambda m, x, c, layer: nested_grad_cam(m, x, c, layer)[0], "one map per image"),
    (flat_graph, "not from model.inputs"),
    (lambda m, x, c, layer: np.ones((len(x), *nested_grad_cam(m, x, c, layer).shape[1:])), "differ from Grad-CAM"),
]


# ----------------------------------------------------------------------------- wrong answers: 08.3

def share_or_nan(heatmap, box):
    top, left, bottom, right = box
    return heatmap[top:bottom, left:right].sum() / heatmap.sum()


WRONG_08_3 = [
    (lambda h, b: h[b[0]:b[2], b[1]:b[3]].sum(), "divide it by the map's total"),
    (lambda h, b: h[b[0]:b[2] + 1, b[1]:b[3] + 1].sum() / max(h.sum(), 1e-12), "exclusive"),
    (lambda h, b: h[b[1]:b[3], b[0]:b[2]].sum() / max(h.sum(), 1e-12), "rows come first"),
    (lambda h, b: 1 - mass_in_box(h, b), "outside the box"),
    (share_or_nan, "nan"),
    (lambda h, b: np.full(2, mass_in_box(h, b)), "one number"),
]

WRONG = ([("08.1", *case) for case in WRONG_08_1] + [("08.2", *case) for case in WRONG_08_2]
         + [("08.3", *case) for case in WRONG_08_3])


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("task_id, answer, words", WRONG)
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message, result.message


@pytest.mark.parametrize("task_id", ["08.2", "08.3"])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id):
    memorised = Memorised(RIGHT[task_id])
    assert outcome(task_id, memorised).passed, "while it still calls the reference"
    memorised.recording = False
    assert not outcome(task_id, memorised).passed  # new random cases


def test_a_path_memorised_from_one_check_fails_the_next():
    paths = []

    def remembered(model):
        if len(paths) < 5:
            paths.append(last_spatial_path(model))
            return paths[-1]
        return paths[len(paths) % 5]
    assert outcome("08.1", remembered).passed
    assert not outcome("08.1", remembered).passed  # new random layer names


def test_multiple_choice_hint_is_the_same_whatever_is_wrong():
    right = RIGHT["08.4"]
    wrong = [right - {"a"}, right | {"b"}, set("abcdef"), {"d", "f"}]
    messages = {outcome("08.4", answer).message for answer in wrong}
    assert len(messages) == 1 and not any(outcome("08.4", answer).passed for answer in wrong)
