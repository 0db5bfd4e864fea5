"""Write the student exercise notebooks (``exercises/``) from the solutions (``solutions/``).

    python -m coursekit.tools.exercises build           # write exercises/NN_*.ipynb, refresh README table
    python -m coursekit.tools.exercises build --check   # change nothing; exit 1 if exercises/ is stale

For every ``solutions/NN_<lesson>.ipynb``:

* code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``# YOUR CODE HERE`` and
  ``raise NotImplementedError()`` at the same indentation (in markdown: ``YOUR ANSWER HERE``);
* cells tagged ``solution-only`` are left out;
* outputs and execution counts are cleared;
* cells that raise until the student answers are tagged ``raises-exception`` (so that
  ``pytest --nbval-lax exercises/`` runs them): cells with a solution region at the top level,
  and cells the author tagged ``uses-answer`` (they call a student's function);
* the badge cell points at the exercise notebook, and the notebook's metadata names its lesson.

The build also checks the solution against the lesson's checks module: every ``check("NN.k",
name)`` call names a registered task and the task's answer, and every task has its check cell.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from .. import checks
from . import course

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = "YOUR ANSWER HERE"
SOLUTION_ONLY, USES_ANSWER, RAISES = "solution-only", "uses-answer", "raises-exception"
CHECK_CALL = checks.core.CHECK_CALL


class SolutionError(ValueError):
    """A solution notebook breaks a rule of the exercise format; the message names the cell."""


def strip_solutions(source: str, markdown: bool = False, where: str = "") -> tuple[str, list[int]]:
    """``source`` with every solution region replaced by its stub; also the regions' indentations."""
    lines, out, indents = source.splitlines(), [], []
    inside = None
    for number, line in enumerate(lines, start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside is not None:
                raise SolutionError(f"{where}: line {number} opens a solution inside another one.")
            inside = line[:len(line) - len(line.lstrip())]
            indents.append(len(inside))
            out.extend([inside + MARKDOWN_STUB] if markdown else [inside + stub for stub in CODE_STUB])
        elif marker == END:
            if inside is None:
                raise SolutionError(f"{where}: line {number} closes a solution that was never opened.")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise SolutionError(f"{where}: a solution region has no {END!r}.")
    return "\n".join(out), indents


def lesson_number(path: Path) -> str:
    lesson = checks.core.lesson_of_file_name(path.name)
    if lesson is None:
        raise SolutionError(f"{path.name}: solution notebooks are named NN_<lesson>.ipynb.")
    return lesson


def exercise_from_solution(solution, relative_path: str | Path, lesson: str, course_: course.Course):
    """The student version of the solution notebook ``solution`` (a new notebook)."""
    notebook = nbformat.from_dict(solution)  # a deep copy
    cells, regions = [], 0
    for position, cell in enumerate(notebook.cells, start=1):
        tags = list(cell.get("metadata", {}).get("tags", []))
        if SOLUTION_ONLY in tags:
            continue
        where = f"{relative_path}, cell {position}"
        source, indents = strip_solutions(cell.source, markdown=cell.cell_type == "markdown", where=where)
        regions += len(indents)
        if indents:
            cell.source = source
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if (0 in indents or USES_ANSWER in tags) and RAISES not in tags:
                tags.append(RAISES)
        cell.metadata = {key: value for key, value in cell.metadata.items() if key not in ("execution", "tags")}
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)
    if not regions:
        raise SolutionError(f"{relative_path}: no {BEGIN!r} region: nothing for students to do.")
    notebook.cells = cells
    notebook.metadata["coursekit"] = {"lesson": lesson}
    course.apply(notebook, relative_path, course_)
    return notebook


def validate_checks(solution, path: Path, lesson: str) -> None:
    """Every check call names a task of ``lesson`` and its answer; every task has a check cell."""
    tasks = {task.id: task for task in checks.tasks(lesson)}
    seen: dict[str, int] = {}
    for position, cell in enumerate(solution.cells, start=1):
        if cell.cell_type != "code":
            continue
        for match in CHECK_CALL.finditer(cell.source):
            task_id, answer = match.group("task"), match.group("answer")
            where = f"{path.name}, cell {position}"
            if task_id not in tasks:
                raise SolutionError(f"{where}: check({task_id!r}, ...) but coursekit/checks/lesson{lesson}.py "
                                    f"registers only {sorted(tasks)}.")
            if answer != tasks[task_id].answer:
                raise SolutionError(f"{where}: check({task_id!r}, {answer}) but the task's answer is named "
                                    f"{tasks[task_id].answer!r} in coursekit/checks/lesson{lesson}.py; "
                                    "the grader looks the answer up by that name.")
            if BEGIN in cell.source:
                raise SolutionError(f"{where}: keep the check call in a cell of its own, after the solution.")
            seen[task_id] = seen.get(task_id, 0) + 1
    missing = sorted(set(tasks) - set(seen))
    doubled = sorted(task_id for task_id, count in seen.items() if count > 1)
    if missing:
        raise SolutionError(f"{path.name}: no check cell for task(s) {missing}; add `check(\"{missing[0]}\", "
                            f"{tasks[missing[0]].answer})` under the task.")
    if doubled:
        raise SolutionError(f"{path.name}: task(s) {doubled} are checked more than once.")


def build(root: str | Path = ".", check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) every exercise notebook; return the stale paths."""
    root = Path(root)
    course_ = course.Course.load(root)
    solutions_dir, exercises_dir = root / "solutions", root / "exercises"
    wanted: dict[Path, str] = {}
    for path in sorted(solutions_dir.glob("*.ipynb")):
        lesson = lesson_number(path)
        solution = nbformat.read(path, as_version=4)
        validate_checks(solution, path, lesson)
        target = exercises_dir / path.name
        exercise = exercise_from_solution(solution, target.relative_to(root).as_posix(), lesson, course_)
        wanted[target] = nbformat.writes(exercise) + "\n"
    stale = [target for target, text in wanted.items()
             if not target.exists() or target.read_text() != text]
    orphans = [path for path in sorted(exercises_dir.glob("[0-9][0-9]_*.ipynb")) if path not in wanted]
    if not check:
        exercises_dir.mkdir(exist_ok=True)
        for target in stale:
            target.write_text(wanted[target])
        for orphan in orphans:
            orphan.unlink()
        course.sync(root)  # the README lesson table links the exercises
    return [str(path.relative_to(root)) for path in [*stale, *orphans]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.exercises", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if exercises/ is out of date")
    parser.add_argument("--root", default=".", help="repository root (default: here)")
    args = parser.parse_args(argv)
    try:
        stale = build(args.root, check=args.check)
    except (SolutionError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check and stale:
        print("exercises/ is out of date with solutions/ (run `make exercises`):\n  " + "\n  ".join(stale))
        return 1
    if args.check:
        print("exercises/ is up to date.")
    else:
        print(("Wrote: " + ", ".join(stale)) if stale else "exercises/ was already up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
