"""The checks machinery, and what every lesson's checks promise: tasks worth 10 points, a
stub or a wrong kind of answer gets a hint (never a crash of the check), an object equal to
everything passes nothing, multiple-choice keys are hashes, and the task table loads without
TensorFlow. Each lesson's right and wrong answers are in tests/test_checks_NN.py."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from check_helpers import AlwaysEqual, is_choice_task, outcome

from coursekit import checks
from coursekit.checks import core

CHECKS_DIR = Path(checks.__file__).parent
LESSONS = checks.lessons()
ALL_TASKS = [task for lesson in LESSONS for task in checks.tasks(lesson)]
CODE_TASKS = [task.id for task in ALL_TASKS if not is_choice_task(task)]
CHOICE_TASKS = [task.id for task in ALL_TASKS if is_choice_task(task)]


def test_every_lesson_notebook_has_checks():
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    assert LESSONS == sorted(path.name[:2] for path in notebooks.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_lesson_has_at_least_three_tasks_worth_ten_points(lesson):
    tasks = checks.tasks(lesson)
    assert len(tasks) >= 3
    assert [t.id for t in tasks] == [f"{lesson}.{k}" for k in range(1, len(tasks) + 1)]
    assert sum(t.points for t in tasks) == 10
    assert len({t.answer for t in tasks}) == len(tasks), "each task needs an answer name of its own"
    assert any(not is_choice_task(t) for t in tasks), "at least one task is code to complete"


def test_the_choice_tasks_are_recognised():
    assert "01.4" in CHOICE_TASKS and "01.1" in CODE_TASKS and len(CHOICE_TASKS) == len(LESSONS)


@pytest.mark.parametrize("task_id", CODE_TASKS)
def test_unsolved_task_says_to_replace_the_stub(task_id):
    def stub(*args):
        raise NotImplementedError()
    result = outcome(task_id, stub)
    assert not result.passed and not result.check_error
    assert "NotImplementedError" in result.message and "YOUR CODE HERE" in result.message


@pytest.mark.parametrize("task_id", CODE_TASKS)
def test_a_value_instead_of_the_function_gets_a_hint(task_id):
    result = outcome(task_id, np.zeros(3))
    assert not result.passed and not result.check_error and "itself" in result.message


@pytest.mark.parametrize("task_id", CODE_TASKS)
def test_an_always_equal_object_does_not_pass(task_id):
    result = outcome(task_id, AlwaysEqual())
    assert not result.passed and not result.check_error, result.message


@pytest.mark.parametrize("task_id", CHOICE_TASKS)
def test_a_choice_of_always_equal_objects_does_not_pass(task_id):
    result = outcome(task_id, [AlwaysEqual()])
    assert not result.passed and not result.check_error, result.message


@pytest.mark.parametrize("task_id", CODE_TASKS + CHOICE_TASKS)
def test_a_missing_answer_names_the_expected_variable(task_id):
    result = outcome(task_id, core.MISSING)
    assert not result.passed and checks.find(task_id).answer in result.message


@pytest.mark.parametrize("lesson", LESSONS)
def test_multiple_choice_keys_are_not_the_answers_in_plain_text(lesson):
    source = (CHECKS_DIR / f"lesson{lesson}.py").read_text()
    assert "choice_key(" not in source.split("choice_task(")[-1]


def test_choice_keys_depend_on_the_letters_and_the_task_not_on_their_order():
    assert core.choice_key("01.4", {"e", "c", "a"}) == core.choice_key("01.4", ["a", "c", "e"])
    assert core.choice_key("01.4", {"a"}) != core.choice_key("01.5", {"a"})
    assert core.choice_key("01.4", {"a"}) != core.choice_key("01.4", {"a", "b"})


def test_a_broken_check_is_reported_as_such_not_blamed_on_the_student():
    def broken(value):
        raise KeyError("oops")
    result = core.evaluate(core.Task("99.1", 1, "x", "broken", broken), 1)
    assert not result.passed and result.check_error and "not your fault" in result.message


# ----------------------------------------------------------------------------- check() itself

def test_check_prints_and_records(capsys):
    checks.results.clear()
    checks.check("01.3", lambda channel, height, width, per_row, gap=1:
                 ((channel // per_row) * (height + gap), (channel % per_row) * (width + gap)))
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


def test_a_task_id_without_its_leading_zero_is_named_as_meant():
    for given in ("3.1", 3.1, "1.4"):
        with pytest.raises(ValueError, match=r"Did you mean '0\d\.\d'\?"):
            checks.check(given, None)
    with pytest.raises(ValueError, match="Tasks:"):   # nothing to suggest for a task that does not exist
        checks.check("3.9", None)


@pytest.mark.parametrize("task_id", CHOICE_TASKS)
def test_letters_run_together_in_one_string_are_told_to_make_a_set(task_id):
    result = outcome(task_id, "ace")
    assert not result.passed and not result.check_error and "set" in result.message and "one string" in \
        result.message, result.message
    assert "not options" not in result.message


def test_grade_reads_the_answer_from_a_namespace():
    assert checks.grade("01.4", {"true_statements": {"a", "c", "e"}})["passed"] is True
    missing = checks.grade("01.4", {"something_else": {"a", "c", "e"}})
    assert missing["passed"] is False and "true_statements" in missing["message"]


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


def test_the_task_tables_load_without_tensorflow():
    code = ("import sys, coursekit.checks as c\n"
            "print(*[sum(t.points for t in c.tasks(n)) for n in c.lessons()],"
            " 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["10"] * len(LESSONS) + ["False", "False"], result.stderr


# ----------------------------------------------------------------------------- numbers the checks accept

def test_scaled_maps_match_takes_the_usual_guard_against_zero_and_nothing_else():
    rng = np.random.default_rng(0)
    positive = np.maximum(rng.normal(size=(3, 5, 6)), 0) * np.array([1e-4, 3e-3, 0.0]).reshape(-1, 1, 1)
    peaks = positive.max(axis=(1, 2), keepdims=True)
    right = positive / np.where(peaks > 0, peaks, 1)
    assert core.scaled_maps_match(right, positive)
    for epsilon in (1e-12, 1e-7, 1e-5):   # 1e-5 is a tenth of the smallest peak here: 9% off at plain equality
        assert core.scaled_maps_match(positive / (peaks + epsilon), positive), epsilon
        assert core.scaled_maps_match((positive / (peaks + epsilon)).astype(">f4"), positive), epsilon
    assert not core.close(positive / (peaks + 1e-5), right, 1e-3)    # what the checks compared before
    assert not core.scaled_maps_match(positive / (peaks + 1e-3), positive)        # not a small guard
    assert not core.scaled_maps_match(positive / positive.max(), positive)        # the batch's maximum
    assert not core.scaled_maps_match(positive, positive)                         # not scaled
    assert not core.scaled_maps_match(np.where(np.isfinite(right), right, np.nan) * np.nan, positive)


def test_int_tuples_come_as_tuples_lists_arrays_or_tensors():
    import tensorflow as tf
    for value in ((3, 1, -2), [3, 1, -2], np.array([3, 1, -2]), np.array([3.0, 1.0, -2.0], dtype=">f8"),
                  tf.constant([3, 1, -2])):
        assert core.as_int_tuple(value, 3, "x") == (3, 1, -2)
    with pytest.raises(core.Hint, match="tuple of 3 integers; got an array of shape \\(2, 3\\)"):
        core.as_int_tuple(np.zeros((2, 3)), 3, "x")


# ----------------------------------------------------------------------------- the one model rule

def test_every_keras_model_is_a_model_and_the_grader_builds_only_keras_own():
    import keras

    from coursekit.checks import model_rule
    inputs = keras.Input((6, 6, 2))
    maps = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    plain = keras.Model(inputs, [maps])
    named = keras.Model(inputs, [keras.layers.Lambda(lambda t: t, name="conv_out")(maps)])

    class Wrapper(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, images):
            return self.inner(images)

    for model in (plain, named, Wrapper(plain)):
        assert model_rule.is_model(model)
    assert not any(model_rule.is_model(value) for value in (lambda x: x, np.zeros(3), "model", None))
    assert model_rule.grader_can_build(plain)
    assert not model_rule.grader_can_build(named) and not model_rule.grader_can_build(Wrapper(plain))
    assert model_rule.foreign_classes(keras.saving.serialize_keras_object(named)) == ["keras.layers.Lambda"]


def test_check_01_1_accepts_models_the_grader_calls_in_the_kernel_and_names_no_internal_class():
    """In the grader such models are stand-ins (remote.RemoteFunction) named like the student's
    object; a function where a model should be says so in the student's terms."""
    import keras

    from coursekit.tools import remote

    class Activations(remote.RemoteFunction):   # as KernelLink._function makes it, called here not in a kernel
        remote_model = True

        def __init__(self, model, layer_names):
            self.sub = keras.Model(model.inputs, [model.get_layer(name).output for name in layer_names])

        def __call__(self, images):
            return self.sub(images)

    assert outcome("01.1", Activations).passed

    function = type("function", (remote.RemoteFunction,), {"__init__": lambda self, *args: None})
    result = outcome("01.1", lambda model, layer_names: function())
    assert not result.passed and "returned a function" in result.message and "Remote" not in result.message


# ----------------------------------------------------------------------------- no retracing warnings

def test_checks_run_again_and_again_in_one_kernel_make_tensorflow_warn_of_no_retracing():
    """coursekit compiles one step per model, and every check draws a new model: TensorFlow warned
    of retracing after five checks of 02.2, 03.1, 03.3, 04.2, 07.2 or 08.2 in one kernel."""
    import io
    import logging
    import sys as system
    system.path.insert(0, str(Path(__file__).parent))
    import test_checks_02_04
    import test_checks_07
    import test_checks_08
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        for task_id, answer in [("04.2", test_checks_02_04.grad_cam_map), ("03.1", test_checks_02_04.saliency_map),
                                ("07.2", test_checks_07.deletion_scores), ("08.2", test_checks_08.nested_grad_cam)]:
            for _ in range(6):
                assert outcome(task_id, answer).passed
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert "retracing" not in stream.getvalue(), stream.getvalue()[:500]


# ----------------------------------------------------------------------------- task texts

FORBIDDING = re.compile(r"(?:rather than|instead of|without|(?:do )?not|never|n't)\s+(?:call(?:ing)?|us(?:e|ing))\s+"
                        r"`(?:coursekit\.)?([\w.]+)(?:\(\))?`", re.IGNORECASE)


@pytest.mark.parametrize("lesson", LESSONS)
def test_a_task_text_forbids_only_what_its_check_enforces(lesson):
    """A task that tells students not to call a function makes it cost points (``from_scratch``);
    07.1 said "rather than calling scipy.stats.spearmanr" and an answer calling it got full points."""
    solutions = Path(__file__).resolve().parents[1] / "solutions"
    notebook = json.loads(next(solutions.glob(f"{lesson}_*.ipynb")).read_text())
    task = None
    for cell in notebook["cells"]:
        text = "".join(cell["source"])
        heading = re.search(r"^## Task (\d\d\.\d+)", text, re.M)
        task = checks.find(heading.group(1)) if heading else task
        if cell["cell_type"] != "markdown" or task is None:
            continue
        for name in FORBIDDING.findall(" ".join(text.split())):
            assert name in task.from_scratch, f"{task.id}'s text forbids {name}, which its check does not enforce"
