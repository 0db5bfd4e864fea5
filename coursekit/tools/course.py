"""Where the course lives, and the cells and links generated from it.

``course.toml`` at the repository root names the GitHub repository and branch. From those two
lines this module writes every notebook's "Open in Colab" badge cell (tag ``course-badge``), its
setup cell (tag ``course-setup``) and the lesson table in README.md.

    python -m coursekit.tools.course sync           # rewrite them all
    python -m coursekit.tools.course sync --check   # exit 1 if anything is out of date
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

BADGE_TAG = "course-badge"
SETUP_TAG = "course-setup"
NOTEBOOK_FOLDERS = ("notebooks", "solutions", "exercises")
TABLE_START, TABLE_END = "<!-- lessons:start -->", "<!-- lessons:end -->"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


@dataclass(frozen=True)
class Course:
    repository: str  # "owner/name" on GitHub
    branch: str

    @classmethod
    def load(cls, root: str | Path = ".") -> "Course":
        path = Path(root) / "course.toml"
        if not path.exists():
            raise FileNotFoundError(f"No course.toml in {str(Path(root).resolve())!r}: run from the repository root.")
        settings = tomllib.loads(path.read_text())
        repository, branch = settings.get("repository", ""), settings.get("branch", "")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository) or not branch:
            raise ValueError(f"course.toml needs repository = \"owner/name\" and branch = \"...\"; "
                             f"got repository={repository!r}, branch={branch!r}.")
        return cls(repository, branch)

    def colab_url(self, notebook: str | Path) -> str:
        return (f"https://colab.research.google.com/github/{self.repository}/blob/"
                f"{self.branch}/{Path(notebook).as_posix()}")

    def badge(self, notebook: str | Path) -> str:
        return f"[![Open In Colab]({BADGE_IMAGE})]({self.colab_url(notebook)})"

    @property
    def install_spec(self) -> str:
        return f"coursekit @ git+https://github.com/{self.repository}@{self.branch}"

    def setup_source(self) -> str:
        return (
            "# Setup. On Colab this installs the course's helper package, coursekit (about a minute);\n"
            "# TensorFlow, Keras and numpy are Colab's own and stay as they are.\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    %pip install --quiet \"{self.install_spec}\"\n"
            "\n"
            "import coursekit\n"
            "profile = coursekit.setup()")


def tagged_cells(notebook, tag: str) -> list:
    return [cell for cell in notebook.cells if tag in cell.get("metadata", {}).get("tags", [])]


def apply(notebook, relative_path: str | Path, course: Course) -> bool:
    """Rewrite the badge and setup cells of ``notebook`` in place; True if anything changed."""
    changed = False
    wanted = {BADGE_TAG: course.badge(relative_path), SETUP_TAG: course.setup_source()}
    for tag, source in wanted.items():
        cells = tagged_cells(notebook, tag)
        if len(cells) != 1:
            raise ValueError(f"{relative_path}: expected exactly one cell tagged {tag!r}, found {len(cells)}.")
        if cells[0].source != source:
            cells[0].source = source
            changed = True
    return changed


def notebook_title(notebook) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, flags=re.MULTILINE)
            if match:
                return match.group(1).strip()
    return "(untitled)"


LESSON_PATTERN = "[0-9][0-9]_*.ipynb"   # a lesson is notebooks/NN_<name>.ipynb


def lesson_notebooks(folder: str | Path = "notebooks") -> list[Path]:
    """Every lesson notebook of ``folder`` (``NN_<name>.ipynb``), in lesson order.

    The one place that says what a lesson is: the gallery, the README's table and the tests that
    must cover every lesson (forms, claims, the lecturer's guide) all find the lessons here, so
    a new lesson is covered as soon as its notebook exists.
    """
    return sorted(Path(folder).glob(LESSON_PATTERN))


def lesson_table(root: Path, course: Course) -> str:
    rows = ["| # | Lesson | Lesson notebook | Exercises |", "|---|---|---|---|"]
    for lesson in lesson_notebooks(root / "notebooks"):
        number = lesson.name[:2]
        title = notebook_title(nbformat.read(lesson, as_version=4))
        exercise = next(iter(sorted((root / "exercises").glob(f"{number}_*.ipynb"))), None)
        exercise_cell = (f"[exercises]({exercise.relative_to(root).as_posix()}) "
                         f"{course.badge(exercise.relative_to(root))}" if exercise else "—")
        rows.append(f"| {number} | {title} | [{lesson.name}]({lesson.relative_to(root).as_posix()}) "
                    f"{course.badge(lesson.relative_to(root))} | {exercise_cell} |")
    return "\n".join(rows)


def sync(root: str | Path = ".", check: bool = False) -> list[str]:
    """Bring badges, setup cells and the README table in line with course.toml.

    Returns the files that were (or, with ``check``, would be) changed.
    """
    root = Path(root)
    course = Course.load(root)
    stale = []
    for folder in NOTEBOOK_FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            if apply(notebook, path.relative_to(root), course):
                stale.append(str(path.relative_to(root)))
                if not check:
                    nbformat.write(notebook, path)
    readme = root / "README.md"
    text = readme.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise ValueError(f"README.md needs the markers {TABLE_START} and {TABLE_END} around the lesson table.")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    updated = f"{head}{TABLE_START}\n{lesson_table(root, course)}\n{TABLE_END}{tail}"
    if updated != text:
        stale.append("README.md")
        if not check:
            readme.write_text(updated)
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["sync"])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    parser.add_argument("--root", default=".", help="repository root (default: here)")
    args = parser.parse_args(argv)
    stale = sync(args.root, check=args.check)
    if args.check and stale:
        print("Out of date with course.toml (run `make sync`):\n  " + "\n  ".join(stale))
        return 1
    print(("Updated: " + ", ".join(stale)) if stale else "Badges, setup cells and README table are up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
