"""python -m coursekit.checks list | key TASK LETTER..."""
from __future__ import annotations

import argparse
import sys

from . import __doc__ as package_doc
from . import lessons, tasks
from .core import TASK_ID, choice_key


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.checks", description=package_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every task with its points and answer name")
    key = commands.add_parser("key", help="the key of a multiple-choice answer")
    key.add_argument("task")
    key.add_argument("letters", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "list":
        for lesson in lessons():
            for t in tasks(lesson):
                print(f"{t.id}  {t.points} pt  {t.answer:<28} {t.title}")
        return 0
    if not TASK_ID.match(args.task):
        parser.error(f"task ids look like 01.4; got {args.task!r}")
    letters = {letter.strip().lower() for item in args.letters for letter in item.replace(",", " ").split()}
    print(choice_key(args.task, letters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
