"""The lecturer's guide (instructors/) covers every lesson and every question a lesson asks.

Layout (instructors/README.md): one file per lesson, instructors/<notebook stem>.md, with the
sections "## 50-minute plan", "## Measured times" and "## Answer notes". Under "## Answer notes",
one note per question, numbered from 1 in the lesson's order:

* `### Question k`: item k of the lesson's "## Questions to think about" list;
* `### Think k`: the k-th *Think:* prompt of the lesson's text;
* `### Keep in mind k`: the k-th question of the intro's **Questions to keep in mind:** (one per
  question mark, or one per item when they are written as a list).

A lesson that gains a question without a note, or a guide with a note for a question that is gone,
fails here, naming the lesson and the heading.
"""
import re
from pathlib import Path

import nbformat
import pytest

from coursekit.tools.course import lesson_notebooks

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ROOT / "instructors"
SECTIONS = ("## 50-minute plan", "## Measured times", "## Answer notes")
KINDS = ("Question", "Think", "Keep in mind")
MIN_WORDS = 15      # a note says something: an answer, what to look for in the printed numbers
LIST_ITEM = re.compile(r"^\s{0,3}(?:\d+\.|[-*])\s+\S", re.M)
THINK = re.compile(r"(?<![*\w])\*Think:\*|\*\*Think:\*\*|(?<!\w)_Think:_")
KEEP_IN_MIND = re.compile(r"\*\*Questions to keep in mind:?\*\*:?(?P<text>.*?)(?:\n\s*\n|\n#|\Z)", re.S)


def markdown(notebook_path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(notebook_path, as_version=4).cells if cell.cell_type == "markdown"]


def questions_of(notebook_path: Path) -> dict[str, int]:
    """How many questions of each kind the lesson asks: ``{"Question": 4, "Think": 2, "Keep in mind": 3}``."""
    cells = markdown(notebook_path)
    text = "\n\n".join(cells)
    counts = {kind: 0 for kind in KINDS}
    section = re.search(r"^##\s+Questions to think about\s*$(?P<body>.*?)(?=^#|\Z)", text, re.M | re.S)
    if section:
        counts["Question"] = len(re.findall(r"^\s{0,3}\d+\.\s+\S", section["body"], re.M))
    counts["Think"] = sum(len(THINK.findall(cell)) for cell in cells)
    for match in KEEP_IN_MIND.finditer(text):
        items = LIST_ITEM.findall(match["text"])
        counts["Keep in mind"] += len(items) if items else match["text"].count("?")
    return counts


def notes_of(guide_path: Path) -> dict[str, list[tuple[int, str]]]:
    """The answer notes of a guide: ``{kind: [(k, the note's text), ...]}`` in the file's order."""
    text = guide_path.read_text()
    notes = {kind: [] for kind in KINDS}
    pattern = re.compile(r"^###\s+(?P<kind>Question|Think|Keep in mind)\s+(?P<k>\d+)\b[^\n]*\n(?P<body>.*?)(?=^##|\Z)",
                         re.M | re.S)
    for match in pattern.finditer(text):
        notes[match["kind"]].append((int(match["k"]), match["body"].strip()))
    return notes


def guide_problems(notebook_path: Path, guide_path: Path) -> list[str]:
    if not guide_path.is_file():
        return [f"no guide: write {guide_path.relative_to(guide_path.parents[1])} (see instructors/README.md)"]
    text = guide_path.read_text()
    problems = [f"no section {section!r}" for section in SECTIONS if not re.search(rf"^{section}\b", text, re.M)]
    asked, notes = questions_of(notebook_path), notes_of(guide_path)
    for kind in KINDS:
        numbers = [k for k, _ in notes[kind]]
        if numbers != list(range(1, asked[kind] + 1)):
            problems.append(f"the lesson asks {asked[kind]} '{kind}' question(s); the guide's '### {kind} k' notes "
                            f"are numbered {numbers or 'nothing'} (expected 1 to {asked[kind]})")
        problems += [f"'### {kind} {k}' is too short to be a note ({len(body.split())} words)"
                     for k, body in notes[kind] if len(body.split()) < MIN_WORDS]
    return problems


def guide_for(notebook_path: Path) -> Path:
    return GUIDES / f"{notebook_path.stem}.md"


@pytest.mark.parametrize("lesson", lesson_notebooks(ROOT / "notebooks"), ids=lambda path: path.stem)
def test_every_lesson_has_a_guide_with_a_note_for_every_question(lesson):
    problems = guide_problems(lesson, guide_for(lesson))
    assert not problems, f"{lesson.name}:\n  " + "\n  ".join(problems)


def test_the_guide_explains_its_layout_and_holds_the_measured_times():
    readme = (GUIDES / "README.md").read_text()
    for heading in ("### Question k", "### Think k", "### Keep in mind k", "bench/notebook_times.py"):
        assert heading in readme, heading


NOTE = "An answer note long enough to count: what the students should see in the printed numbers, and why."


def test_a_question_without_a_note_fails_and_a_note_without_a_question_too(tmp_path):
    lesson = tmp_path / "notebooks" / "09_new.ipynb"
    lesson.parent.mkdir()
    cells = ["# Lesson 09\n\n**Questions to keep in mind:** does it hold? And why?",
             "Some text. *Think:* what changes if the patch is white?",
             "## Questions to think about\n\n1. First question?\n2. Second question,\n   over two lines?"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells]), lesson)
    assert questions_of(lesson) == {"Question": 2, "Think": 1, "Keep in mind": 2}
    guide = tmp_path / "instructors" / "09_new.md"
    guide.parent.mkdir()
    notes = "".join(f"### {kind} {k}\n{NOTE}\n\n" for kind, n in (("Keep in mind", 2), ("Think", 1), ("Question", 2))
                    for k in range(1, n + 1))
    guide.write_text(f"# Lesson 09\n\n## 50-minute plan\n\n...\n\n## Measured times\n\n...\n\n## Answer notes\n\n{notes}")
    assert guide_problems(lesson, guide) == []

    cells[2] += "\n3. A question added later?"                       # the lesson gains a question
    cells[1] += " *Think:* and a black one?"                          # and a Think prompt
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells]), lesson)
    problems = guide_problems(lesson, guide)
    assert any("asks 3 'Question'" in p and "numbered [1, 2]" in p for p in problems), problems
    assert any("asks 2 'Think'" in p for p in problems), problems

    guide.write_text(guide.read_text().replace("### Question 2\n" + NOTE, "### Question 2\nTo do."))
    assert any("'### Question 2' is too short" in p for p in guide_problems(lesson, guide))
    assert guide_problems(lesson, tmp_path / "instructors" / "missing.md")[0].startswith("no guide")
