"""Multiple-choice keys kept by the instructor, outside the course.

    python -m coursekit.tools.keys make --out ~/grading/keys.json [--lesson NN ...] [--solutions solutions/]
    python -m coursekit.tools.keys strip [--root .]

By default coursekit holds each multiple-choice key as a hash, so that ``check()`` answers right
or wrong at once; with a handful of options a student can try every selection (or every hash)
until one is right. To close that, the instructor keeps the keys apart:

1. ``make`` writes a key file (JSON) with the right letters of every multiple-choice task, taken
   from the keys coursekit holds (each hash is matched against every selection of its options)
   or, for a key no longer there, from the solution notebooks. Keep it outside the course's folder
   (it refuses to write inside it): whatever is in the course reaches the students.
2. ``strip`` replaces every ``key="..."`` in the course's ``coursekit/checks/lessonNN.py`` by
   ``key=None``: publish that version. ``check()`` then says only that an answer is well-formed
   and recorded.
3. Grade with ``python -m coursekit.tools.grade ... --keys ~/grading/keys.json``.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import re
import sys
from pathlib import Path

import nbformat

from .. import checks
from ..checks.core import CHOICES, choice_key

FORMAT = "coursekit-choice-keys"
_KEY = re.compile(r"""(\bkey\s*=\s*)(["'])[0-9a-f]{64}\2""")


def letters_from_hash(task_id: str) -> list[str] | None:
    """The letters whose :func:`choice_key` is the hash coursekit holds for ``task_id`` (None: no hash)."""
    choice = CHOICES[task_id]
    if choice.key is None:
        return None
    for size in range(1, len(choice.options) + 1):
        for letters in itertools.combinations(sorted(choice.options), size):
            if choice_key(task_id, letters) == choice.key:
                return list(letters)
    raise ValueError(f"the key coursekit holds for {task_id} matches no selection of {choice.options!r}")


def letters_from_solutions(task_id: str, folder: Path) -> list[str] | None:
    """The letters the solution notebook of ``task_id``'s lesson assigns to the task's answer."""
    task = checks.find(task_id)
    for path in sorted(folder.glob(f"{task.lesson}_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type != "code" or "### BEGIN SOLUTION" not in cell.source:
                continue
            solved = cell.source.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
            found = re.search(rf"^\s*{re.escape(task.answer)}\s*=\s*(.+)$", solved, flags=re.M)
            if found:
                return sorted(CHOICES[task_id].letters(ast.literal_eval(found.group(1).strip())))
    return None


def course_root() -> Path:
    return Path(checks.__file__).resolve().parents[2]


def make(out: Path, lessons: list[str], solutions: Path | None) -> dict[str, list[str]]:
    """Write the key file ``out`` for the multiple-choice tasks of ``lessons``; returns its keys."""
    root = course_root()
    if out.resolve().is_relative_to(root):
        raise ValueError(f"{out} is inside the course ({root}): keep the key file where students cannot get it")
    keys = {}
    for lesson in lessons:
        for task in checks.tasks(lesson):
            if task.id not in CHOICES:
                continue
            letters = letters_from_hash(task.id)
            if letters is None and solutions is not None:
                letters = letters_from_solutions(task.id, solutions)
            if letters is None:
                raise ValueError(f"no key for {task.id}: coursekit holds none; pass --solutions with its solution")
            keys[task.id] = letters
    out.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump({"format": FORMAT, "keys": keys}, file, indent=1, sort_keys=True)
    return keys


def strip(root: Path) -> list[Path]:
    """Replace every multiple-choice hash in ``root``'s ``coursekit/checks/lesson*.py`` by None."""
    changed = []
    for path in sorted((root / "coursekit" / "checks").glob("lesson*.py")):
        text = path.read_text(encoding="utf-8")
        new = _KEY.sub(r"\1None", text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make_parser = commands.add_parser("make", help="write the key file")
    make_parser.add_argument("--out", type=Path, required=True, help="the key file, outside the course")
    make_parser.add_argument("--lesson", action="append", help="NN (repeat it); default: every lesson")
    make_parser.add_argument("--solutions", type=Path, help="the solution notebooks, for keys coursekit no longer holds")
    strip_parser = commands.add_parser("strip", help="remove the keys from the course's checks")
    strip_parser.add_argument("--root", type=Path, default=course_root(), help="the course's folder (default: this one)")
    args = parser.parse_args(argv)
    if args.command == "make":
        try:
            keys = make(args.out, args.lesson or checks.lessons(), args.solutions)
        except ValueError as error:
            print(f"keys: {error}", file=sys.stderr)
            return 1
        print(f"Wrote {len(keys)} key(s) to {args.out}: grade with --keys {args.out}")
        return 0
    changed = strip(args.root)
    print(f"Removed the keys from {len(changed)} file(s)" + "".join(f"\n  {path}" for path in changed)
          + "\ncheck() in these notebooks now only records multiple-choice answers; grade them with --keys.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
