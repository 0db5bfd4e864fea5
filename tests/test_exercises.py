"""exercises/ is generated from solutions/: stubs instead of solutions, the right tags, nothing stale."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit.tools import course, exercises

ROOT = Path(__file__).resolve().parents[1]
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def test_exercises_are_up_to_date_with_solutions():
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.exercises", "build", "--check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_solution_has_an_exercise_and_no_solution_code_leaks():
    solutions = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert solutions
    for path in solutions:
        solution = nbformat.read(path, as_version=4)
        exercise_text = (ROOT / "exercises" / path.name).read_text()
        exercise = nbformat.reads(exercise_text, as_version=4)
        assert exercise.metadata["coursekit"]["lesson"] == path.name[:2]
        assert "BEGIN SOLUTION" not in exercise_text
        hidden = [line.strip() for cell in solution.cells for line in _solution_lines(cell.source)]
        for line in hidden:
            if len(line) > 12:  # skip short lines such as "return x"
                assert line not in exercise_text, f"{path.name}: solution line leaked: {line}"
        badge = course.tagged_cells(exercise, course.BADGE_TAG)[0].source
        assert f"exercises/{path.name}" in badge and "solutions/" not in badge


def _solution_lines(source):
    inside = False
    for line in source.splitlines():
        if line.strip() == exercises.BEGIN:
            inside = True
        elif line.strip() == exercises.END:
            inside = False
        elif inside:
            yield line


def test_strip_solutions_keeps_indentation_and_code_around():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\nprint(f)"
    stripped, indents = exercises.strip_solutions(source)
    assert stripped == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(f)"
    assert indents == [4]


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "no '### END SOLUTION'"),
    ("x = 1\n### END SOLUTION", "never opened"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_broken_markers_are_reported_with_their_place(source, message):
    with pytest.raises(exercises.SolutionError, match=message):
        exercises.strip_solutions(source, where="x.ipynb, cell 3")


def tiny_solution():
    nb = nbformat.v4.new_notebook()
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb.cells = [
        markdown("badge", metadata={"tags": ["course-badge"]}),
        code("setup", metadata={"tags": ["course-setup"]}),
        code("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
             outputs=[nbformat.v4.new_output("stream", text="old output")], execution_count=3),
        code("answer = None\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"),
        code("print(f(answer))", metadata={"tags": ["uses-answer"]}),
        markdown("The answer is 42 because ...", metadata={"tags": ["solution-only"]}),
        code("check('01.3', f)"),
    ]
    return nb


def test_exercise_from_solution():
    exercise = exercises.exercise_from_solution(tiny_solution(), "exercises/01_x.ipynb", "01",
                                                course.Course("owner/name", "main"))
    sources = [cell.source for cell in exercise.cells]
    assert sources[2] == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert sources[3] == f"answer = None\n{STUB}"
    assert not any("42" in source for source in sources), "the solution-only cell and the answer are gone"
    tags = [cell.metadata.get("tags", []) for cell in exercise.cells]
    assert "raises-exception" not in tags[2]      # defining f does not raise
    assert "raises-exception" in tags[3]          # a top-level stub raises
    assert "raises-exception" in tags[4]          # calls the student's function
    assert "raises-exception" not in tags[5]      # the check cell prints a hint instead
    assert all(cell.outputs == [] and cell.execution_count is None
               for cell in exercise.cells if cell.cell_type == "code")
    assert "github/owner/name/blob/main/exercises/01_x.ipynb" in sources[0]


def make_course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    for item in ("course.toml", "README.md", "solutions", "notebooks"):
        source = ROOT / item
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / item)
    (root / "exercises").mkdir()
    return root


def test_build_writes_detects_stale_and_removes_orphans(tmp_path):
    root = make_course(tmp_path)
    names = sorted(path.name for path in (root / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert exercises.build(root, check=True) == [f"exercises/{name}" for name in names]
    exercises.build(root)
    assert exercises.build(root, check=True) == []
    for name in names:
        assert (root / "exercises" / name).read_text() == (ROOT / "exercises" / name).read_text()
    assert "exercises/01_inside_a_cnn.ipynb" in (root / "README.md").read_text()

    solution_path = root / "solutions" / "01_inside_a_cnn.ipynb"
    solution = nbformat.read(solution_path, as_version=4)
    solution.cells.insert(3, nbformat.v4.new_markdown_cell("A new hint for students."))
    nbformat.write(solution, solution_path)
    orphan = root / "exercises" / "07_gone.ipynb"
    orphan.write_text("{}")
    assert exercises.build(root, check=True) == ["exercises/01_inside_a_cnn.ipynb", "exercises/07_gone.ipynb"]
    exercises.build(root)
    assert exercises.build(root, check=True) == [] and not orphan.exists()


@pytest.mark.parametrize("change, message", [
    (lambda src: src.replace('check("01.3", tile_position)', 'check("01.3", tile_pos)'), "answer is named"),
    (lambda src: src.replace('check("01.3", tile_position)', 'check("01.9", tile_position)'), "registers only"),
    (lambda src: src.replace('check("01.3", tile_position)', 'print(tile_position)'), "no check cell"),
])
def test_build_refuses_a_solution_that_does_not_match_its_checks(tmp_path, change, message):
    root = make_course(tmp_path)
    path = root / "solutions" / "01_inside_a_cnn.ipynb"
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        cell.source = change(cell.source)
    nbformat.write(notebook, path)
    with pytest.raises(exercises.SolutionError, match=message):
        exercises.build(root, check=True)
    if message != "answer is named":
        return  # the command line is tested once
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.exercises", "build", "--root", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr
