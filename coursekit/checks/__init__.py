"""Instant feedback for the exercise notebooks: ``check("01.2", my_answer)``.

Each lesson's tasks live in a module of their own, ``lessonNN.py`` (``lesson01.py`` for the
exercises of lesson 01), which registers them with :func:`core.task`. A check compares the
student's object with the reference in coursekit on fresh random inputs, prints a pass or a hint,
and records the outcome in :data:`results`. ``python -m coursekit.tools.grade`` re-runs the same checks
itself after executing a submission, so what a notebook prints earns nothing.

    python -m coursekit.checks list             # every task, its points and the answer's name
    python -m coursekit.checks key 01.4 a c     # the key to store for a multiple-choice answer
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

from .core import MISSING, TASKS, Hint, Outcome, Task, evaluate  # noqa: F401

results: dict[str, Outcome] = {}
"""The latest outcome of every task checked in this kernel, by task id."""


def lessons() -> list[str]:
    """Lesson numbers ("01", ...) that have a checks module."""
    return sorted(info.name[len("lesson"):] for info in pkgutil.iter_modules(__path__)
                  if info.name.startswith("lesson") and info.name[len("lesson"):].isdigit())


def tasks(lesson: str) -> list[Task]:
    """The tasks of ``lesson`` ("01"), in the order they were registered."""
    lesson = f"{int(lesson):02d}" if str(lesson).isdigit() else str(lesson)
    try:
        importlib.import_module(f"{__name__}.lesson{lesson}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.lesson{lesson}":
            raise
        raise ValueError(f"No checks for lesson {lesson!r}; lessons with checks: {lessons()}. "
                         "An older coursekit? Re-run the notebook's setup cell.") from None
    return [t for t in TASKS.values() if t.lesson == lesson]


def find(task_id: str) -> Task:
    """The task ``task_id`` ("03.1"); a ValueError that lists the tasks, or names the one meant
    ("3.1" for "03.1"), for anything else."""
    task_id = str(task_id).strip()
    lesson = task_id.split(".")[0]
    known = tasks(lesson) if lesson.isdigit() and len(lesson) == 2 else []
    for candidate in known:
        if candidate.id == task_id:
            return candidate
    meant = _meant(task_id)
    if meant is not None:
        raise ValueError(f"No task {task_id!r}: task ids have two digits before the dot. "
                         f"Did you mean {meant!r}? Write check({meant!r}, ...).")
    names = [t.id for t in known] or [f"{n}.1" for n in lessons()]
    raise ValueError(f"No task {task_id!r}. Tasks: {', '.join(names)}.")


def _meant(task_id: str) -> str | None:
    """The task id that ``task_id`` stands for with its lesson written otherwise ("3.1", "003.1")."""
    parts = task_id.split(".")
    if len(parts) != 2 or not all(part.isdigit() for part in parts) or not 0 < int(parts[0]) < 100:
        return None
    candidate = f"{int(parts[0]):02d}.{int(parts[1])}"
    if candidate == task_id or f"{int(parts[0]):02d}" not in lessons():
        return None
    return candidate if any(t.id == candidate for t in tasks(candidate[:2])) else None


def check(task_id: str, value: Any) -> None:
    """Check your answer to task ``task_id``; prints a pass or a hint and records the outcome."""
    outcome = evaluate(find(task_id), value)
    results[outcome.task] = outcome
    print(outcome.text())


def grade(task_id: str, namespace: dict) -> dict:
    """What the grader runs inside a submission's kernel: the outcome of one task, as a dict.

    ``namespace`` is the notebook's global namespace; the answer is looked up by the task's name.
    """
    found = find(task_id)
    return dataclasses.asdict(evaluate(found, namespace.get(found.answer, MISSING)))


def summary(lesson: str | None = None) -> None:
    """Print every task of ``lesson`` (default: the lessons checked so far) and its points."""
    chosen = [lesson] if lesson else sorted({task_id[:2] for task_id in results})
    if not chosen:
        print("No task checked yet: run the check cell under each task.")
        return
    for number in chosen:
        earned = total = 0
        for t in tasks(number):
            outcome = results.get(t.id)
            state = "not checked" if outcome is None else ("passed" if outcome.passed else "not yet")
            points = outcome.points if outcome else 0
            earned, total = earned + points, total + t.points
            print(f"{t.id}  {t.title:<52} {state:<12} {points}/{t.points}")
        print(f"Lesson {number}: {earned}/{total} points (the instructor's grader re-checks every task).")
