"""The Colab check: the pinned stack parses, the setup cell's install is reproduced, and an
install that would change a pinned package fails naming it (a throwaway venv, tiny local wheels,
no network: the real stack runs in `make colab-check`)."""
import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coursekit.tools import colab_check
from coursekit.tools.course import Course

ROOT = Path(__file__).resolve().parents[1]


def test_pins_hold_colabs_python_and_stack():
    pins = colab_check.read_pins(ROOT / colab_check.REQUIREMENTS)
    assert pins.python == "3.13"
    assert pins.packages["tensorflow"] == "2.20.0" and pins.packages["keras"] == "3.13.2"
    assert pins.packages["numpy"] == "2.1.3" and pins.packages["opencv-python-headless"] == "5.0.0.93"
    assert pins.packages["jupyter-client"] == "7.4.9"  # names compared as pip compares them


def test_a_pin_that_is_not_exact_is_refused(tmp_path):
    (tmp_path / "requirements.txt").write_text("# python_version: 3.13\nnumpy==2.1.3\nkeras>=3\n")
    with pytest.raises(colab_check.ColabCheckError, match=r"requirements.txt:3.*keras>=3"):
        colab_check.read_pins(tmp_path / "requirements.txt")
    (tmp_path / "requirements.txt").write_text("numpy==2.1.3\n")
    with pytest.raises(colab_check.ColabCheckError, match="python_version"):
        colab_check.read_pins(tmp_path / "requirements.txt")


def test_install_is_the_setup_cells_with_this_clone_in_place_of_github():
    args = colab_check.setup_cell_pip_args(ROOT, "0123abc")
    cell_line = next(line for line in Course.load(ROOT).setup_source().splitlines() if "%pip install" in line)
    assert "--quiet" in cell_line and args[0] == "--quiet"
    assert args[-1] == f"coursekit @ git+file://{ROOT.as_posix()}@0123abc"
    assert len(args) == len(cell_line.split()) - 2 - 2  # `%pip install` gone; the spec's 3 words are one arg


def test_missing_python_says_how_to_get_it(monkeypatch):
    monkeypatch.delenv(colab_check.PYTHON_VARIABLE, raising=False)
    monkeypatch.setenv("PYENV_ROOT", "/nonexistent")
    with pytest.raises(colab_check.ColabCheckError, match=r"pyenv install 2\.9.*COURSEKIT_COLAB_PYTHON"):
        colab_check.find_python("2.9")


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A minimal pure-Python wheel, written by hand (no build tools, no network)."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"__version__ = {version!r}\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                                 + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)


@pytest.fixture(scope="module")
def offline_index(tmp_path_factory):
    """Local wheels only: colabpin 1.0 (the 'Colab' package) and 2.0; fakekit 0.1 (fine) and 0.2 (needs colabpin 2).

    One throwaway environment for the module (building it is most of the time), reset by prepare_env.
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _offline_index(tmp_path_factory.mktemp("colab"), monkeypatch)


def _offline_index(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "colabpin", "1.0")
    _wheel(wheels, "colabpin", "2.0")
    _wheel(wheels, "fakekit", "0.1", ("colabpin>=1.0",))
    _wheel(wheels, "fakekit", "0.2", ("colabpin==2.0",))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv(colab_check.PYTHON_VARIABLE, sys.executable)
    version = "%d.%d" % sys.version_info[:2]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# python_version: {version}\ncolabpin==1.0\n")
    return colab_check.read_pins(requirements), tmp_path / "env"


def test_install_that_changes_a_pinned_package_fails_naming_it(offline_index):
    pins, env_dir = offline_index
    base = colab_check.prepare_env(pins, env_dir)
    python = colab_check.env_python(env_dir)
    assert base["colabpin"] == "1.0"

    fine = colab_check.install_like_setup_cell(python, ["--quiet", "fakekit==0.1"], base)
    assert fine.added == {"fakekit": "0.1"} and fine.changed == {}
    assert colab_check.drift_message(fine, pins) == ""

    # the next run reuses the environment: what the last install added is taken away first
    assert colab_check.prepare_env(pins, env_dir) == base
    assert "fakekit" not in colab_check.installed(python)

    drifted = colab_check.install_like_setup_cell(python, ["--quiet", "fakekit==0.2"], base)
    assert drifted.changed == {"colabpin": ("1.0", "2.0")}
    message = colab_check.drift_message(drifted, pins)
    assert "colabpin: 1.0 -> 2.0" in message and "pinned in colab/requirements.txt" in message

    # a reused environment whose pinned package was replaced gets Colab's version back
    assert colab_check.prepare_env(pins, env_dir)["colabpin"] == "1.0"
    assert colab_check.installed(python)["colabpin"] == "1.0"


def test_check_exits_non_zero_and_names_the_package(offline_index, monkeypatch, capsys):
    pins, env_dir = offline_index
    monkeypatch.setattr(colab_check, "read_pins", lambda path: pins)
    monkeypatch.setattr(colab_check, "default_env_dir", lambda pins: env_dir)
    monkeypatch.setattr(colab_check, "setup_cell_pip_args", lambda root, commit: ["--quiet", "fakekit==0.2"])
    assert colab_check.main(["--root", str(ROOT), "--install-only"]) == 1
    err = capsys.readouterr().err
    assert "colab-check FAILED" in err and "colabpin: 1.0 -> 2.0" in err


def test_notebook_list_covers_every_folder():
    found = {path.parent.name for path in colab_check.notebooks(ROOT)}
    assert found == {"notebooks", "solutions", "exercises"}
    assert len(colab_check.notebooks(ROOT)) == sum(len(list((ROOT / f).glob("*.ipynb"))) for f in found)


def test_kernels_run_offline_in_the_smoke_profile(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSEKIT_PROFILE", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    variables = colab_check.kernel_environment(tmp_path)
    assert variables["COURSEKIT_PROFILE"] == "smoke" and variables["COURSEKIT_OFFLINE"] == "1"
    assert "PYTHONPATH" not in variables
    assert variables["PATH"].startswith(str(tmp_path / "bin"))
    assert subprocess.run([sys.executable, "-c", "0"], env=variables).returncode == 0


def test_two_checks_take_turns_with_one_environment(tmp_path, capsys):
    import threading
    env_dir = tmp_path / "colab-env"
    entered = threading.Event()

    def second_check():
        with colab_check.exclusive(env_dir):
            entered.set()

    with colab_check.exclusive(env_dir):
        waiting = threading.Thread(target=second_check)
        waiting.start()
        assert not entered.wait(0.5)  # the second one waits while the first holds the environment
    assert entered.wait(5)
    waiting.join()
    assert "Waiting for another colab-check" in capsys.readouterr().out


def test_notebooks_run_two_at_a_time_and_a_failure_is_reported_by_name(tmp_path, capsys, monkeypatch):
    import nbformat
    monkeypatch.chdir(tmp_path)
    record = ("import time, pathlib\nstart = time.time(); time.sleep(2)\n"
              "pathlib.Path('{name}.times').write_text(f'{{start}} {{time.time()}}')\n")
    for name in ("first", "second"):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(record.format(name=name))]),
                       tmp_path / f"{name}.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]), tmp_path / "broken.ipynb")
    assert colab_check.run_notebooks_here(["first.ipynb", "second.ipynb", "broken.ipynb"], jobs=2) == 1
    printed = capsys.readouterr().out
    assert "broken.ipynb failed:" in printed and "ZeroDivisionError" in printed
    assert "colab-check: 2 passed, 1 failed" in printed
    (start_1, end_1), (start_2, end_2) = ([float(t) for t in (tmp_path / f"{n}.times").read_text().split()]
                                          for n in ("first", "second"))
    assert start_1 < end_2 and start_2 < end_1      # their sleeps overlapped: two kernels at once
