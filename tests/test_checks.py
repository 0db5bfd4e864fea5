"""The exercise checks: right answers pass, wrong or memorised ones get a hint, nothing escapes."""
import ast
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from coursekit import checks
from coursekit.checks import core

CHECKS_DIR = Path(checks.__file__).parent


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


def outcome(task_id, value):
    return core.evaluate(checks.find(task_id), value)


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def test_lesson_01_has_four_tasks_worth_ten_points():
    tasks = checks.tasks("01")
    assert [t.id for t in tasks] == ["01.1", "01.2", "01.3", "01.4"]
    assert sum(t.points for t in tasks) == 10


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


def test_unsolved_task_says_to_replace_the_stub():
    def stub(*args):
        raise NotImplementedError()
    for task_id in ("01.1", "01.2", "01.3"):
        assert "NotImplementedError" in outcome(task_id, stub).message


def test_a_missing_answer_names_the_expected_variable():
    result = outcome("01.3", core.MISSING)
    assert not result.passed and "tile_position" in result.message


class Memorised:
    """Answers each call from what the reference returned for the same arguments in an earlier
    check: a hard-coded answer. It knows every case of the first check run, none of the next."""

    def __init__(self, reference, unknown):
        self.reference, self.unknown, self.table, self.recording = reference, unknown, {}, True

    def __call__(self, *args):
        key = repr(args)
        if self.recording:
            self.table[key] = self.reference(*args)
        return self.table.get(key, self.unknown)


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


def test_multiple_choice_key_is_not_the_answer_in_plain_text():
    source = (CHECKS_DIR / "lesson01.py").read_text()
    assert "choice_key(" not in source.split("choice_task(")[-1]
    assert core.choice_key("01.4", {"e", "c", "a"}) == core.choice_key("01.4", ["a", "c", "e"])
    assert core.choice_key("01.4", {"a"}) != core.choice_key("01.5", {"a"})


def test_an_always_equal_object_does_not_pass():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

        def __call__(self, *args):
            return self

    for task_id in ("01.2", "01.3"):
        assert not outcome(task_id, AlwaysEqual()).passed
    assert not outcome("01.4", [AlwaysEqual()]).passed


def test_a_broken_check_is_reported_as_such_not_blamed_on_the_student():
    def broken(value):
        raise KeyError("oops")
    result = core.evaluate(core.Task("99.1", 1, "x", "broken", broken), 1)
    assert not result.passed and result.check_error and "not your fault" in result.message


# ----------------------------------------------------------------------------- check() itself

def test_check_prints_and_records(capsys):
    checks.results.clear()
    checks.check("01.3", tile_position)
    checks.check("01.4", {"a"})
    printed = capsys.readouterr().out
    assert "✓ 01.3 passed (2/2 points)" in printed and "✗ 01.4 not yet (0/2 points)" in printed
    assert checks.results["01.3"].passed and not checks.results["01.4"].passed
    checks.summary("01")
    assert "Lesson 01: 2/10 points" in capsys.readouterr().out


def test_check_of_an_unknown_task_lists_the_tasks():
    with pytest.raises(ValueError, match="01.1, 01.2, 01.3, 01.4"):
        checks.check("01.9", None)
    with pytest.raises(ValueError, match="lessons with checks"):
        checks.check("42.1", None)


def test_grade_reads_the_answer_from_a_namespace():
    assert checks.grade("01.3", {"tile_position": tile_position})["passed"] is True
    missing = checks.grade("01.3", {"something_else": tile_position})
    assert missing["passed"] is False and "tile_position" in missing["message"]


# ----------------------------------------------------------------------------- rules for checks modules

def test_checks_modules_import_coursekit_relatively_and_tensorflow_lazily():
    for path in CHECKS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: functions may import Keras
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not node.module.startswith(("coursekit", "keras", "tensorflow")), (path.name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] in ("coursekit", "keras", "tensorflow") for a in node.names), path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("coursekit"), f"{path.name}: use relative imports"


def test_the_task_table_loads_without_tensorflow():
    code = ("import sys, coursekit.checks as c\n"
            "print(sum(t.points for t in c.tasks('01')), 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["10", "False", "False"], result.stderr
