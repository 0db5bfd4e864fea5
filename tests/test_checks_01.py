"""The exercise checks of lesson 01: right answers pass, wrong or memorised ones get a hint."""

import keras
import numpy as np
import pytest
from check_helpers import Memorised, outcome, usual_forms

from coursekit import checks

# ----------------------------------------------------------------------------- reference answers

def activation_submodel(model, layer_names):
    return keras.Model(model.inputs, [model.get_layer(name).output for name in layer_names])


def receptive_field(stack):
    size, jump, start = 1, 1, 0
    for kernel, stride, dilation, pad in stack:
        start -= pad * jump
        size += dilation * (kernel - 1) * jump
        jump *= stride
    return size, jump, start


def tile_position(channel, height, width, per_row, gap=1):
    return (channel // per_row) * (height + gap), (channel % per_row) * (width + gap)


RIGHT = {"01.1": activation_submodel, "01.2": receptive_field, "01.3": tile_position,
         "01.4": {"a", "c", "e"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def named_by_lambda(model, layer_names):  # identity layers give the outputs readable names
    return keras.Model(model.inputs, [keras.layers.Lambda(lambda t: t, name=f"{name}_out")(model.get_layer(name).output)
                                      for name in layer_names])


class Activations(keras.Model):
    def __init__(self, model, layer_names):
        super().__init__(name="activations")
        self.inner = keras.Model(model.inputs, [model.get_layer(name).output for name in layer_names])

    def call(self, images):
        return self.inner(images)


def subclassed(model, layer_names):
    return Activations(model, layer_names)


USUAL_FORMS = [pytest.param("01.1", named_by_lambda, id="01.1-identity Lambda layers"),
               pytest.param("01.1", subclassed, id="01.1-a subclassed keras.Model"),
               *usual_forms("01.2", receptive_field, ["list", "tensor", "big-endian", "float64"]),
               *usual_forms("01.3", tile_position, ["list", "tensor", "big-endian", "float64"]),
               pytest.param("01.4", "a, c, e", id="01.4-a string with commas"),
               pytest.param("01.4", ["e", "C", "a"], id="01.4-a list, a capital"),
               pytest.param("01.4", frozenset("ace"), id="01.4-a frozenset")]


@pytest.mark.parametrize("task_id, answer", USUAL_FORMS)
def test_usual_forms_of_a_right_answer_pass(task_id, answer):
    """Float64 or float32, tensors, lists, either byte order, 0-d arrays, an epsilon in a
    denominator: what students write, and what check() and the grader both accept."""
    result = outcome(task_id, answer)
    assert result.passed, result.message


# ----------------------------------------------------------------------------- wrong answers

def reversed_outputs(model, layer_names):
    return keras.Model(model.inputs, [model.get_layer(name).output for name in reversed(layer_names)])


def fresh_layers(model, layer_names):  # same shapes, new weights: not the network's own maps
    clone = keras.models.clone_model(model)
    return keras.Model(clone.inputs, [clone.get_layer(name).output for name in layer_names])


def predictions_instead_of_model(model, layer_names):
    return [model.get_layer(name).output for name in layer_names]


def no_dilation(stack):
    return receptive_field([(k, s, 1, p) for k, s, d, p in stack])


def no_padding(stack):
    size, jump, _ = receptive_field(stack)
    return size, jump, 0


def jump_adds_strides(stack):
    size, _, start = receptive_field(stack)
    return size, 1 + sum(s - 1 for _, s, _, _ in stack), start


def gap_ignored(channel, height, width, per_row, gap=1):
    return (channel // per_row) * (height + 1), (channel % per_row) * (width + 1)


def column_major(channel, height, width, per_row, gap=1):
    return (channel % per_row) * (height + gap), (channel // per_row) * (width + gap)


@pytest.mark.parametrize("task_id, answer, words", [
    ("01.1", reversed_outputs, "order"),
    ("01.1", fresh_layers, "reuse the layers"),
    ("01.1", predictions_instead_of_model, "keras.Model"),
    ("01.1", lambda model, names: 1 / 0, "ZeroDivisionError"),
    ("01.1", keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), "the function itself"),
    ("01.1", 3, "itself"),
    ("01.2", no_dilation, "dilation"),
    ("01.2", no_padding, "zero pixels"),
    ("01.2", jump_adds_strides, "jump"),
    ("01.2", lambda stack: (3, 1), "tuple of 3"),
    ("01.3", gap_ignored, "gap"),
    ("01.3", column_major, "row"),
    ("01.4", {"a", "c"}, "judged wrongly"),
    ("01.4", ["a", "x"], "not options"),
    ("01.4", 3, "set of letters"),
])
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message


@pytest.mark.parametrize("wrong", [no_dilation, no_padding, jump_adds_strides])
def test_every_drawing_of_the_field_cases_tells_a_wrong_formula_from_the_right_one(wrong):
    from coursekit.checks import lesson01
    for seed in range(3000):
        rng = np.random.default_rng(seed)
        stacks = [lesson01._random_stack(rng, kind) for kind in lesson01._STACK_KINDS]
        assert any(wrong(stack) != receptive_field(stack) for stack in stacks), (seed, stacks)


@pytest.mark.parametrize("wrong", [gap_ignored, column_major])
def test_every_drawing_of_the_tile_cases_tells_a_wrong_position_from_the_right_one(wrong):
    from coursekit.checks import lesson01
    for seed in range(3000):
        cases = lesson01._tile_cases(np.random.default_rng(seed))
        assert any(wrong(*case) != tile_position(*case) for case in cases), (seed, cases)


@pytest.mark.parametrize("task_id, reference, unknown", [("01.2", receptive_field, (1, 1, 0)),
                                                         ("01.3", tile_position, (0, 0))])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id, reference, unknown):
    memorised = Memorised(reference, unknown)
    assert outcome(task_id, memorised).passed  # while it still calls the reference
    memorised.recording = False
    assert not outcome(task_id, memorised).passed  # new random cases


def test_random_layer_names_never_collide():
    from coursekit.checks import lesson01
    rng = np.random.default_rng(0)
    assert all(len(set(lesson01._layer_tags(rng, 6))) == 6 for _ in range(2000))


def test_activation_check_uses_new_layer_names_every_time():
    seen = []

    def spy(model, layer_names):
        seen.append(tuple(layer_names))
        return activation_submodel(model, layer_names)

    outcome("01.1", spy)
    outcome("01.1", spy)
    assert len(seen) == 4 and set(seen[:2]).isdisjoint(seen[2:])


def test_multiple_choice_hint_is_the_same_whatever_is_wrong():
    wrong = [{"a"}, {"b", "d"}, {"a", "c", "e", "f"}, {"a", "b", "c", "d", "e", "f"}]
    messages = {outcome("01.4", answer).message for answer in wrong}
    assert len(messages) == 1


# ----------------------------------------------------------------------------- check() itself

# ----------------------------------------------------------------------------- rules for checks modules
