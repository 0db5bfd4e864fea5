"""The checks machinery, and what every lesson's checks promise: tasks worth 10 points, a
stub or a wrong kind of answer gets a hint (never a crash of the check), an object equal to
everything passes nothing, multiple-choice keys are hashes, and the task table loads without
TensorFlow. Each lesson's right and wrong answers are in tests/test_checks_NN.py."""
import ast
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
