"""The grader's table as a gradebook: one row per student of a roster, in Canvas', Moodle's or a long format.

    python -m coursekit.tools.grade export grades.csv --roster roster.csv --format canvas \\
        --assignment "Lesson 04" --out canvas.csv

(or ``python -m coursekit.tools.export`` with the same arguments).

``grades.csv`` is what ``python -m coursekit.tools.grade`` wrote (one row per submitted file).
The roster is a CSV file with a header row and one row per student:

* ``student_id`` (required): the institution's identifier (Canvas' *SIS User ID*, Moodle's *ID number*);
* ``file`` (required): the name of the file the student handed in, or a pattern such as
  ``*kim_lee*`` (``*`` any text, ``?`` one character; case is ignored; a pattern with a ``/``
  is matched against the whole path in ``grades.csv``, otherwise against the file's name);
* ``name``, ``email`` (optional), and for Canvas ``canvas_id``, ``login_id``, ``section`` (optional).

Every student of the roster gets a row. A student whose pattern matches no file gets a blank
score, or 0 with ``--missing zero``; a file that matches no student is listed (on the screen and
in ``<out>-unmatched.csv``), never dropped silently; a file that matches two students, or a
student whose pattern matches two files, is an error that names them. A submission whose grading
did not finish (``grader-error``, ``interrupted``) gets a blank score and is listed for regrading.
Every text cell is safe in a spreadsheet: no cell starts a formula, whatever a file name holds.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import checks
from ..checks.core import TASK_ID
from .files import write_atomically
from .safe_text import from_spreadsheet_cell, spreadsheet_cell
from .safe_text import inert as printable

FORMATS = ("canvas", "moodle", "long")
ROSTER_REQUIRED = ("student_id", "file")
ROSTER_OPTIONAL = ("name", "email", "canvas_id", "login_id", "section")
NOT_GRADED = ("grader-error", "interrupted")     # statuses whose total is not a grade
GLOB_CHARACTERS = set("*?[")


class ExportError(ValueError):
    """The inputs cannot be exported as they are; the message says what to change."""


@dataclass
class Student:
    student_id: str
    pattern: str
    name: str = ""
    email: str = ""
    canvas_id: str = ""
    login_id: str = ""
    section: str = ""
    row: int = 0                       # line of the roster, for messages

    def matches(self, file: str) -> bool:
        """Whether the grade table's ``file`` (a path as the grader printed it) is this student's."""
        pattern = self.pattern.replace("\\", "/").lower()
        target = file.replace("\\", "/").lower()
        if "/" not in pattern:
            target = PurePosixPath(target).name
        if GLOB_CHARACTERS & set(pattern):
            return fnmatch.fnmatchcase(target, pattern)
        return target == pattern


@dataclass
class GradeRow:
    file: str
    total: int | None                  # None: not graded (see NOT_GRADED)
    status: str
    reason: str


@dataclass
class Match:
    student: Student
    grade: GradeRow | None             # None: no submission


@dataclass
class Export:
    matches: list[Match]
    unmatched: list[GradeRow]          # files that belong to no student of the roster
    max_score: int | None

    @property
    def missing(self) -> list[Student]:
        return [m.student for m in self.matches if m.grade is None]

    @property
    def not_graded(self) -> list[Match]:
        return [m for m in self.matches if m.grade is not None and m.grade.total is None]


def _read_csv(path: Path, what: str) -> tuple[list[str], list[dict]]:
    try:
        text = path.read_text(encoding="utf-8-sig")     # Excel writes a byte-order mark
    except FileNotFoundError:
        raise ExportError(f"{what} {str(path)!r} does not exist.") from None
    except UnicodeDecodeError:
        raise ExportError(f"{what} {str(path)!r} is not UTF-8 text: save it as 'CSV UTF-8'.") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    return header, list(reader)


def read_roster(path: Path) -> list[Student]:
    header, rows = _read_csv(path, "The roster")
    lowered = {name.lower(): name for name in header}
    missing = [name for name in ROSTER_REQUIRED if name not in lowered]
    if missing:
        raise ExportError(f"The roster {str(path)!r} has no column {', '.join(repr(m) for m in missing)}; its columns are "
                          f"{header}. It needs {', '.join(ROSTER_REQUIRED)} (and may have {', '.join(ROSTER_OPTIONAL)}).")
    students, seen = [], {}
    for line, row in enumerate(rows, start=2):
        values = {name: (row.get(lowered[name]) or "").strip() for name in (*ROSTER_REQUIRED, *ROSTER_OPTIONAL)
                  if name in lowered}
        if not any(values.values()):
            continue  # a blank line
        if not values["student_id"]:
            raise ExportError(f"Roster line {line} has no student_id.")
        if not values["file"]:
            raise ExportError(f"Roster line {line} (student {values['student_id']}) has no file: give the name "
                              "of the file the student handed in, or a pattern such as *kim_lee*.")
        if values["student_id"] in seen:
            raise ExportError(f"Roster lines {seen[values['student_id']]} and {line} have the same student_id "
                              f"{values['student_id']!r}.")
        seen[values["student_id"]] = line
        students.append(Student(pattern=values.pop("file"), row=line, **values))
    if not students:
        raise ExportError(f"The roster {str(path)!r} lists no student.")
    return students


def read_grades(path: Path) -> tuple[list[GradeRow], list[str]]:
    """The grader's rows, and its task columns (``01.1``, ...)."""
    header, rows = _read_csv(path, "The grade table")
    needed = [name for name in ("file", "total", "status") if name not in header]
    if needed:
        raise ExportError(f"{str(path)!r} has no column {', '.join(needed)}: is it the CSV that "
                          "python -m coursekit.tools.grade wrote? Its columns are " + str(header[:12]))
    grades = []
    for line, row in enumerate(rows, start=2):
        status = (row.get("status") or "").strip()
        total_text = (row.get("total") or "").strip()
        try:
            total = None if status in NOT_GRADED else int(total_text)
        except ValueError:
            raise ExportError(f"{str(path)!r} line {line}: total {total_text!r} is not a whole number.") from None
        grades.append(GradeRow(from_spreadsheet_cell(row.get("file") or ""), total, status, row.get("reason") or ""))
    return grades, [name for name in header if TASK_ID.match(name)]


def possible_points(task_columns: list[str]) -> int | None:
    """The lesson's points, from the task columns of the grade table (None when it has none)."""
    lessons = sorted({column[:2] for column in task_columns})
    if len(lessons) != 1:
        return None
    return sum(task.points for task in checks.tasks(lessons[0]))


def match(students: list[Student], grades: list[GradeRow]) -> tuple[list[Match], list[GradeRow]]:
    owners: dict[int, list[Student]] = {index: [s for s in students if s.matches(g.file)] for index, g in enumerate(grades)}
    shared = [(grades[i].file, found) for i, found in owners.items() if len(found) > 1]
    if shared:
        lines = [f"  {printable(file)}: students {', '.join(s.student_id for s in found)}" for file, found in shared[:10]]
        raise ExportError("A file matches more than one student; make their roster patterns narrower:\n" + "\n".join(lines))
    result = []
    for student in students:
        found = [grades[i] for i, owner in owners.items() if owner and owner[0] is student]
        if len(found) > 1:
            names = ", ".join(printable(g.file) for g in found)
            raise ExportError(f"Student {student.student_id} (roster line {student.row}, pattern {student.pattern!r}) "
                              f"matches {len(found)} files: {names}. Make the pattern match one file, or grade "
                              "one file per student.")
        result.append(Match(student, found[0] if found else None))
    return result, [grades[i] for i, owner in owners.items() if not owner]


def build_export(grades_path: Path, roster_path: Path, max_score: int | None = None) -> Export:
    grades, task_columns = read_grades(grades_path)
    matches, unmatched = match(read_roster(roster_path), grades)
    return Export(matches, unmatched, max_score if max_score is not None else possible_points(task_columns))


def _score(found: Match, missing: str):
    if found.grade is None:
        return 0 if missing == "zero" else ""
    return "" if found.grade.total is None else found.grade.total


def table(export: Export, fmt: str, assignment: str, missing: str = "blank") -> list[list]:
    """The rows to write (header first), every text cell made safe for a spreadsheet."""
    if fmt == "canvas":  # Canvas' gradebook import: its five identifying columns, then one per assignment
        rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", assignment]]
        rows += [[m.student.name, m.student.canvas_id, m.student.student_id, m.student.login_id, m.student.section,
                  _score(m, missing)] for m in export.matches]
    elif fmt == "moodle":  # Moodle's grade import maps a user column (ID number or email) to its users
        rows = [["ID number", "Email address", "Full name", assignment]]
        rows += [[m.student.student_id, m.student.email, m.student.name, _score(m, missing)] for m in export.matches]
    elif fmt == "long":  # one row per student and assignment, as nbgrader exports
        if export.max_score is None:
            raise ExportError("The long format needs each assignment's maximum score, and the grade table does not "
                              "name one lesson: pass --max-score N.")
        rows = [["assignment", "student_id", "name", "email", "file", "score", "max_score", "status"]]
        for m in export.matches:
            status = "no submission" if m.grade is None else m.grade.status
            rows.append([assignment, m.student.student_id, m.student.name, m.student.email,
                         m.grade.file if m.grade else "", _score(m, missing), export.max_score, status])
    else:
        raise ExportError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    return [[spreadsheet_cell(cell) for cell in row] for row in rows]


def write_rows(rows: list[list], out: Path) -> None:
    """Write ``rows`` to ``out`` atomically (a reader sees the old file or the new one)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    write_atomically(out, buffer.getvalue())


def unmatched_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}-unmatched.csv")


def report(export: Export, out: Path, missing: str) -> str:
    graded = sum(1 for m in export.matches if m.grade is not None and m.grade.total is not None)
    lines = [f"Wrote {out}: {len(export.matches)} student(s), {graded} graded."]
    if export.missing:
        shown = ", ".join(f"{s.student_id} ({printable(s.name or s.pattern)})" for s in export.missing[:20])
        more = f" and {len(export.missing) - 20} more" if len(export.missing) > 20 else ""
        lines.append(f"No submission from {len(export.missing)} student(s), given "
                     f"{'0' if missing == 'zero' else 'a blank score'}: {shown}{more}.")
    if export.not_graded:
        shown = ", ".join(f"{m.student.student_id} ({printable(m.grade.file)}: {m.grade.status})" for m in export.not_graded)
        lines.append(f"Not graded, blank score (grade these again): {shown}.")
    if export.unmatched:
        shown = "\n  ".join(printable(g.file) for g in export.unmatched[:20])
        more = f"\n  ... and {len(export.unmatched) - 20} more" if len(export.unmatched) > 20 else ""
        lines.append(f"{len(export.unmatched)} file(s) match no student of the roster (listed in "
                     f"{unmatched_path(out)}):\n  {shown}{more}")
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m coursekit.tools.export") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grades", type=Path, help="the CSV that python -m coursekit.tools.grade wrote")
    parser.add_argument("--roster", required=True, type=Path, help="CSV: student_id, file, name, email, ...")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--assignment", required=True, help='the gradebook column, e.g. "Lesson 04"')
    parser.add_argument("--out", required=True, type=Path, help="the CSV to write")
    parser.add_argument("--missing", choices=("blank", "zero"), default="blank",
                        help="score of a student with no submission (default blank)")
    parser.add_argument("--max-score", type=int, help="points possible (default: the lesson's, from the task columns)")
    args = parser.parse_args(argv)
    if not args.assignment.strip():
        parser.error("--assignment needs a name, such as \"Lesson 04\"")
    inputs = {args.grades.resolve(), args.roster.resolve()}
    for written in (args.out, unmatched_path(args.out)):
        if written.resolve() in inputs:
            parser.error(f"{written} is one of the inputs; choose another --out")
    try:
        export = build_export(args.grades, args.roster, args.max_score)
        rows = table(export, args.fmt, args.assignment.strip(), args.missing)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_rows(rows, args.out)
    leftover = unmatched_path(args.out)
    if export.unmatched:
        write_rows([[spreadsheet_cell(cell) for cell in row] for row in
                    [["file", "total", "status"], *([g.file, "" if g.total is None else g.total, g.status]
                                                     for g in export.unmatched)]], leftover)
    elif leftover.exists():
        leftover.unlink()  # from an earlier export of the same file: no longer true
    print(report(export, args.out, args.missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
