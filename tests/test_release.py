"""The student release: no solution, key or answer note in it, badges on its own repository, and it runs.

The release is built once (by its command line) into a temporary folder. Its audit is shown to
find what it looks for by planting each kind of leak in a copy. Running every lesson and exercise
of the release takes many minutes (`make release-check`); here every module of the release's own
coursekit is imported and lesson 01's exercise runs under nbval with it (the lesson notebooks are
the main suite's, unchanged but for the setup cell that the exercise shares).
"""
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit import checks
from coursekit.tools import course, release

ROOT = Path(__file__).resolve().parents[1]
MAIN = course.Course.load(ROOT)
TARGET = release.release_course(ROOT)


def make_release(dest: Path, root: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coursekit.tools.course", "release", str(dest), "--root", str(root)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("release") / "students"
    result = make_release(dest)
    assert result.returncode == 0, result.stderr
    return dest


def files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_release_holds_lessons_exercises_data_and_coursekit_without_instructor_material(built):
    for folder in ("notebooks", "exercises"):
        assert sorted(p.name for p in (built / folder).glob("*.ipynb")) == sorted(p.name for p in (ROOT / folder).glob("*.ipynb"))
    assert sorted(p.name for p in (built / "data").iterdir()) == sorted(p.name for p in (ROOT / "data").iterdir()
                                                                         if p.name != "__pycache__")
    for name in ("README.md", "Makefile", "pyproject.toml", "requirements.txt", release.MARKER, "coursekit/__init__.py",
                 "coursekit/checks/core.py"):
        assert (built / name).is_file(), name
    for left_out in ("solutions", "instructors", "tests", "bench", "colab", ".ci", "coursekit/tools", "course.toml"):
        assert not (built / left_out).exists(), left_out


def test_no_solution_code_key_or_answer_note_anywhere(built):
    assert release.audit(built, ROOT) == []
    marks = release.fingerprints(ROOT)
    assert len(marks.blocks) >= 3 * len(list((ROOT / "solutions").glob("*.ipynb")))  # the audit read every region
    choice_tasks = sum(path.read_text().count("\nchoice_task(") for path in (ROOT / "coursekit" / "checks").glob("lesson*.py"))
    assert choice_tasks and len(marks.keys) == choice_tasks
    text = "\n".join(path.read_text(errors="replace") for path in files(built))
    assert not re.search(r"[0-9a-f]{64}", text)                # no hash of an answer at all
    assert release.BEGIN not in text


def test_the_audit_finds_each_kind_of_leak(built, tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(built, leaky)
    solution = nbformat.read(next((ROOT / "solutions").glob("01_*.ipynb")), as_version=4)
    region_cell = next(cell for cell in solution.cells if release.BEGIN in cell.source and "def " in cell.source)
    exercise = leaky / "exercises" / "02_filter_patterns.ipynb"
    notebook = nbformat.read(exercise, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(region_cell.source.replace(release.BEGIN, "").replace(release.END, "")))
    nbformat.write(notebook, exercise)
    key = sorted(release.fingerprints(ROOT).keys)[0]
    (leaky / "coursekit" / "checks" / "lesson01.py").write_text(
        (ROOT / "coursekit" / "checks" / "lesson01.py").read_text())          # the keys put back
    (leaky / "notes.md").write_text(f"stored {key}\n")
    guide_line = next(line.strip() for line in (ROOT / "instructors" / "README.md").read_text().splitlines()
                      if len(line.strip()) >= release.MIN_NOTE_LINE)
    (leaky / "data" / "README.md").write_text(f"{guide_line}\n")
    (leaky / "coursekit" / "tools").mkdir()
    (leaky / "Makefile").write_text(f"# see https://github.com/{MAIN.repository}\n")
    found = "\n".join(release.audit(leaky, ROOT))
    assert "exercises/02_filter_patterns.ipynb: holds a whole solution region" in found
    assert "exercises/02_filter_patterns.ipynb: holds a line of a solution" in found
    assert "coursekit/checks/lesson01.py: holds a multiple-choice key" in found
    assert f"notes.md: holds a multiple-choice key ({key[:12]}" in found
    assert "data/README.md: holds a line of instructors/README.md" in found
    assert "coursekit/tools/: instructors' material" in found
    assert f"Makefile: names the course's own repository '{MAIN.repository}'" in found


def test_badges_setup_cells_and_readme_name_the_release_repository(built):
    own = re.compile(rf"(?<![\w.-]){re.escape(MAIN.repository)}(?![\w-])")
    for folder in ("notebooks", "exercises"):
        for path in sorted((built / folder).glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            badge = course.tagged_cells(notebook, course.BADGE_TAG)[0].source
            setup = course.tagged_cells(notebook, course.SETUP_TAG)[0].source
            assert f"github/{TARGET.repository}/blob/{TARGET.branch}/{folder}/{path.name}" in badge, path
            assert f"git+https://github.com/{TARGET.repository}@{TARGET.branch}" in setup, path
    readme = (built / "README.md").read_text()
    assert readme.count(f"colab.research.google.com/github/{TARGET.repository}/blob/") == 2 * len(
        list((built / "notebooks").glob("*.ipynb")))
    assert "make smoke" in readme and "recorded" in readme
    for path in files(built):
        assert not own.search(path.read_text(errors="replace")), path
    assert json.loads((built / release.MARKER).read_text())["repository"] == TARGET.repository


CHOICE_PROBE = """
import itertools, json, sys
import coursekit.checks as checks
from coursekit.checks.core import evaluate
out = {}
for lesson in checks.lessons():
    for task in checks.tasks(lesson):
        if task.answer != "true_statements":
            continue
        letters = "abcdefgh"
        outcomes = []
        for size in range(1, 7):
            for chosen in itertools.combinations(letters[:6], size):
                outcome = evaluate(task, set(chosen))
                outcomes.append([outcome.passed, outcome.message])
        out[task.id] = outcomes
print(json.dumps({"file": checks.__file__, "outcomes": out}))
"""


def test_multiple_choice_checks_in_the_release_are_no_oracle(built):
    """Every selection of letters gets the same answer there: nothing to search for the key with."""
    environment = {**os.environ, "PYTHONPATH": str(built)}
    result = subprocess.run([sys.executable, "-c", CHOICE_PROBE], capture_output=True, text=True, env=environment,
                            cwd=built, timeout=120)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert Path(probe["file"]).resolve().is_relative_to(built.resolve())      # the release's own coursekit
    assert len(probe["outcomes"]) == len(checks.lessons())
    for task_id, outcomes in probe["outcomes"].items():
        well_formed = {re.sub(r"\[[^]]*\]", "[...]", message)      # the same words whatever the selection
                       for passed, message in outcomes if "are not options" not in message}
        assert not any(passed for passed, _ in outcomes), task_id
        assert len(well_formed) == 1 and "well-formed and recorded" in well_formed.pop(), task_id
    # ... while the course's own checks tell the right selection from the others
    task = checks.find("01.4")
    passed = [chosen for chosen in itertools.combinations("abcde", 3) if checks.evaluate(task, set(chosen)).passed]
    assert len(passed) == 1


def release_here(dest: Path, capsys) -> tuple[int, str]:
    """The release command in this process (a second Python would spend seconds importing nbformat)."""
    capsys.readouterr()
    code = release.main([str(dest), "--root", str(ROOT)])
    return code, capsys.readouterr().err


def test_release_refuses_a_folder_it_did_not_write_and_replaces_its_own(built, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("my own work")
    code, error = release_here(foreign, capsys)
    assert code == 2 and "holds files that no release wrote (thesis.tex)" in error
    assert (foreign / "thesis.tex").read_text() == "my own work" and len(list(foreign.iterdir())) == 1
    again = tmp_path / "again"
    shutil.copytree(built, again)
    (again / ".git").mkdir()
    (again / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (again / "notebooks" / "99_stale.ipynb").write_text("{}")
    code, error = release_here(again, capsys)
    assert code == 0, error
    assert (again / ".git" / "HEAD").exists() and not (again / "notebooks" / "99_stale.ipynb").exists()


def test_a_course_without_a_release_section_gets_told_what_to_add(tmp_path):
    (tmp_path / "course.toml").write_text('repository = "someone/course"\nbranch = "main"\n')
    with pytest.raises(release.ReleaseError, match=r"no \[release\] section"):
        release.release_course(tmp_path)
    (tmp_path / "course.toml").write_text('repository = "someone/course"\nbranch = "main"\n'
                                          '[release]\nrepository = "someone/course"\n')
    with pytest.raises(release.ReleaseError, match="holds the solutions"):
        release.release_course(tmp_path)


IMPORT_ALL = """
import importlib, pkgutil, coursekit
for info in pkgutil.walk_packages(coursekit.__path__, prefix="coursekit."):
    importlib.import_module(info.name)
print(coursekit.__file__)
"""


def test_release_coursekit_imports_whole_and_its_exercise_runs_in_smoke(built):
    # (the 60 s budget per notebook is the main suite's to enforce, on the same notebooks; not timed twice here)
    environment = {**os.environ, "PYTHONPATH": str(built), "COURSEKIT_PROFILE": "smoke", "COURSEKIT_NOTEBOOK_BUDGET_S": "3600"}
    imported = subprocess.run([sys.executable, "-c", IMPORT_ALL],   # nothing in it needs the tools/ it lacks
                              capture_output=True, text=True, env=environment, cwd=built, timeout=300)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert Path(imported.stdout.strip()).resolve().is_relative_to(built.resolve()), imported.stdout
    notebooks = [next((built / "exercises").glob("01_*.ipynb"))]
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                             "--nbval-lax", "-q", *map(str, notebooks)],
                            capture_output=True, text=True, env=environment, cwd=built, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
