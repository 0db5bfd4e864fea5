"""Run the whole course on Google Colab's own package stack, offline: ``make colab-check``.

Students run the notebooks on Colab, whose packages are not the ones ``make test`` installs.
``colab/requirements.txt`` pins Colab's Python and packages. This tool

1. builds a virtual environment with that Python and exactly those packages (or reuses the one
   it built before, once it has checked that it still matches the pins),
2. installs coursekit into it the way every notebook's setup cell does (``%pip install`` of the
   repository, with its dependencies), from this clone's committed ``HEAD``,
3. fails, naming each package, if that install changed the version of any package that was
   there before (Colab's own packages must stay as they are), and lists what it added,
4. executes every notebook (``notebooks/``, ``solutions/``, ``exercises/``; cells tagged
   ``raises-exception`` may fail, as under nbval) in that environment's own Jupyter kernel, in
   the smoke profile and offline, printing each notebook's time, and fails on any error.

    python -m coursekit.tools.colab_check --jobs 2        # all of it, two notebooks at a time (`make colab-check`)
    python -m coursekit.tools.colab_check --install-only  # steps 1-3
    python -m coursekit.tools.colab_check notebooks/01_inside_a_cnn.ipynb

The module imports only the standard library: the same file runs the notebooks inside the
Colab environment (``--run-notebooks``), with that environment's nbclient.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REQUIREMENTS = Path("colab") / "requirements.txt"
NOTEBOOK_FOLDERS = ("notebooks", "solutions", "exercises")
ENV_VARIABLE = "COURSEKIT_COLAB_ENV"        # where the environment lives (default: a user cache folder)
PYTHON_VARIABLE = "COURSEKIT_COLAB_PYTHON"  # the Python to build it with (default: found on PATH / pyenv)
BASE_FREEZE = "colab-base-freeze.json"      # the environment's packages right after it was built
CELL_TIMEOUT_S = 600
# What the versions line reports: (label, import name, attribute holding the version).
REPORTED_MODULES = (("tensorflow", "tensorflow", "__version__"), ("keras", "keras", "__version__"),
                    ("numpy", "numpy", "__version__"), ("cv2", "cv2", "__version__"),
                    ("scikit-image", "skimage", "__version__"), ("scikit-learn", "sklearn", "__version__"),
                    ("matplotlib", "matplotlib", "__version__"), ("tf-keras-vis", "tf_keras_vis", "__version__"),
                    ("coursekit", "coursekit", "__version__"))


class ColabCheckError(RuntimeError):
    """The Colab stack cannot be built, the setup install changed it, or a notebook failed."""


# ----------------------------------------------------------------------------- the pinned stack

@dataclasses.dataclass(frozen=True)
class Pins:
    """What ``colab/requirements.txt`` says Colab has."""

    python: str                 # "3.13": major.minor of Colab's Python
    packages: dict[str, str]    # normalised package name -> exact version
    text: str                   # the file's text (its hash names the environment)


def normalise(name: str) -> str:
    """A package name as pip compares them (PEP 503): ``Jupyter_Client`` -> ``jupyter-client``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str | Path = REQUIREMENTS) -> Pins:
    """Parse ``name==version`` lines and the ``# python_version: X.Y`` line of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ColabCheckError(f"No pinned Colab stack at {str(path)!r}: run from the repository root.")
    text = path.read_text()
    python = re.search(r"^#\s*python_version:\s*(\d+\.\d+)\s*$", text, flags=re.MULTILINE)
    if not python:
        raise ColabCheckError(f"{path} needs a line '# python_version: 3.13' (Colab's Python, major.minor).")
    packages = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not match:
            raise ColabCheckError(f"{path}:{number}: expected 'name==version' (an exact Colab pin), got {line!r}.")
        packages[normalise(match.group(1))] = match.group(2)
    return Pins(python.group(1), packages, text)


# ----------------------------------------------------------------------------- the environment

def find_python(version: str) -> str:
    """A Python ``version`` (``"3.13"``) interpreter: $COURSEKIT_COLAB_PYTHON, ``pythonX.Y``, or pyenv's."""
    candidates = []
    if os.environ.get(PYTHON_VARIABLE):
        candidates.append(os.environ[PYTHON_VARIABLE])
    candidates.append(f"python{version}")
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(str(p) for p in Path(pyenv_root).glob(f"versions/{version}.*/bin/python{version}"))
    for candidate in candidates:
        if _python_version(candidate) == version:
            return candidate
    raise ColabCheckError(
        f"Colab's Python {version} was not found (tried {', '.join(candidates)}). Install it, e.g. "
        f"`pyenv install {version}`, `apt-get install python{version} python{version}-venv`, or "
        f"`uv python install {version}`; or set {PYTHON_VARIABLE}=/path/to/python{version}.")


def _python_version(executable: str) -> str | None:
    try:
        result = subprocess.run([executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def default_env_dir(pins: Pins) -> Path:
    """Outside the clone, so that a fresh clone on the same machine reuses it; named by the pins."""
    if os.environ.get(ENV_VARIABLE):
        return Path(os.environ[ENV_VARIABLE]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(pins.text.encode()).hexdigest()[:12]
    return cache / "coursekit" / f"colab-py{pins.python}-{digest}"


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def pip(python: str | Path, *args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m pip args``; raise ColabCheckError with pip's own words when it fails."""
    command = [str(python), "-m", "pip", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    output = _drop_noise(result.stdout + result.stderr)
    if result.returncode != 0:
        raise ColabCheckError(f"`{shlex.join(command)}` failed (exit {result.returncode}):\n{output[-4000:]}")
    if output.strip() and not quiet:
        print(output.rstrip())
    return result


def _drop_noise(text: str) -> str:
    # pip warns once per package about configured local index folders that do not exist
    return "\n".join(line for line in text.splitlines() if "is ignored: it is neither a file nor a directory" not in line)


def installed(python: str | Path) -> dict[str, str]:
    """Every package in the environment of ``python``: normalised name -> version (``pip list``)."""
    result = pip(python, "list", "--format=json", "--disable-pip-version-check")
    return {normalise(item["name"]): item["version"] for item in json.loads(result.stdout)}


def pin_mismatches(packages: dict[str, str], pins: Pins) -> list[str]:
    """``"numpy 2.2.0 (Colab: 2.1.3)"`` for every pinned package missing or at another version."""
    return [f"{name} {packages.get(name, 'missing')} (Colab: {version})"
            for name, version in sorted(pins.packages.items()) if packages.get(name) != version]


def prepare_env(pins: Pins, env_dir: Path, python: str | None = None) -> dict[str, str]:
    """The Colab environment at ``env_dir`` with only its base packages; returns them.

    Reused when it was built from the same pins and still holds them: whatever a previous run
    installed on top (coursekit and what it brought) is uninstalled first. Otherwise rebuilt.
    """
    base_file = env_dir / BASE_FREEZE
    if env_python(env_dir).exists() and base_file.exists():
        base = json.loads(base_file.read_text())
        now = installed(env_python(env_dir))
        extra = sorted(set(now) - set(base))
        if extra:  # what the previous run's setup install added
            pip(env_python(env_dir), "uninstall", "--yes", *extra)
        changed = [f"{name}=={version}" for name, version in base.items() if now.get(name) != version]
        if changed:  # a failed run may have replaced some: put Colab's versions back
            pip(env_python(env_dir), "install", "--quiet", "--no-deps", *changed)
        if extra or changed:
            now = installed(env_python(env_dir))
        if now == base and not pin_mismatches(now, pins) and _python_version(str(env_python(env_dir))) == pins.python:
            print(f"Reusing the Colab environment {env_dir} (it matches {REQUIREMENTS}).")
            return base
        print(f"The Colab environment {env_dir} no longer matches {REQUIREMENTS}: rebuilding it.")
    python = python or find_python(pins.python)
    if env_dir.exists():
        shutil.rmtree(env_dir)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"Building the Colab environment {env_dir} with {python} (a few minutes, once) ...", flush=True)
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True)
    requirements = env_dir / "requirements.txt"
    requirements.write_text(pins.text)
    pip(env_python(env_dir), "install", "--quiet", "-r", str(requirements))
    base = installed(env_python(env_dir))
    wrong = pin_mismatches(base, pins)
    if wrong:
        raise ColabCheckError("The Colab environment does not hold the pinned versions: " + "; ".join(wrong))
    base_file.write_text(json.dumps(base, indent=1, sort_keys=True))
    print(f"Built in {time.perf_counter() - started:.0f} s: {len(base)} packages.")
    return base


# ----------------------------------------------------------------------------- the setup cell's install

@dataclasses.dataclass(frozen=True)
class InstallReport:
    """What installing coursekit did to the environment."""

    added: dict[str, str]                 # package -> version, not there before
    changed: dict[str, tuple[str, str]]   # package -> (before, after); after "removed" if uninstalled


def setup_cell_pip_args(root: Path, commit: str) -> list[str]:
    """The arguments of the setup cell's ``%pip install``, its GitHub URL replaced by this clone at ``commit``."""
    from coursekit.tools.course import Course
    course = Course.load(root)
    line = next(line.strip() for line in course.setup_source().splitlines() if line.strip().startswith("%pip install"))
    args = shlex.split(line)[2:]
    local = f"coursekit @ git+file://{root.resolve().as_posix()}@{commit}"
    if course.install_spec not in args:
        raise ColabCheckError(f"The setup cell's install line {line!r} does not install {course.install_spec!r}.")
    return [local if arg == course.install_spec else arg for arg in args]


def install_like_setup_cell(python: str | Path, pip_args: list[str], before: dict[str, str]) -> InstallReport:
    """``pip install pip_args`` into ``python``'s environment; compare its packages with ``before``."""
    pip(python, "install", *pip_args, quiet=False)  # pip's own warnings (a dependency conflict) are shown
    after = installed(python)
    added = {name: after[name] for name in sorted(set(after) - set(before))}
    changed = {name: (version, after.get(name, "removed")) for name, version in sorted(before.items())
               if after.get(name) != version}
    return InstallReport(added, changed)


def drift_message(report: InstallReport, pins: Pins) -> str:
    """Why the check fails when the install changed Colab's packages; '' when it did not."""
    if not report.changed:
        return ""
    lines = [f"  {name}: {old} -> {new}" + ("  (pinned in colab/requirements.txt)" if name in pins.packages else "")
             for name, (old, new) in report.changed.items()]
    return ("Installing coursekit the way the notebooks' setup cell does changed packages Colab already has:\n"
            + "\n".join(lines) + "\nOn Colab this would replace them under a running runtime. Loosen the version "
            "bounds in pyproject.toml's `dependencies` (and of what they require) so that Colab's versions satisfy them.")


# ----------------------------------------------------------------------------- running the notebooks

def notebooks(root: Path) -> list[Path]:
    return [path for folder in NOTEBOOK_FOLDERS for path in sorted((root / folder).glob("*.ipynb"))]


def kernel_environment(env_dir: Path) -> dict[str, str]:
    """The kernels' environment: the smoke profile, offline, pretrained weights required.

    Jupyter and IPython read their settings and kernel specs from folders inside ``env_dir``, so
    that the ``python3`` kernel is the Colab environment's own and no user configuration leaks in.
    """
    variables = dict(os.environ)
    variables.setdefault("COURSEKIT_PROFILE", "smoke")
    variables["COURSEKIT_OFFLINE"] = "1"
    variables.setdefault("COURSEKIT_REQUIRE_PRETRAINED", "1")
    variables["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger: no "frozen modules" lines
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH", "MPLBACKEND"):
        variables.pop(name, None)
    for name, folder in (("JUPYTER_DATA_DIR", "jupyter-data"), ("JUPYTER_CONFIG_DIR", "jupyter-config"),
                         ("IPYTHONDIR", "ipython")):
        variables[name] = str(env_dir / folder)
    variables["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{variables.get('PATH', '')}"
    return variables


def run_notebooks_here(paths: list[str], jobs: int = 1) -> int:
    """Inside the Colab environment: execute each notebook with nbclient, ``jobs`` at a time; 0 when all ran.

    Each notebook gets its own kernel. Two at a time keep two cores busy while a kernel traces a
    model in Python (one core); the times printed are then those of notebooks sharing the machine.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    failures = []
    total = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = [pool.submit(_execute_notebook, name) for name in paths]
        for run in as_completed(runs):
            name, seconds, error = run.result()
            if error is not None:
                failures.append((name, error))
            print(f"  {seconds:6.1f} s  {'ok' if error is None else 'FAILED':6}  {name}", flush=True)
    print(f"  {time.perf_counter() - total:6.1f} s  in all, {len(paths)} notebooks, {jobs} at a time", flush=True)
    for name, why in sorted(failures):
        print(f"\n{name} failed:\n{why[-3000:]}")
    print(f"colab-check: {len(paths) - len(failures)} passed, {len(failures)} failed", flush=True)
    return 1 if failures else 0


def _execute_notebook(name: str) -> tuple[str, float, str | None]:
    """Execute one notebook in a new kernel: ``(name, seconds, None)``, or the error as text."""
    import nbclient
    import nbformat
    path = Path(name)
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    try:
        client.execute()
        error = None
    except Exception as failure:  # CellExecutionError, a dead kernel, a timeout: report and go on
        error = f"{type(failure).__name__}: {failure}"
    return name, time.perf_counter() - started, error


def versions_line(env_dir: Path, notebook_folder: Path) -> str:
    """The versions the kernel will import, as imported by the environment's Python."""
    probe = ("import importlib, json, sys\n"
             f"modules = {[(label, module, attr) for label, module, attr in REPORTED_MODULES]!r}\n"
             "found = {'python': sys.version.split()[0]}\n"
             "for label, module, attr in modules:\n"
             "    found[label] = getattr(importlib.import_module(module), attr)\n"
             "found['coursekit from'] = importlib.import_module('coursekit').__file__\n"
             "print(json.dumps(found))\n")
    # from a notebook folder, as a kernel imports them (its working folder is first on sys.path)
    result = subprocess.run([str(env_python(env_dir)), "-c", probe], capture_output=True, text=True,
                            env=kernel_environment(env_dir), cwd=notebook_folder)
    if result.returncode != 0:
        raise ColabCheckError(f"The Colab environment cannot import the course's packages:\n{result.stderr[-3000:]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    if not Path(found["coursekit from"]).resolve().is_relative_to(env_dir.resolve()):
        raise ColabCheckError(f"The kernels would import coursekit from {found['coursekit from']}, not from the "
                              f"installed copy in {env_dir}: the check would not test what the setup cell installs.")
    return " | ".join(f"{name} {version}" for name, version in found.items())


# ----------------------------------------------------------------------------- the whole check

def head_commit(root: Path) -> str:
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if result.returncode != 0:
        raise ColabCheckError(f"{root} is not a git clone with a commit: the setup cell installs coursekit from git.")
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "coursekit",
                            "pyproject.toml"], capture_output=True, text=True).stdout.strip()
    if dirty:
        print("Note: coursekit has uncommitted changes; the setup cell's install (and so this check) uses the "
              "committed HEAD. Commit them to check them.")
    return result.stdout.strip()


@contextlib.contextmanager
def exclusive(env_dir: Path):
    """Hold ``env_dir``'s lock: two checks (two clones on one machine) never share the environment at once."""
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.parent / f"{env_dir.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another colab-check to finish with {env_dir} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def check(root: Path, paths: list[str] | None = None, install_only: bool = False, jobs: int = 1) -> int:
    pins = read_pins(root / REQUIREMENTS)
    env_dir = default_env_dir(pins)
    with exclusive(env_dir):
        return _check(root, pins, env_dir, paths, install_only, jobs)


def _check(root: Path, pins: Pins, env_dir: Path, paths: list[str] | None, install_only: bool,
           jobs: int = 1) -> int:
    started = time.perf_counter()
    python = env_python(env_dir)
    base = prepare_env(pins, env_dir)
    commit = head_commit(root)
    pip_args = setup_cell_pip_args(root, commit)
    print(f"Setup cell's install: pip install {shlex.join(pip_args)}", flush=True)
    report = install_like_setup_cell(python, pip_args, base)
    message = drift_message(report, pins)
    if message:
        raise ColabCheckError(message)
    print("The install changed none of Colab's packages; it added only: "
          + ", ".join(f"{name} {version}" for name, version in report.added.items()))
    print("Colab stack: " + versions_line(env_dir, root / NOTEBOOK_FOLDERS[0]), flush=True)
    if install_only:
        return 0
    chosen = paths or [str(path.relative_to(root)) for path in notebooks(root)]
    variables = kernel_environment(env_dir)
    print(f"Executing {len(chosen)} notebooks, {jobs} at a time, in the Colab environment (profile "
          f"{variables['COURSEKIT_PROFILE']}, offline):", flush=True)
    # -P: the tools folder is not put on sys.path, so the kernel and nbclient import only the environment's
    code = subprocess.run([str(python), "-P", str(Path(__file__).resolve()), "--run-notebooks", "--jobs", str(jobs),
                           *chosen], cwd=root, env=variables).returncode
    print(f"colab-check {'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - started:.0f} s.")
    return code


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--jobs takes a whole number >= 1 (notebooks at a time); got {text!r}")
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.colab_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="notebooks to execute (default: all of them)")
    parser.add_argument("--install-only", action="store_true", help="build, install and compare; run no notebook")
    parser.add_argument("--run-notebooks", action="store_true", help=argparse.SUPPRESS)  # inside the Colab env
    parser.add_argument("--root", default=".", help="repository root (default: here)")
    parser.add_argument("--jobs", type=_positive_int, default=1,
                        help="notebooks executed at a time, each in its own kernel (default: 1)")
    args = parser.parse_args(argv)
    if args.run_notebooks:
        return run_notebooks_here(args.notebooks, args.jobs)
    try:
        return check(Path(args.root).resolve(), args.notebooks, args.install_only, args.jobs)
    except ColabCheckError as error:
        print(f"colab-check FAILED: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
