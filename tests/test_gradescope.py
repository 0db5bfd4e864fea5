"""The Gradescope autograder: the zip's layout, and its run_autograder run as Gradescope runs it.

Each graded case unpacks the zip into a temporary /autograder tree (source/, submission/,
results/, run_autograder copied to the root as Gradescope's image build does), runs
``run_autograder`` with COURSEKIT_AUTOGRADER_ROOT pointing there (no root needed) and the Python
of these tests, and validates results.json against Gradescope's documented fields.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import unavailable
from coursekit import checks, env
from coursekit.tools import gradescope

ROOT = Path(__file__).resolve().parents[1]
LESSON = "01"                  # the fastest lesson to run
POINTS = sum(task.points for task in checks.tasks(LESSON))
# Gradescope's results.json (gradescope-autograders.readthedocs.io, "Autograder Specifications")
TOP_FIELDS = {"score": (int, float), "execution_time": (int, float), "output": str, "output_format": str,
              "visibility": str, "stdout_visibility": str, "extra_data": dict, "tests": list, "leaderboard": list}
TEST_FIELDS = {"score": (int, float), "max_score": (int, float), "name": str, "number": str, "output": str,
               "output_format": str, "tags": list, "visibility": str, "status": str, "extra_data": dict}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
OUTPUT_FORMATS = {"text", "html", "simple_format", "md", "ansi"}


def validate(results: dict, visibility: str = "visible") -> None:
    """Every field is one Gradescope documents, with its type; the score adds up; the points are the lesson's."""
    assert set(results) <= set(TOP_FIELDS), set(results) - set(TOP_FIELDS)
    for name, value in results.items():
        assert isinstance(value, TOP_FIELDS[name]) and not isinstance(value, bool), (name, value)
    assert results["visibility"] in VISIBILITIES and results["stdout_visibility"] in VISIBILITIES
    assert results["output_format"] in OUTPUT_FORMATS
    tests = results["tests"]
    assert [test["number"] for test in tests] == [task.id for task in checks.tasks(LESSON)]
    for test in tests:
        assert set(test) <= set(TEST_FIELDS), set(test) - set(TEST_FIELDS)
        for name, value in test.items():
            assert isinstance(value, TEST_FIELDS[name]) and not isinstance(value, bool), (name, value)
        assert test["name"].startswith(test["number"] + " ") and len(test["name"]) > len(test["number"]) + 3
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] == ("passed" if test["score"] == test["max_score"] else "failed")
        assert test["visibility"] == visibility and test["output_format"] in OUTPUT_FORMATS and test["output"]
    assert results["score"] == sum(test["score"] for test in tests)
    assert sum(test["max_score"] for test in tests) == POINTS
    assert results["execution_time"] >= 0


def keras_cache() -> Path:
    """A Keras cache holding the smoke profile's weights, for an offline build."""
    for candidate in (os.environ.get(env.OFFLINE_CACHE_VARIABLE, ""), str(Path.home() / ".keras")):
        if candidate and Path(candidate).is_dir() and not gradescope.missing_files(Path(candidate), "smoke"):
            return Path(candidate)
    unavailable("the smoke profile's weights", "no Keras cache with them (set COURSEKIT_OFFLINE_CACHE)")


def build(tmp: Path, *options: str) -> Path:
    out = tmp / "autograder.zip"
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.gradescope", "build", "--lesson", LESSON,
                             "--out", str(out), *options], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("build"), "--keras-cache", str(keras_cache()), "--timeout", "240",
                 "--visibility", "after_due_date")


def unpack(archive: Path, root: Path) -> Path:
    """``archive`` laid out as Gradescope lays it out in /autograder."""
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(root / "source")
        for info in opened.infolist():  # extractall drops the permissions the zip records
            (root / "source" / info.filename).chmod((info.external_attr >> 16) & 0o777)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    return root


def run_autograder(root: Path, timeout: float = 600) -> dict:
    environment = {**os.environ, gradescope.ROOT_VARIABLE: str(root), gradescope.PYTHON_VARIABLE: sys.executable}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run([str(root / "run_autograder")], capture_output=True, text=True, env=environment,
                            cwd=root, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def write_notebook(path: Path, sources: list[str]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["coursekit"] = {"lesson": LESSON}
    nbformat.write(notebook, path)


# ----------------------------------------------------------------------------- the zip

def test_zip_has_gradescope_layout_settings_and_cpu_requirements(autograder):
    with zipfile.ZipFile(autograder) as opened:
        names = set(opened.namelist())
        modes = {info.filename: (info.external_attr >> 16) for info in opened.infolist()}
        config = json.loads(opened.read(gradescope.CONFIG_FILE))
        requirements = opened.read("requirements.txt").decode()
        setup = opened.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder"} <= names            # at the zip's root, not in a folder
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR and stat.S_ISREG(modes[script])
    assert config["lesson"] == LESSON and config["visibility"] == "after_due_date" and config["timeout"] == 240
    assert f"coursekit-src/coursekit/checks/lesson{LESSON}.py" in names
    assert "coursekit-src/coursekit/tools/grade.py" in names
    assert not any("__pycache__" in name for name in names)
    assert {f"keras/{name}" for name in gradescope.needed_files("smoke")} <= names   # weights for an offline build
    lines = [line for line in requirements.splitlines() if not line.startswith("#")]
    assert any(line.startswith("tensorflow-cpu") for line in lines)
    assert not any(line.split("<")[0].split(">")[0] in ("tensorflow", "pytest", "nbval", "ruff") for line in lines)
    assert "--python 3.12" in setup and "requirements.txt" in setup


def test_the_autograders_memory_limit_is_the_graders_own_default():
    from coursekit.tools import sandbox
    assert gradescope.Config("04").memory_mb == sandbox.MEMORY_MB


def test_build_refuses_what_it_cannot_build(tmp_path):
    empty = tmp_path / "cache"
    (empty / "models").mkdir(parents=True)
    with pytest.raises(gradescope.BuildError, match="lacks models/mobilenet_v2"):
        gradescope.build(LESSON, tmp_path / "a.zip", ROOT, keras_cache=empty)
    with pytest.raises(gradescope.BuildError, match="lessons with exercises: 01"):
        gradescope.build("99", tmp_path / "a.zip", ROOT)
    with pytest.raises(gradescope.BuildError, match="--visibility"):
        gradescope.build(LESSON, tmp_path / "a.zip", ROOT, visibility="hidden")   # a hidden test can hold no points
    assert not (tmp_path / "a.zip").exists()


def test_scripts_parse_and_the_installation_check_passes(autograder, tmp_path, capsys):
    """What setup.sh runs last, run_autograder --check, on the unpacked zip (setup.sh itself needs root and apt).

    Its passing case runs in this process (TensorFlow is loaded here already; the graded cases below
    run the zip's own coursekit with TensorFlow); the script's --check branch runs on the failing case.
    """
    root = unpack(autograder, tmp_path / "check")
    for script in (root / "source" / "setup.sh", root / "run_autograder"):
        parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
    assert gradescope.check(root) == 0, capsys.readouterr().err
    assert f"Lesson {LESSON}: {len(checks.tasks(LESSON))} tasks, {POINTS} points" in capsys.readouterr().out
    environment = {**os.environ, gradescope.ROOT_VARIABLE: str(root), gradescope.PYTHON_VARIABLE: sys.executable}
    (root / "source" / "keras" / "models" / gradescope.needed_files("smoke")[0].split("/")[1]).unlink()
    result = subprocess.run(["bash", str(root / "run_autograder"), "--check"], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 1 and "lacks ['models/mobilenet_v2" in result.stderr


def test_find_notebook_takes_one_notebook_at_any_depth(tmp_path):
    (tmp_path / "work" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "work" / ".ipynb_checkpoints" / "mine-checkpoint.ipynb").write_text("{}")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._mine.ipynb").write_text("")
    (tmp_path / "work" / "notes.txt").write_text("")
    assert gradescope.find_notebook(tmp_path)[0] is None
    (tmp_path / "work" / "My Notebook.IPYNB").write_text("{}")
    assert gradescope.find_notebook(tmp_path) == (tmp_path / "work" / "My Notebook.IPYNB", "")
    (tmp_path / "second.ipynb").write_text("{}")
    found, problem = gradescope.find_notebook(tmp_path)
    assert found is None and "2 notebooks" in problem and "second.ipynb" in problem and "exactly one" in problem


# ----------------------------------------------------------------------------- run_autograder

def test_no_notebook_gets_a_clear_message(autograder, tmp_path):
    # (two notebooks take the same path with find_notebook's other message, tested above)
    root = unpack(autograder, tmp_path / "none")
    (root / "submission" / "answers.py").write_text("print('hi')")
    results = run_autograder(root, timeout=120)
    validate(results, "after_due_date")
    assert results["score"] == 0 and "no .ipynb notebook" in results["output"] and "answers.py" in results["output"]


def test_an_invalid_file_scores_zero_and_says_why(autograder, tmp_path):
    root = unpack(autograder, tmp_path / "invalid")
    (root / "submission" / "=mine\x1b[2J.ipynb").write_text('{"cells": [ this is not JSON')
    results = run_autograder(root, timeout=120)
    validate(results, "after_due_date")
    assert results["score"] == 0 and results["extra_data"]["status"] == "invalid"
    assert "not a valid notebook" in results["output"]
    assert "\x1b" not in json.dumps(results, ensure_ascii=False) and "\\x1b[2J" in results["output"]


def test_the_solution_gets_full_marks(autograder, tmp_path):
    root = unpack(autograder, tmp_path / "solution")
    solution = next((ROOT / "solutions").glob(f"{LESSON}_*.ipynb"))
    shutil.copy(solution, root / "submission" / "Copy of my work (2).ipynb")    # any name will do
    before = (root / "submission" / "Copy of my work (2).ipynb").read_bytes()
    results = run_autograder(root)
    validate(results, "after_due_date")
    assert results["score"] == POINTS, results["output"]
    assert all(test["status"] == "passed" for test in results["tests"])
    assert results["extra_data"]["status"] == "ok" and "Copy of my work (2).ipynb" in results["output"]
    assert (root / "submission" / "Copy of my work (2).ipynb").read_bytes() == before    # never modified


def test_the_exercise_gets_zero(autograder, tmp_path):
    root = unpack(autograder, tmp_path / "exercise")
    shutil.copy(next((ROOT / "exercises").glob(f"{LESSON}_*.ipynb")), root / "submission" / "exercise.ipynb")
    results = run_autograder(root)
    validate(results, "after_due_date")
    assert results["score"] == 0 and results["extra_data"]["status"] == "errors"
    # each task's feedback is the check's own hint about the unanswered stub
    assert all("NotImplementedError" in test["output"] or "no statement selected" in test["output"]
               for test in results["tests"]), [test["output"] for test in results["tests"]]


def test_a_notebook_that_never_ends_times_out_keeping_what_it_answered(autograder, tmp_path):
    root = unpack(autograder, tmp_path / "loop")
    config = json.loads((root / "source" / gradescope.CONFIG_FILE).read_text())
    (root / "source" / gradescope.CONFIG_FILE).write_text(json.dumps({**config, "timeout": 10}))  # as --timeout 10
    write_notebook(root / "submission" / "loop.ipynb", ['true_statements = {"a", "c", "e"}', "while True:\n    pass"])
    results = run_autograder(root, timeout=300)
    validate(results, "after_due_date")
    assert results["extra_data"]["status"] == "timeout" and "did not finish in time" in results["output"]
    by_task = {test["number"]: test["score"] for test in results["tests"]}
    assert by_task == {"01.1": 0, "01.2": 0, "01.3": 0, "01.4": 2}    # answered before the loop: kept
    assert results["execution_time"] < 120
