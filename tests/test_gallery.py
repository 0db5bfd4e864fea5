"""`make lessons`: every notebook runs, a failure is shown as failed without stopping the others."""
import subprocess
import sys

import nbformat

ROOT_MARKER = "Gallery:"


def write_notebook(path, title, *sources):
    cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nSome prose.")]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def test_gallery_runs_every_notebook_and_marks_the_failing_one(tmp_path):
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    write_notebook(lessons / "01_first.ipynb", "Lesson A · a figure",
                   "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                   "%matplotlib inline",
                   "plt.plot([0, 1], [1, 0]); plt.show()", "print(6 * 7)")
    write_notebook(lessons / "02_broken.ipynb", "Lesson B · broken",
                   "raise ValueError('broken on purpose')", "print('never runs')")
    write_notebook(lessons / "03_after.ipynb", "Lesson C · after the failure", "print('still ran')")
    (lessons / "notes.ipynb").write_text("not a numbered lesson: ignored")
    out = tmp_path / "build"
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.gallery", str(lessons), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 1, result.stderr[-2000:]           # one lesson failed
    assert ROOT_MARKER in result.stdout
    index = (out / "index.html").read_text()
    for title in ("Lesson A · a figure", "Lesson B · broken", "Lesson C · after the failure"):
        assert title in index
    assert "FAILED: ValueError: broken on purpose" in index and "\x1b" not in index
    assert index.count("class='ok'") == 2 and "notes" not in index
    first = (out / "01_first.html").read_text()
    assert "data:image/png;base64," in first and "42" in first     # the figure is embedded
    executed = nbformat.read(out / "03_after.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "still ran\n"
    assert "01_first" in result.stderr                              # the progress bar names it


def test_gallery_of_an_empty_folder_says_what_it_looks_for(tmp_path):
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.gallery", str(tmp_path), "--out",
                             str(tmp_path / "build")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "NN_name.ipynb" in result.stderr and "Traceback" not in result.stderr
