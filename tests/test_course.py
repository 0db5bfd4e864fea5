"""The course's location is set once, in course.toml; every badge and setup cell follows it."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from coursekit.tools import course

ROOT = Path(__file__).resolve().parents[1]


def all_notebooks(root: Path):
    for folder in course.NOTEBOOK_FOLDERS:
        yield from sorted((root / folder).glob("*.ipynb"))


def test_repository_is_in_sync_with_course_toml():
    assert course.sync(ROOT, check=True) == [], "run `make sync`"


def test_every_notebook_has_one_badge_and_one_setup_cell_and_no_outputs():
    notebooks = list(all_notebooks(ROOT))
    assert notebooks
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        assert len(course.tagged_cells(notebook, course.BADGE_TAG)) == 1, path
        assert len(course.tagged_cells(notebook, course.SETUP_TAG)) == 1, path
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
            f"{path} is committed with outputs"


def test_changing_one_line_repoints_the_whole_course(tmp_path):
    copy = tmp_path / "course"
    copy.mkdir()
    for item in ("course.toml", "README.md", *course.NOTEBOOK_FOLDERS):
        source = ROOT / item
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / item)
    old = course.Course.load(ROOT).repository
    toml = copy / "course.toml"
    toml.write_text(toml.read_text().replace(old, "someone-else/fork-of-course"))
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.course", "sync", "--root", str(copy)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for path in [*all_notebooks(copy), copy / "README.md"]:
        text = path.read_text()
        assert old not in text, path
        assert "someone-else/fork-of-course" in text, path
    check = subprocess.run([sys.executable, "-m", "coursekit.tools.course", "sync", "--check", "--root", str(copy)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_check_reports_a_stale_badge(tmp_path):
    copy = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", copy / "notebooks")
    shutil.copytree(ROOT / "exercises", copy / "exercises")  # the README table links them
    for item in ("course.toml", "README.md"):
        shutil.copy(ROOT / item, copy / item)
    first = sorted((copy / "notebooks").glob("*.ipynb"))[0]
    notebook = nbformat.read(first, as_version=4)
    course.tagged_cells(notebook, course.BADGE_TAG)[0].source = "[![Open In Colab](x)](y)"
    nbformat.write(notebook, first)
    assert course.sync(copy, check=True) == [f"notebooks/{first.name}"]


def test_setup_cell_installs_only_coursekit_on_colab():
    source = course.Course("owner/name", "main").setup_source()
    assert 'if "google.colab" in sys.modules:' in source
    install_lines = [line for line in source.splitlines() if "pip install" in line]
    assert install_lines == ['    %pip install --quiet "coursekit @ git+https://github.com/owner/name@main"']
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    assert not any(name in code.lower() for name in ("tensorflow", "keras", "numpy"))


def test_colab_badge_url():
    badge = course.Course("owner/name", "dev").badge("notebooks/01_inside_a_cnn.ipynb")
    assert "https://colab.research.google.com/github/owner/name/blob/dev/notebooks/01_inside_a_cnn.ipynb" in badge
