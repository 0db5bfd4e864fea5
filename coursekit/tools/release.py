"""The student release: the course without what only instructors need, pointing at its own repository.

    python -m coursekit.tools.course release DEST      (make release: into build/release)

writes into DEST (a new or empty folder, or an earlier release, whose ``.git`` is kept):

* ``notebooks/``, ``exercises/`` and ``data/``, every badge and setup cell pointing at the release
  repository, named in ``course.toml``'s ``[release]`` section;
* ``coursekit/`` without ``tools/`` (the grader, the Gradescope autograder and the build tools) and
  with every multiple-choice key removed: there, ``check()`` of such a task says that the answer is
  well-formed and recorded, and the instructor's grader (which has the keys) grades it;
* ``pyproject.toml`` and ``requirements.txt`` (the setup cell installs coursekit from the release
  repository), a ``Makefile`` (``make install``, ``make lab``, ``make smoke``), a README for students
  and ``RELEASE.json`` (what it was made from).

It leaves out ``solutions/``, ``instructors/`` (the lecturer's guide and its answer notes),
``tests/`` (which hold right answers), ``bench/``, ``colab/`` and ``.ci/``. Before it finishes,
:func:`audit` reads every file of the release and fails, naming the file, if it finds the code of
a solution region, a multiple-choice key, a line of the lecturer's guide or the course's own
repository.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import course

MARKER = "RELEASE.json"
COPIED_FOLDERS = ("notebooks", "exercises", "data")
LEFT_OUT = ("solutions", "instructors", "tests", "bench", "colab", ".ci", "coursekit/tools")
KEY = re.compile(r"\bkey\s*=\s*[\"'](?P<key>[0-9a-f]{64})[\"']")
HEX_KEY = re.compile(r"\b[0-9a-f]{64}\b")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MIN_LINE = 12          # shorter solution lines ("return x") say nothing about an answer
MIN_NOTE_LINE = 40     # a line of the lecturer's guide long enough to be an answer note's own
# The sections of the course README that students need, copied into theirs (by their heading).
STUDENT_SECTIONS = ("Exercises, for students", "Lessons, for students and lecturers: form fields and your own photo",
                    "Working offline")


class ReleaseError(ValueError):
    """The release cannot be made as asked; the message says what to change."""


def release_course(root: Path) -> course.Course:
    """The release repository and branch, from ``course.toml``'s ``[release]`` section."""
    main = course.Course.load(root)
    settings = tomllib.loads((Path(root) / "course.toml").read_text()).get("release")
    example = '[release]\nrepository = "owner/name-students"\nbranch = "main"'
    if not isinstance(settings, dict):
        raise ReleaseError(f"course.toml has no [release] section naming the students' repository; add\n{example}")
    repository, branch = settings.get("repository", ""), settings.get("branch", "main")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(repository)) or not branch:
        raise ReleaseError(f"course.toml's [release] needs repository = \"owner/name\" (and branch); got "
                           f"repository={repository!r}, branch={branch!r}:\n{example}")
    if repository == main.repository:
        raise ReleaseError(f"[release] names the course's own repository {repository!r}, which holds the solutions: "
                           "name the students' repository there.")
    return course.Course(repository, branch)


# ----------------------------------------------------------------------------- the steps

def prepare(dest: Path, root: Path) -> None:
    """Make ``dest`` empty, refusing a folder that holds anything but an earlier release."""
    dest, root = dest.resolve(), root.resolve()
    if dest == root or root.is_relative_to(dest):
        raise ReleaseError(f"{dest} holds the course itself: choose another folder, such as build/release.")
    if any(dest.is_relative_to(root / folder) for folder in (*COPIED_FOLDERS, "coursekit", "solutions")):
        raise ReleaseError(f"{dest} is inside a folder the release copies: choose another one, such as build/release.")
    if dest.exists() and not dest.is_dir():
        raise ReleaseError(f"{dest} is a file, not a folder.")
    if dest.exists():
        entries = [entry for entry in dest.iterdir() if entry.name != ".git"]
        if entries and not (dest / MARKER).is_file():
            names = ", ".join(sorted(entry.name for entry in entries)[:5])
            raise ReleaseError(f"{dest} holds files that no release wrote ({names}): choose an empty folder, or "
                               "the folder of an earlier release (it has RELEASE.json). Nothing was changed.")
        for entry in entries:  # an earlier release: replaced whole, its git history kept
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    dest.mkdir(parents=True, exist_ok=True)


def copy_notebooks(root: Path, dest: Path, target: course.Course) -> None:
    """notebooks/ and exercises/, their badge and setup cells pointing at the release repository."""
    for folder in ("notebooks", "exercises"):
        (dest / folder).mkdir()
        for path in sorted((root / folder).glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            course.apply(notebook, f"{folder}/{path.name}", target)
            nbformat.write(notebook, dest / folder / path.name)


def copy_data(root: Path, dest: Path) -> None:
    shutil.copytree(root / "data", dest / "data", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def without_keys(source: str) -> str:
    """A checks module's source with every multiple-choice ``key="<hash>"`` replaced by ``key=None``."""
    return KEY.sub("key=None", source)


def copy_coursekit(root: Path, dest: Path) -> None:
    """coursekit without tools/, its checks without keys."""
    shutil.copytree(root / "coursekit", dest / "coursekit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tools"))
    for path in sorted((dest / "coursekit" / "checks").glob("*.py")):
        path.write_text(without_keys(path.read_text()))


def copy_project_files(root: Path, dest: Path) -> None:
    """requirements.txt, pyproject.toml (its tests: the notebooks), conftest.py, .gitignore."""
    for name in ("requirements.txt", "conftest.py", ".gitignore"):
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    text = (root / "pyproject.toml").read_text()
    text, found = re.subn(r"(?m)^testpaths\s*=.*$", 'testpaths = ["notebooks", "exercises"]', text)
    if found != 1:
        raise ReleaseError("pyproject.toml has no testpaths line under [tool.pytest.ini_options] to rewrite.")
    (dest / "pyproject.toml").write_text(text)


MAKEFILE = """\
# The students' edition of the course.
#   make install   create .venv and install what the notebooks need
#   make lab       open the notebooks in JupyterLab
#   make smoke     run every lesson and exercise in the smoke profile (about a minute each on 2 cores)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
INSTALLED := $(VENV)/.installed

.PHONY: install lab smoke

install: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
\t$(PYTHON) -m venv $(VENV)
\t$(PY) -m pip install --quiet --upgrade pip
\t$(PY) -m pip install --quiet -r requirements.txt
\t$(PY) -m pip install --quiet --no-deps -e .
\ttouch $@

lab: $(INSTALLED)
\t$(BIN)/jupyter lab

smoke: export COURSEKIT_PROFILE ?= smoke
smoke: $(INSTALLED)
\t$(PY) -m pytest --nbval-lax notebooks exercises
"""


INTRO = """\
The students' edition of a course of Jupyter notebooks on looking inside a convolutional network:
feature maps, filter patterns found by gradient ascent, saliency maps, Grad-CAM, and how a network
can learn a shortcut instead of the object. Each lesson has a notebook to read and run, and an
exercise notebook whose tasks `check()` at once. Both use the course's helper package, `coursekit`,
which the first cell of every notebook installs on Colab."""


def readme_sections(readme: str) -> dict[str, str]:
    """The course README's ``## `` sections by heading."""
    sections, heading = {}, None
    for line in readme.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            sections[heading] = []
        elif heading is not None:
            sections[heading].append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def student_readme(root: Path, dest: Path, target: course.Course) -> str:
    source = (root / "README.md").read_text()
    sections = readme_sections(source)
    missing = [name for name in STUDENT_SECTIONS if name not in sections]
    if missing:
        raise ReleaseError(f"README.md has no section {missing}: the students' README copies it (see "
                           "STUDENT_SECTIONS in coursekit/tools/release.py).")
    title = source.splitlines()[0]
    parts = [title, "", INTRO, "",
             "## Lessons", "",
             "Click a badge to open a notebook on Google Colab (choose *Runtime → Change runtime type → T4 GPU*).", "",
             course.TABLE_START, course.lesson_table(dest, target), course.TABLE_END, ""]
    for name in STUDENT_SECTIONS:
        parts += [f"## {name}", "", sections[name], ""]
    parts += ["## Multiple-choice tasks", "",
              "In this edition of the course, `check()` on a multiple-choice task (\"select every true "
              "statement\") says only that your answer is well-formed and recorded: it cannot tell right from "
              "wrong here. Your instructor's grader checks it.", "",
              "## On your own machine", "",
              "With Python 3.11+ and `make`: `make install` creates `.venv` and installs what the notebooks need, "
              "`make lab` opens them in JupyterLab, and `make smoke` runs every lesson and exercise in the fast "
              "`smoke` profile (about a minute each on two CPU cores; the exercises' unsolved cells are expected "
              "to fail).", ""]
    return "\n".join(parts)


def write_marker(root: Path, dest: Path, target: course.Course) -> None:
    commit = ""
    try:
        found = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        commit = found.stdout.strip() if found.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        pass
    (dest / MARKER).write_text(json.dumps({"repository": target.repository, "branch": target.branch,
                                           "source_commit": commit,
                                           "made_by": "python -m coursekit.tools.course release"}, indent=1) + "\n")


# ----------------------------------------------------------------------------- the audit

def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def solution_regions(root: Path) -> list[list[str]]:
    """Every solution region of ``solutions/``, as its stripped, non-blank lines."""
    regions = []
    for path in sorted((root / "solutions").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            current = None
            for line in cell.source.splitlines():
                marker = line.strip()
                if marker == BEGIN:
                    current = []
                elif marker == END and current is not None:
                    regions.append(current)
                    current = None
                elif current is not None and marker:
                    current.append(marker)
    return [region for region in regions if region]


def _text_of(path: Path) -> str | None:
    """A release file's text (a notebook: its cells' sources and outputs), None for binary files."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
    if path.suffix == ".ipynb":
        notebook = nbformat.reads(text, as_version=4)
        return "\n".join([cell.source for cell in notebook.cells]
                         + [json.dumps(cell.get("outputs", []), ensure_ascii=False) for cell in notebook.cells])
    return text


@dataclass
class Fingerprints:
    """What must not appear in a release, read from the course it is made from."""
    blocks: list[str]         # each solution region, whole (its lines joined)
    secret_lines: dict        # line -> where it comes from: lines of solutions and of the guide that no
                              # student-facing file of the course (lessons, exercises, coursekit) holds
    keys: set                 # the multiple-choice keys
    repository: str           # the course's own repository


def fingerprints(root: Path) -> Fingerprints:
    root = Path(root)
    public = set()   # what the release is made of (lessons, exercises, coursekit but its tools) may be in it
    for path in [*sorted((root / "notebooks").glob("*.ipynb")), *sorted((root / "exercises").glob("*.ipynb")),
                 *sorted(path for path in (root / "coursekit").rglob("*.py") if "tools" not in path.parts)]:
        public.update(_lines(_text_of(path) or ""))
    regions = solution_regions(root)
    secret = {line: "a solution" for region in regions for line in region if len(line) >= MIN_LINE and line not in public}
    for path in sorted((root / "instructors").glob("*.md")):
        secret.update({line: f"instructors/{path.name}" for line in _lines(path.read_text())
                       if len(line) >= MIN_NOTE_LINE and line not in public})
    keys = {match.group("key") for path in sorted((root / "coursekit" / "checks").glob("*.py"))
            for match in KEY.finditer(path.read_text())}
    return Fingerprints(["\n".join(region) for region in regions], secret, keys, course.Course.load(root).repository)


def audit(release: Path, root: Path) -> list[str]:
    """What the release at ``release`` should not hold, one line per finding (empty: nothing)."""
    release, found = Path(release), []
    marks = fingerprints(root)
    own_repository = re.compile(rf"(?<![\w.-]){re.escape(marks.repository)}(?![\w-])")
    for folder in LEFT_OUT:
        if (release / folder).exists():
            found.append(f"{folder}/: instructors' material, left out of a release")
    for path in sorted(p for p in release.rglob("*") if p.is_file() and ".git" not in p.relative_to(release).parts):
        name = path.relative_to(release).as_posix()
        text = _text_of(path)
        if text is None:
            continue
        lines = _lines(text)
        joined = "\n".join(lines)
        for block in marks.blocks:
            if block in joined:
                found.append(f"{name}: holds a whole solution region ({block.splitlines()[0][:60]!r} ...)")
        for line in set(lines) & set(marks.secret_lines):
            found.append(f"{name}: holds a line of {marks.secret_lines[line]}: {line[:70]!r}")
        for key in set(HEX_KEY.findall(text)) & marks.keys:
            found.append(f"{name}: holds a multiple-choice key ({key[:12]}...)")
        if KEY.search(text):
            found.append(f"{name}: holds a multiple-choice key (key=\"...\")")
        if own_repository.search(text):
            found.append(f"{name}: names the course's own repository {marks.repository!r}")
    return found


# ----------------------------------------------------------------------------- the command

def release(dest: str | Path, root: str | Path = ".") -> list[str]:
    """Write the student release into ``dest`` (see the module docstring); returns the audit's findings."""
    root, dest = Path(root), Path(dest)
    if not (root / "course.toml").is_file():
        raise ReleaseError(f"No course.toml in {str(root.resolve())!r}: run from the course's repository or pass --root.")
    target = release_course(root)
    prepare(dest, root)
    copy_notebooks(root, dest, target)
    copy_data(root, dest)
    copy_coursekit(root, dest)
    copy_project_files(root, dest)
    (dest / "Makefile").write_text(MAKEFILE)
    (dest / "README.md").write_text(student_readme(root, dest, target))
    write_marker(root, dest, target)
    return audit(dest, root)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.course release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="the folder to write the release into (new, empty, or an earlier release)")
    parser.add_argument("--root", default=".", help="the course's repository (default: here)")
    args = parser.parse_args(argv)
    try:
        findings = release(args.dest, args.root)
    except (ReleaseError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if findings:
        print("The release holds what students must not get (fix the source, then run again):\n  "
              + "\n  ".join(findings), file=sys.stderr)
        return 1
    target = release_course(Path(args.root))
    print(f"Wrote the student release to {args.dest} for github.com/{target.repository} ({target.branch}). "
          f"Check it with `make smoke` there; publish it by committing it to that repository.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
