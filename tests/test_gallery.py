"""`make lessons`: every notebook runs, a failure is shown as failed without stopping the others."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import unavailable

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


# ----------------------------------------------------------------------------- figures, whole errors

def run_gallery(lessons, out, environment=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "coursekit.tools.gallery", str(lessons), "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout, env=environment)


def test_figures_drawn_despite_mplbackend_agg_a_lesson_that_drew_none_fails_and_errors_are_whole(tmp_path,
                                                                                                   monkeypatch):
    """Servers and CI often export MPLBACKEND=Agg: a kernel that inherits it draws every figure nowhere
    and the page is empty; the gallery starts kernels without it, and fails a lesson whose cells draw
    but whose page holds no figure. A failure's advice is never cut short."""
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    write_notebook(lessons / "01_plot.ipynb", "Lesson A · a figure",
                   "import matplotlib.pyplot as plt", "plt.plot([0, 1], [1, 0]); plt.show()")
    write_notebook(lessons / "02_blank.ipynb", "Lesson B · draws nowhere",
                   "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt",
                   "plt.plot([0, 1], [1, 0]); plt.show()")
    write_notebook(lessons / "03_text.ipynb", "Lesson C · no figure meant", "print('only words')")
    advice = " ".join(f"step{i}" for i in range(120)) + " END-OF-ADVICE"     # about 900 characters
    write_notebook(lessons / "04_long.ipynb", "Lesson D · long advice",
                   f"raise RuntimeError('first line\\n' + {advice!r})")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    result = run_gallery(lessons, tmp_path / "build", dict(os.environ))
    out = tmp_path / "build"
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "01_plot.ipynb: ok" in result.stdout and "data:image/png;base64," in (out / "01_plot.html").read_text()
    assert "02_blank.ipynb: FAILED" in result.stdout and "NoFigures: 1 cell calls plt.show()" in result.stdout
    assert "03_text.ipynb: ok" in result.stdout          # a lesson that draws nothing on purpose is fine
    assert "04_long.ipynb: FAILED" in result.stdout and "END-OF-ADVICE" in result.stdout
    index = (out / "index.html").read_text()
    assert "NoFigures" in index and "END-OF-ADVICE" in index and "RuntimeError: first line" in index


# ----------------------------------------------------------------------------- a newcomer without internet

LESSONS = Path(__file__).resolve().parents[1] / "notebooks"
OFFLINE_CACHE = os.environ.get("COURSEKIT_OFFLINE_CACHE", "")


def fresh_machine(tmp_path, profile, cache=None):
    """The environment of a fresh clone without internet: an empty home, no Keras cache but ``cache``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("KERAS_HOME", "COURSEKIT_OFFLINE_CACHE", "COURSEKIT_RANDOM_WEIGHTS", "MPLBACKEND")}
    environment.update(HOME=str(home), COURSEKIT_OFFLINE="1", COURSEKIT_PROFILE=profile)
    if cache is not None:
        environment["COURSEKIT_OFFLINE_CACHE"] = str(cache)
    return environment


def prepared_cache(tmp_path):
    """A cache folder as `python -m coursekit.tools.cache build DIR --profile smoke` leaves it
    (tests/test_cache.py runs the build itself), copied from the offline cache of this machine."""
    if not OFFLINE_CACHE:
        unavailable("an offline Keras cache", "COURSEKIT_OFFLINE_CACHE (set in CI) stands for a prepared cache")
    cache = tmp_path / "keras-cache"
    shutil.copytree(OFFLINE_CACHE, cache)
    return cache


@pytest.mark.parametrize("profile, cache_kind", [("quick", "none"), ("smoke", "none"), ("smoke", "empty")])
def test_without_internet_or_weights_no_lesson_runs_and_one_message_names_the_next_step(tmp_path, profile,
                                                                                      cache_kind):
    cache = {"none": None, "empty": tmp_path / "empty-cache"}[cache_kind]
    if cache is not None:
        cache.mkdir()
    start = time.perf_counter()
    result = run_gallery(LESSONS, tmp_path / "build", fresh_machine(tmp_path, profile, cache), timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert seconds < 60, f"the newcomer waited {seconds:.0f} s for the message"
    message = result.stderr
    assert message.count("No lesson was run.") == 1 and "Traceback" not in message
    assert f"python -m coursekit.tools.cache build keras-cache --profile {profile}" in message
    assert f"COURSEKIT_OFFLINE_CACHE=<path to keras-cache> COURSEKIT_PROFILE={profile} make lessons" in message
    assert "mobilenet_v2" in message if profile == "smoke" else "xception" in message
    if cache is not None:
        assert str(cache) in message                                   # the folder that lacks the files
    # never advise what the user already does: the smoke profile is suggested only outside it
    assert ("--profile smoke fetches" in message) == (profile != "smoke")
    assert not (tmp_path / "build").exists() or not list((tmp_path / "build").glob("*.html"))


def test_with_the_cache_prepared_as_the_message_says_a_lesson_runs_offline(tmp_path):
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    write_notebook(lessons / "01_model.ipynb", "Lesson A · a pretrained model",
                   "import coursekit\nfrom coursekit import models\nnet = models.pretrained('mobilenet_v2')\n"
                   "print(net.decode(net.model.predict(net.preprocess(net.load_image('cat')), verbose=0), top=1))")
    result = run_gallery(lessons, tmp_path / "build", fresh_machine(tmp_path, "smoke", prepared_cache(tmp_path)))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "cat" in (tmp_path / "build" / "01_model.html").read_text()


def test_a_lesson_that_still_lacks_weights_stops_the_run_with_one_message(tmp_path):
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    write_notebook(lessons / "01_big.ipynb", "Lesson A · a model the cache lacks",
                   "import coursekit\nfrom coursekit import models\nmodels.pretrained('xception')")
    write_notebook(lessons / "02_after.ipynb", "Lesson B · would fail the same way", "print('never runs')")
    result = run_gallery(lessons, tmp_path / "build", fresh_machine(tmp_path, "smoke", prepared_cache(tmp_path)))
    assert result.returncode == 1
    assert "01_big.ipynb: FAILED" in result.stdout and "02_after" not in result.stdout
    assert result.stderr.count("The ImageNet weights of 'xception' are not cached here") == 1
    assert "python -m coursekit.tools.cache build keras-cache --profile smoke" in result.stderr
    assert "The run stopped" in (tmp_path / "build" / "index.html").read_text()
