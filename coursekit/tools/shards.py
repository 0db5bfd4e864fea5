"""One batch graded in parts, on as many machines as you like, and the parts joined into one table.

    python -m coursekit.tools.grade submissions/*.ipynb --lesson 04 --shard 2/3 --out shard-2.csv
    python -m coursekit.tools.grade merge shard-1.csv shard-2.csv shard-3.csv --out grades.csv

``--shard K/N`` (1 <= K <= N) grades the files of the batch whose bytes fall in part K of N: the
part is the SHA-256 of the file's contents modulo N, so it does not depend on the files' names,
their order, the machine or the time (a file that cannot be read goes to part 1, where it gets
its ``invalid`` row). Every part is given the whole batch, as one run would be. Beside its table,
each part writes ``<out>.shard.json``: the split, the grading options, and every file of the
batch (name, hash, part) in the order given.

``merge`` joins the parts' tables into exactly the table one run over the whole batch would have
written: the same rows in the same order (the batch's), the same columns (the tasks of every
part, in the grader's order) and points; only the ``seconds`` each submission took differ. It
refuses, saying which file and what to do: a table or its ``.shard.json`` that is missing, a
part given twice or missing, parts of different batches (other files or other bytes), splits or
grading options, a table whose rows are not its part's (an overlap, or a run that was interrupted
or is still running), and tables whose columns disagree (another lesson or another grader).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .files import write_atomically
from .safe_text import spreadsheet_cell

MANIFEST_FORMAT = "coursekit-shard/1"
MANIFEST_SUFFIX = ".shard.json"
SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
TASK_COLUMN = re.compile(r"^\d\d\.\d+$")        # a task id such as 04.2 (coursekit.checks.core.TASK_ID)
# Options of the grader that change what a table holds: every part must have been graded with the same.
GRADING_OPTIONS = ("lesson", "timeout", "check_timeout", "profile", "keys", "memory_mb", "processes",
                   "cpu_seconds", "no_sandbox")
NOT_FINISHED = ("interrupted",)                  # statuses of a part that did not run to its end


class ShardError(ValueError):
    """A split or a merge that cannot be done as asked; the message says what to change."""


# ----------------------------------------------------------------------------- the split

def parse_spec(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)`` with 1 <= K <= N, or :class:`ShardError` naming what came in."""
    found = SPEC.match(str(text))
    if not found:
        raise ShardError(f"--shard takes K/N, such as 1/3 (part 1 of 3), not {text!r}")
    part, parts = int(found.group(1)), int(found.group(2))
    if parts < 1 or not 1 <= part <= parts:
        raise ShardError(f"--shard {text}: the part K must be 1 to N (here N = {parts}), such as 1/{max(parts, 1)}")
    return part, parts


def spec_argument(text: str) -> tuple[int, int]:
    """:func:`parse_spec` for argparse, whose error then names the option and the message."""
    try:
        return parse_spec(text)
    except ShardError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def file_digest(path: Path) -> str:
    """The SHA-256 of the file's bytes (hex), or ``""`` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def part_of(digest: str, parts: int) -> int:
    """The part (1 to ``parts``) of a file whose bytes hash to ``digest``; unreadable files go to part 1."""
    return int(digest, 16) % parts + 1 if digest else 1


def file_name(path: Path) -> str:
    """The path as the grader's table writes it (coursekit.tools.grade.printable)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def batch_entries(paths: list[Path], parts: int) -> list[dict]:
    """Every file of the batch, in the order given: its name, hash and part."""
    entries = []
    for path in paths:
        digest = file_digest(path)
        entries.append({"file": file_name(path), "sha256": digest, "part": part_of(digest, parts)})
    return entries


def grading_options(options: dict) -> dict:
    """The options in :data:`GRADING_OPTIONS` (a key file as its hash: paths differ between machines)."""
    chosen = {}
    for name in GRADING_OPTIONS:
        value = options.get(name)
        chosen[name] = f"sha256:{file_digest(value)}" if isinstance(value, Path) else value
    return chosen


def manifest_path(table: Path) -> Path:
    return table.with_name(table.name + MANIFEST_SUFFIX)


def start(paths: list[Path], spec: tuple[int, int], out: Path, options: dict) -> list[Path]:
    """The files of part ``spec`` of the batch, in the order given; writes ``out``'s manifest and an
    empty table (a part may hold no file; the grader replaces the table after each submission)."""
    part, parts = spec
    entries = batch_entries(list(paths), parts)
    chosen = [path for path, entry in zip(paths, entries) if entry["part"] == part]
    manifest = {"format": MANIFEST_FORMAT, "part": part, "parts": parts, "options": grading_options(options),
                "batch": entries}
    write_atomically(manifest_path(out), json.dumps(manifest, indent=1) + "\n")
    from .grade import write_csv  # here, not above: the grader imports this module
    write_csv([], out)
    print(f"Shard {part}/{parts}: {len(chosen)} of the batch's {len(entries)} file(s), chosen by the hash of "
          f"their bytes; join the parts with: python -m coursekit.tools.grade merge ... --out grades.csv", flush=True)
    return chosen


# ----------------------------------------------------------------------------- the merge

@dataclass
class Part:
    """A part's table (rows of raw cells, as written) and its manifest."""
    path: Path
    header: list[str]
    rows: list[list[str]]
    manifest: dict

    @property
    def tasks(self) -> list[str]:
        return [column for column in self.header[1:] if TASK_COLUMN.match(column)]

    @property
    def fixed(self) -> list[str]:
        """The columns other than the tasks: the file before them, the rest after."""
        return [column for column in self.header if not TASK_COLUMN.match(column)]

    @property
    def label(self) -> str:
        return f"{self.path} (part {self.manifest['part']}/{self.manifest['parts']})"


def read_part(path: Path) -> Part:
    """A part's table and its manifest, or :class:`ShardError` saying which is missing or wrong."""
    if not path.is_file():
        raise ShardError(f"{path}: no such file (a part's table, written by grade --shard K/N --out {path})")
    manifest_file = manifest_path(path)
    try:
        manifest = json.loads(manifest_file.read_text())
    except FileNotFoundError:
        raise ShardError(f"{manifest_file} is missing: merge joins tables written with --shard K/N, each with "
                         f"its {MANIFEST_SUFFIX} beside it; copy it with the table") from None
    except (OSError, ValueError) as error:
        raise ShardError(f"{manifest_file} cannot be read ({error}): grade that part again") from None
    if not valid_manifest(manifest):
        raise ShardError(f"{manifest_file} is not a shard manifest ({MANIFEST_FORMAT}): grade that part again")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ShardError(f"{path} cannot be read as a grade table ({error}): grade that part again") from None
    if not rows or rows[0][:1] != ["file"] or "total" not in rows[0]:
        raise ShardError(f"{path} is not a grade table (its first column must be 'file', and it needs 'total')")
    part = Part(path, rows[0], rows[1:], manifest)
    if part.header[1:1 + len(part.tasks)] != part.tasks:
        raise ShardError(f"{path}: its task columns are not together after 'file'; is it a grade table?")
    return part


def valid_manifest(manifest) -> bool:
    """Whether ``manifest`` has the fields :func:`start` writes, of the right types."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return False
    part, parts, batch = manifest.get("part"), manifest.get("parts"), manifest.get("batch")
    return (isinstance(part, int) and isinstance(parts, int) and 1 <= part <= parts
            and isinstance(manifest.get("options"), dict) and isinstance(batch, list)
            and all(isinstance(entry, dict) and isinstance(entry.get("file"), str)
                    and isinstance(entry.get("sha256"), str) and isinstance(entry.get("part"), int) for entry in batch))


def check_same_batch(parts: list[Part]) -> None:
    """Every part split the same batch, the same way, with the same grading options."""
    first = parts[0]
    for other in parts[1:]:
        for key, what in (("parts", "split into a different number of parts"),
                          ("options", "graded with different options"), ("batch", "given a different batch")):
            if other.manifest.get(key) != first.manifest.get(key):
                raise ShardError(f"{other.label} and {first.label} were {what}: {difference(key, first, other)}; "
                                 "grade every part with the same command, only K changing")


def difference(key: str, first: Part, other: Part) -> str:
    """What differs between two manifests' ``key``, in words."""
    a, b = first.manifest.get(key), other.manifest.get(key)
    if key == "options" and isinstance(a, dict) and isinstance(b, dict):
        return ", ".join(f"{name}: {a.get(name)!r} and {b.get(name)!r}" for name in sorted(set(a) | set(b))
                         if a.get(name) != b.get(name))
    if key == "batch" and isinstance(a, list) and isinstance(b, list):
        for left, right in zip(a, b):
            if left != right:
                what = "other bytes (a file changed between the runs)" if left["file"] == right["file"] else "other files"
                return f"{left['file']} and {right['file']}: {what}"
        return f"{len(a)} and {len(b)} files"
    return f"{a!r} and {b!r}"


def check_every_part_once(parts: list[Part]) -> None:
    """Parts 1 to N, each once."""
    seen: dict[int, Part] = {}
    for part in parts:
        number = part.manifest["part"]
        if number in seen:
            raise ShardError(f"{part.label} and {seen[number].label} are the same part: their rows overlap; "
                             "give each part once")
        seen[number] = part
    count = parts[0].manifest["parts"]
    missing = [str(k) for k in range(1, count + 1) if k not in seen]
    if missing:
        raise ShardError(f"part(s) {', '.join(missing)} of {count} missing: pass every part's table "
                         f"(a part with no file still writes one)")


def check_rows(part: Part) -> None:
    """The table holds its part's files, each once, in the batch's order, and every one finished."""
    expected = [entry["file"] for entry in part.manifest["batch"] if entry["part"] == part.manifest["part"]]
    found = [row[0] for row in part.rows]
    if len(found) != len(expected) or not all(same_file(cell, name) for cell, name in zip(found, expected)):
        raise ShardError(f"{part.label} has {len(found)} row(s) where its part of the batch has {len(expected)} "
                         f"file(s){first_mismatch(found, expected)}: its run was interrupted, is still running, or "
                         "its rows overlap another part's; grade that part again")
    status = part.header.index("status") if "status" in part.header else None
    unfinished = [row[0] for row in part.rows if status is not None and row[status] in NOT_FINISHED]
    if unfinished:
        raise ShardError(f"{part.label}: {len(unfinished)} submission(s) interrupted ({unfinished[0]}, ...); "
                         "grade that part again")


def same_file(cell: str, name: str) -> bool:
    """Whether a table's file cell is ``name``: as written, or made inert for a spreadsheet."""
    return cell in (name, spreadsheet_cell(name))


def first_mismatch(found: list[str], expected: list[str]) -> str:
    for cell, name in zip(found, expected):
        if not same_file(cell, name):
            return f" ({cell!r} where {name!r} was expected)"
    return ""


def task_order(task_id: str) -> tuple[str, int]:
    """The grader's column order (coursekit.tools.grade.task_columns): by lesson, then task number."""
    return task_id[:2], int(task_id.split(".")[1])


def merged_columns(parts: list[Part]) -> tuple[list[str], list[str]]:
    """``(tasks, fixed)``: every part's tasks in the grader's order, and the other columns, which
    must be the same in every part; a lesson's tasks must be the same wherever they appear."""
    first = parts[0]
    for part in parts[1:]:
        if part.fixed != first.fixed:
            raise ShardError(f"{part.label} has the columns {part.fixed}, {first.label} {first.fixed}: they were "
                             "written by different graders; grade every part with the same coursekit")
    by_lesson: dict[str, tuple[list[str], Part]] = {}
    for part in parts:
        for lesson in sorted({task[:2] for task in part.tasks}):
            tasks = [task for task in part.tasks if task[:2] == lesson]
            known = by_lesson.setdefault(lesson, (tasks, part))
            if known[0] != tasks:
                raise ShardError(f"lesson {lesson}'s task columns differ: {tasks} in {part.label}, {known[0]} in "
                                 f"{known[1].label}; grade every part with the same coursekit")
    lesson = first.manifest["options"].get("lesson")
    others = sorted(set(by_lesson) - {lesson}) if lesson else []
    if others:
        raise ShardError(f"the batch was graded as lesson {lesson} but the tables hold lesson(s) {', '.join(others)}'s "
                         "task columns; these are not this batch's tables")
    tasks = sorted((task for tasks, _ in by_lesson.values() for task in tasks), key=task_order)
    return tasks, first.fixed


def merge(paths: list[Path]) -> list[list[str]]:
    """The table (header first) one run over the parts' whole batch would have written."""
    if len(set(map(os.path.realpath, paths))) != len(paths):
        raise ShardError("the same table is given twice: its rows would overlap; give each part once")
    parts = [read_part(Path(path)) for path in paths]
    check_same_batch(parts)
    check_every_part_once(parts)
    for part in parts:
        check_rows(part)
    tasks, fixed = merged_columns(parts)
    header = [fixed[0], *tasks, *fixed[1:]]
    rows_by_index: dict[int, list[str]] = {}
    for part in parts:
        indices = [i for i, entry in enumerate(part.manifest["batch"]) if entry["part"] == part.manifest["part"]]
        for index, row in zip(indices, part.rows):
            cells = dict(zip(part.header, row))
            rows_by_index[index] = [cells.get(column, "") for column in header]
    return [header, *(rows_by_index[i] for i in sorted(rows_by_index))]


def table_text(rows: list[list[str]]) -> str:
    """Rows as the grader writes them (Python's csv, its default dialect)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def main(argv=None, prog: str = "python -m coursekit.tools.grade merge") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="+", type=Path, help="every part's table (grade --shard K/N --out TABLE)")
    parser.add_argument("--out", required=True, type=Path, help="the joined table to write (e.g. grades.csv)")
    args = parser.parse_args(argv)
    inputs = {os.path.realpath(path) for table in args.tables for path in (table, manifest_path(table))}
    if os.path.realpath(args.out) in inputs:
        parser.error(f"--out {args.out} is one of the inputs; choose another file name")
    try:
        rows = merge(args.tables)
    except ShardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_atomically(args.out, table_text(rows))
    print(f"Wrote {args.out}: {len(rows) - 1} row(s) from {len(args.tables)} part(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m coursekit.tools.shards"))
