"""A Gradescope autograder for one lesson's exercises, grading with the course's own grader.

    python -m coursekit.tools.gradescope build --lesson 04 --out autograder.zip [--profile smoke]
        [--timeout 600] [--check-timeout 20] [--visibility visible|after_due_date|after_published]
        [--keras-cache DIR] [--coursekit bundle|github]

writes the zip that Gradescope's "Configure Autograder" page takes. Gradescope unpacks it into
``/autograder/source``, runs ``setup.sh`` once (as root, online) to build the image, then, for every
submission, runs ``run_autograder`` with the student's files in ``/autograder/submission`` and
reads ``/autograder/results/results.json``. In the zip:

* ``setup.sh``: installs Python 3.12 (with uv), the course's requirements with CPU TensorFlow,
  coursekit (the copy in ``coursekit-src/``, taken from this repository at build time, or, with
  ``--coursekit github``, the repository of ``course.toml`` at this commit), and the ImageNet
  weights the profile needs (downloaded there, or the copy in ``keras/`` made by ``--keras-cache``
  for a build without internet); then checks the installation;
* ``run_autograder``: runs ``python -m coursekit.tools.gradescope run``, which finds the student's
  notebook (any name; no notebook or several is a clear message), grades it with
  :func:`coursekit.tools.grade.grade_all`, the same code as the command line grader, and writes
  ``results.json``: the total ``score``, one test per task (``name``, ``score``, ``max_score``, the
  check's feedback as ``output``, ``visibility``), the status and reason in ``output``,
  ``execution_time``. ``COURSEKIT_AUTOGRADER_ROOT`` replaces ``/autograder`` (tests run it in a
  temporary folder without root) and ``COURSEKIT_AUTOGRADER_PYTHON`` the Python that setup.sh made.
* ``autograder.json``: the lesson, profile, time limits and visibility chosen at build time.

The sandbox: where bubblewrap can make namespaces in the container, each notebook runs in the
grader's sandbox as on an instructor's machine. Gradescope's containers usually cannot, and then
the container is the sandbox: it holds one submission and is thrown away afterwards, but inside
it the student's kernel runs with the autograder's permissions (it can read the autograder's
files and could rewrite its own results.json). The results' ``extra_data`` and the autograder's
stdout say which case applied.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .. import checks
from .files import write_atomically
from .safe_text import inert as printable

CONFIG_FILE = "autograder.json"
ROOT_VARIABLE = "COURSEKIT_AUTOGRADER_ROOT"
PYTHON_VARIABLE = "COURSEKIT_AUTOGRADER_PYTHON"
DEFAULT_ROOT = "/autograder"
VISIBILITIES = ("visible", "after_due_date", "after_published")  # "hidden" is for tests worth no points
PYTHON_VERSION = "3.12"
# Requirements only a developer needs (tests, notebooks' editor, linters): not in the autograder.
DEVELOPMENT_ONLY = {"pytest", "pytest-xdist", "pytest-timeout", "nbval", "nbstripout", "ruff", "jupyterlab"}
SKIPPED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
STARTUP_SECONDS = 60   # Gradescope's budget beyond the grader's own: Python, TensorFlow and the kernel starting


@dataclasses.dataclass(frozen=True)
class Config:
    """What ``build`` fixes for every submission of the assignment."""
    lesson: str                        # "04"
    profile: str = "smoke"             # COURSEKIT_PROFILE of the student's kernel
    timeout: float = 600.0             # seconds for the notebook's cells
    check_timeout: float = 20.0        # seconds for all of its checks, afterwards
    memory_mb: int = 6144              # address space per process, where the grader's sandbox runs
                                       # (the sandbox's own default, sandbox.MEMORY_MB)
    visibility: str = "visible"        # when students see their feedback
    coursekit_commit: str = ""         # the repository's commit at build time ("" outside git)
    coursekit_changed: bool = False    # coursekit had changes not committed when it was bundled
    coursekit_from: str = "bundle"     # "bundle" (coursekit-src/ in the zip) | "github"

    @property
    def seconds_needed(self) -> float:
        """The longest a submission can take: the grader's own limit plus the start-up."""
        from .grade import GRACE_SECONDS
        return self.timeout + self.check_timeout + GRACE_SECONDS + STARTUP_SECONDS

    @classmethod
    def load(cls, path: Path) -> "Config":
        values = json.loads(path.read_text())
        return cls(**{field.name: values[field.name] for field in dataclasses.fields(cls) if field.name in values})


# ----------------------------------------------------------------------------- results.json

STATUS_TEXT = {
    "ok": "Your notebook ran from top to bottom in a fresh kernel and every task was checked.",
    "errors": "Some cells raised an error; every task was still checked, on what your notebook had defined.",
    "timeout": "Your notebook did not finish in time and was stopped (look for a cell that loops or waits "
               "forever); the tasks it had defined by then were checked.",
    "kernel-died": "The Python kernel died while running your notebook (a crash, exit(), or too much memory); "
                   "the cells before the fatal one were run again and checked.",
    "invalid": "Your submission could not be graded.",
    "interrupted": "Grading was stopped before it finished: submit again, or tell your instructor.",
    "grader-error": "The autograder itself failed, which is not your fault: tell your instructor.",
}


def results_json(grade, tasks: list, config: Config, seconds: float, note: str = "") -> dict:
    """Gradescope's results.json for one graded submission (``grade``: a :class:`grade.Grade`).

    The fields follow Gradescope's autograder specification: the total ``score`` (the sum of the
    tests' scores), ``execution_time`` in seconds, ``output`` for the whole submission, and one
    test per task. Student-derived text (file names, hints that quote an exception) is shown as
    plain text (``output_format``) with its control characters escaped.
    """
    possible = sum(task.points for task in tasks)
    tests = []
    for task in tasks:
        earned = int(grade.points.get(task.id, 0))
        feedback = grade.feedback.get(task.id) or f"not checked ({grade.status})"
        tests.append({"name": f"{task.id} {task.title}", "number": task.id, "score": earned, "max_score": task.points,
                      "status": "passed" if earned == task.points else "failed",
                      "output": printable(feedback), "output_format": "text", "visibility": config.visibility})
    score = sum(test["score"] for test in tests)
    lines = [f"Lesson {config.lesson}: {score} / {possible} points ({grade.status}).",
             STATUS_TEXT.get(grade.status, "")]
    if grade.file:
        lines.append(f"Graded file: {printable(grade.file)}")
    if grade.reason:
        lines.append(f"Details: {printable(grade.reason)}")
    if note:
        lines.append(note)
    return {"score": score, "execution_time": int(round(seconds)), "output": "\n".join(filter(None, lines)),
            "output_format": "text", "visibility": config.visibility, "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": {"status": grade.status, "reason": printable(grade.reason), "file": printable(grade.file),
                           "lesson": config.lesson, "profile": config.profile, "sandbox": printable(grade.sandbox),
                           "coursekit_commit": config.coursekit_commit}}


def write_results(path: Path, results: dict) -> None:
    """Write ``results`` atomically: Gradescope reads the old file or the new one, never half of one."""
    write_atomically(path, json.dumps(results, indent=1, ensure_ascii=False))


# ----------------------------------------------------------------------------- run (in the container)

def find_notebook(folder: Path) -> tuple[Path | None, str]:
    """The one ``.ipynb`` file under ``folder`` (at any depth), or None and what to tell the student."""
    if not folder.is_dir():
        return None, f"no submission folder ({folder}): nothing was uploaded."
    found, others = [], []
    for path in sorted(folder.rglob("*")):
        if any(part in SKIPPED_FOLDERS or part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.is_file():
            (found if path.suffix.lower() == ".ipynb" else others).append(path)
    if len(found) == 1:
        return found[0], ""
    names = lambda paths: ", ".join(printable(p.relative_to(folder)) for p in paths[:10]) + (" ..." if len(paths) > 10 else "")
    if not found:
        seen = f" (it holds: {names(others)})" if others else " (it is empty)"
        return None, (f"no .ipynb notebook in your submission{seen}. Submit your exercise notebook: on Colab, "
                      "File > Download > Download .ipynb.")
    return None, (f"{len(found)} notebooks in your submission ({names(found)}): submit exactly one .ipynb file, "
                  "your exercise notebook.")


def _isolation(config: Config, root: Path):
    """The grader's sandbox where bubblewrap works in this container, else none (the container is one)."""
    from . import sandbox
    from .submission import Isolation
    missing = sandbox.unavailable()
    if missing:
        return Isolation(), f"{missing}; the Gradescope container is the sandbox"
    cpu = int(config.timeout + config.check_timeout + 60)
    hidden = tuple(path for path in (root / "submission", root / "results", root / "source") if path.exists())
    return Isolation(sandbox.Limits(config.memory_mb, cpu), hidden), "bwrap"


def grade_notebook(path: Path, config: Config, root: Path):
    """Grade one notebook with the command line grader's own code; returns its :class:`grade.Grade`."""
    from . import grade
    found = grade.load_submission(path)
    try:
        if found.problem is None:
            grade.read_submission(found.data)
    except grade.InvalidSubmission as invalid:
        found.problem = str(invalid)
    if found.problem is not None:  # not a notebook: answered at once, without starting TensorFlow
        return grade.Grade(file=str(path.relative_to(root / "submission")), lesson=config.lesson, status="invalid",
                           reason=found.problem, sandbox="not run")
    isolation, note = _isolation(config, root)
    settings = grade.Settings(timeout=config.timeout, check_seconds=config.check_timeout, profile=config.profile,
                              lesson=config.lesson, executed_dir=None, isolation=isolation, sandbox_note=note)
    with tempfile.TemporaryDirectory(prefix="coursekit-gradescope-") as scratch:
        grades = asyncio.run(grade.grade_all([path], Path(scratch) / "grades.csv", settings, jobs=1, quiet=True))
    graded = grades[0]
    graded.file = str(path.relative_to(root / "submission"))
    return graded


def run(root: Path) -> int:
    """Grade the submission under ``root`` (Gradescope's /autograder) and write its results.json."""
    from . import grade
    start = time.monotonic()
    config = Config.load(root / "source" / CONFIG_FILE)
    tasks = checks.tasks(config.lesson)
    results_path = root / "results" / "results.json"
    # Written first, replaced at the end: if Gradescope stops the container (out of time or memory),
    # the student reads why instead of a bare failure.
    stopped = grade.Grade(file="", lesson=config.lesson, status="interrupted",
                          reason="the autograder was stopped before it finished (it ran out of time or memory); "
                                 "tell your instructor, who can raise its limits")
    write_results(results_path, results_json(stopped, tasks, config, 0.0))
    notebook, problem = find_notebook(root / "submission")
    if notebook is None:
        graded = grade.Grade(file="", lesson=config.lesson, status="invalid", reason=problem, sandbox="not run")
    else:
        try:
            graded = grade_notebook(notebook, config, root)
        except Exception as error:  # noqa: BLE001 - a fault of the autograder: the student still gets a result
            graded = grade.Grade(file=str(notebook.relative_to(root / "submission")), lesson=config.lesson,
                                 status="grader-error", reason=f"{type(error).__name__}: {error}"[:300])
    results = results_json(graded, tasks, config, time.monotonic() - start)
    write_results(results_path, results)
    print(f"{printable(graded.file) or '(no notebook)'}: {results['score']} points, {graded.status}"
          f"{' (' + printable(graded.reason) + ')' if graded.reason else ''}; sandbox: {printable(graded.sandbox)}; "
          f"{time.monotonic() - start:.1f} s")
    return 1 if graded.status == "grader-error" else 0


# ----------------------------------------------------------------------------- weights

def needed_files(profile_name: str) -> list[str]:
    """What the profile's notebooks load from a Keras cache: paths under it (``models/...``), or
    patterns for data sets whose folder name changes between Keras versions (``datasets/cifar-10*``)."""
    from .. import env
    from ..models import CLASS_INDEX_FILE, SPECS
    profile = env.profile(profile_name)
    files = [f"models/{name}" for name in SPECS[profile.imagenet_model].weight_files] + [f"models/{CLASS_INDEX_FILE}"]
    if not profile.mnist_sample:
        files.append("datasets/mnist.npz")
    if profile.units_dataset == "cifar10":
        files.append("datasets/cifar-10-batches-py*")
    return files


def missing_files(cache: Path, profile_name: str) -> list[str]:
    """The entries of :func:`needed_files` that ``cache`` lacks."""
    return [name for name in needed_files(profile_name) if not any(Path(cache).glob(name))]


def fetch(profile_name: str) -> list[str]:
    """Download what the profile needs into ``$KERAS_HOME`` (setup.sh, online); returns the files there."""
    from .. import data, env, models
    profile = env.profile(profile_name)
    models.pretrained(profile.imagenet_model)
    models.pretrained(profile.imagenet_model, include_top=False)
    models.imagenet_class_names()
    if not profile.mnist_sample:
        data.mnist(sample=False)
    if profile.units_dataset == "cifar10":
        data.cifar10()
    home = env.keras_home()
    missing = missing_files(home, profile_name)
    if missing:
        raise RuntimeError(f"after downloading, {home} still lacks {missing}")
    return needed_files(profile_name)


def copy_cache(cache: Path, profile_name: str, into: Path) -> list[str]:
    """Copy what the profile needs from the Keras cache ``cache`` into ``into`` (an offline build)."""
    missing = missing_files(cache, profile_name)
    if missing:
        raise BuildError(f"The Keras cache {str(cache)!r} lacks {', '.join(missing)}, which the '{profile_name}' "
                         "profile needs. Point --keras-cache at a cache that holds them, or build without "
                         "--keras-cache: setup.sh then downloads them on Gradescope.")
    copied = []
    for pattern in needed_files(profile_name):
        for found in Path(cache).glob(pattern):
            target = into / found.relative_to(cache)
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if found.is_dir() else shutil.copy2)(found, target)
            copied += [p.relative_to(into).as_posix() for p in ([target] if target.is_file() else target.rglob("*"))
                       if p.is_file()]
    return copied


# ----------------------------------------------------------------------------- build

class BuildError(ValueError):
    """The autograder cannot be built as asked; the message says what to change."""


SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root and online, while it builds the autograder's image.
# It installs Python {python}, the course's requirements (CPU TensorFlow), coursekit ({coursekit}),
# and the '{profile}' profile's weights, then checks that the lesson {lesson} grader can start.
set -euo pipefail
SOURCE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
VENV="$SOURCE/venv"
if [ -d "$SOURCE/coursekit-src/coursekit" ]; then export PYTHONPATH="$SOURCE/coursekit-src"; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv ca-certificates git util-linux
# bubblewrap: the grader's own sandbox, used where the container lets it make namespaces
apt-get install -y -qq bubblewrap || echo "bubblewrap not installed: the container is the only sandbox"
# uv installs a Python the course supports, whatever version the image's own python3 is
python3 -m venv "$SOURCE/.uv"
"$SOURCE/.uv/bin/pip" install --quiet uv
UV="$SOURCE/.uv/bin/uv"
"$UV" venv --python {python} "$VENV"
"$UV" pip install --python "$VENV/bin/python" -r "$SOURCE/requirements.txt"
{install_coursekit}
# the ImageNet weights (and data sets) the profile loads: bundled by an offline build, else downloaded now
if [ ! -d "$SOURCE/keras/models" ]; then
    KERAS_HOME="$SOURCE/keras" "$VENV/bin/python" -m coursekit.tools.gradescope fetch --profile {profile}
fi
COURSEKIT_AUTOGRADER_ROOT="$(dirname "$SOURCE")" bash "$SOURCE/run_autograder" --check
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission: the student's files are in /autograder/submission, and
# it writes /autograder/results/results.json. COURSEKIT_AUTOGRADER_ROOT replaces /autograder and
# COURSEKIT_AUTOGRADER_PYTHON the Python that setup.sh installed (tests run it without root).
set -uo pipefail
ROOT="${COURSEKIT_AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
PYTHON="${COURSEKIT_AUTOGRADER_PYTHON:-$SOURCE/venv/bin/python}"
if [ -d "$SOURCE/coursekit-src/coursekit" ]; then
    export PYTHONPATH="$SOURCE/coursekit-src${PYTHONPATH:+:$PYTHONPATH}"   # coursekit as built into the zip
fi
if [ -d "$SOURCE/keras/models" ]; then
    export COURSEKIT_OFFLINE_CACHE="$SOURCE/keras"     # the weights; every kernel gets a copy of its own
fi
export TF_CPP_MIN_LOG_LEVEL=2
if [ ! -x "$PYTHON" ]; then
    mkdir -p "$ROOT/results"
    printf '{"score": 0, "output": "The autograder is not installed (setup.sh failed): tell your instructor.", "tests": []}\n' \
        > "$ROOT/results/results.json"
    echo "no Python at $PYTHON: did setup.sh fail?" >&2
    exit 1
fi
if [ "${1:-}" = "--check" ]; then
    exec "$PYTHON" -m coursekit.tools.gradescope check --root "$ROOT"
fi
exec "$PYTHON" -m coursekit.tools.gradescope run --root "$ROOT"
"""

README = """Gradescope autograder for lesson {lesson} of the course (made by `python -m coursekit.tools.gradescope build`).

Upload this zip on the assignment's "Configure Autograder" page (base image: Ubuntu). Settings:
profile '{profile}', notebook time-out {timeout:g} s, checks {check_timeout:g} s, feedback '{visibility}'.
Give the autograder at least {minutes} minutes and the memory in the course README's section on
grading a class on Gradescope. coursekit: {coursekit}.
"""


def autograder_requirements(requirements: str) -> str:
    """The course's requirements.txt for the autograder: CPU TensorFlow, no development tools."""
    kept = ["# the course's requirements.txt, for the autograder: CPU TensorFlow, no development tools"]
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        name = re.match(r"[A-Za-z0-9_.-]+", line)
        if not name or name.group().lower() in DEVELOPMENT_ONLY:
            continue
        kept.append(re.sub(r"^tensorflow(?=[<>=!~ ;\[]|$)", "tensorflow-cpu", line))
    return "\n".join(kept) + "\n"


def _git(root: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _package_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def build(lesson: str, out: Path, root: Path = Path("."), profile: str = "smoke", timeout: float = 600.0,
          check_timeout: float = 20.0, memory_mb: int = Config.memory_mb, visibility: str = "visible",
          keras_cache: Path | None = None, coursekit_from: str = "bundle") -> Config:
    """Write the autograder zip to ``out``; returns the settings it holds. See the module docstring."""
    from .. import env
    from .course import Course
    root = Path(root)
    if not (root / "coursekit" / "__init__.py").is_file() or not (root / "requirements.txt").is_file():
        raise BuildError(f"{str(root.resolve())!r} is not the course's repository (no coursekit/ or requirements.txt): "
                         "run from its root or pass --root.")
    lesson = f"{int(lesson):02d}" if str(lesson).isdigit() else str(lesson)
    if lesson not in checks.lessons():
        raise BuildError(f"No checks for lesson {lesson!r}; lessons with exercises: {', '.join(checks.lessons())}.")
    env.profile(profile)  # an unknown profile raises, naming the known ones
    if visibility not in VISIBILITIES:
        raise BuildError(f"--visibility {visibility!r}: choose one of {', '.join(VISIBILITIES)}.")
    if timeout <= 0 or check_timeout <= 0:
        raise BuildError("--timeout and --check-timeout must be positive numbers of seconds.")
    commit = _git(root, "rev-parse", "HEAD")
    changed = bool(_git(root, "status", "--porcelain", "--", "coursekit", "requirements.txt"))
    if coursekit_from == "github":
        if not commit or changed:
            raise BuildError("--coursekit github installs the commit in course.toml's repository: commit (and push) "
                             "coursekit first" + ("" if commit else "; this folder is not a git repository") + ".")
        spec = f"coursekit @ git+https://github.com/{Course.load(root).repository}@{commit}"
        install = f'"$UV" pip install --python "$VENV/bin/python" --no-deps "{spec}"'
        described = f"{spec} (the repository in course.toml must be public, and hold this commit)"
    elif coursekit_from == "bundle":
        install = "# coursekit: the copy in coursekit-src/ (run_autograder puts it on PYTHONPATH)"
        described = f"bundled from commit {commit or '(no git)'}" + (" with uncommitted changes" if changed else "")
    else:
        raise BuildError(f"--coursekit {coursekit_from!r}: choose bundle or github.")
    config = Config(lesson, profile, float(timeout), float(check_timeout), int(memory_mb), visibility,
                    commit, changed, coursekit_from)
    files: dict[str, tuple[bytes, int]] = {}   # name in the zip -> (content, mode)

    def add(name: str, content: str | bytes, mode: int = 0o644) -> None:
        files[name] = (content.encode() if isinstance(content, str) else content, mode)

    add("setup.sh", SETUP_SH.format(python=PYTHON_VERSION, coursekit=described, profile=profile, lesson=lesson,
                                    install_coursekit=install), 0o755)
    add("run_autograder", RUN_AUTOGRADER, 0o755)
    add(CONFIG_FILE, json.dumps(dataclasses.asdict(config), indent=1) + "\n")
    add("requirements.txt", autograder_requirements((root / "requirements.txt").read_text()))
    add("README.txt", README.format(lesson=lesson, profile=profile, timeout=timeout, check_timeout=check_timeout,
                                    visibility=visibility, minutes=int(-(-config.seconds_needed // 60)),
                                    coursekit=described))
    if coursekit_from == "bundle":
        for path in _package_files(root / "coursekit"):
            add(f"coursekit-src/{path.relative_to(root).as_posix()}", path.read_bytes())
    with tempfile.TemporaryDirectory() as scratch:
        if keras_cache is not None:
            for name in copy_cache(Path(keras_cache), profile, Path(scratch)):
                add(f"keras/{name}", (Path(scratch) / name).read_bytes())
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(f".{out.name}.tmp")
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, (content, mode) in sorted(files.items()):
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o100000 | mode) << 16      # a regular file with its permissions
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, content)
        os.replace(temporary, out)
    return config


def check(root: Path) -> int:
    """What setup.sh runs last: the lesson's tasks load, TensorFlow imports, the weights are there."""
    config = Config.load(root / "source" / CONFIG_FILE)
    tasks = checks.tasks(config.lesson)
    cache = root / "source" / "keras"
    missing = missing_files(cache, config.profile)
    if missing:
        print(f"The autograder lacks {missing} under {cache}.", file=sys.stderr)
        return 1
    import tensorflow as tf
    print(f"Lesson {config.lesson}: {len(tasks)} tasks, {sum(t.points for t in tasks)} points; profile "
          f"{config.profile}; Python {sys.version.split()[0]}, TensorFlow {tf.__version__}; weights in {cache}.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.gradescope", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("build", help="write the autograder zip for one lesson")
    made.add_argument("--lesson", required=True, help="the lesson number, such as 04")
    made.add_argument("--out", required=True, type=Path, help="the zip to write, such as autograder.zip")
    made.add_argument("--profile", default="smoke", choices=["smoke", "quick", "full"],
                      help="COURSEKIT_PROFILE of the student's kernel (default smoke: smallest and fastest; "
                           "the checks do not depend on it)")
    made.add_argument("--timeout", type=float, default=600, help="seconds for the notebook's cells (default 600)")
    made.add_argument("--check-timeout", type=float, default=20, help="seconds for its checks (default 20)")
    made.add_argument("--visibility", default="visible", choices=VISIBILITIES,
                      help="when students see their feedback: visible (at once), after_due_date, after_published")
    made.add_argument("--memory-mb", type=int, default=Config.memory_mb,
                      help=f"address space per process where the grader's own sandbox runs (default {Config.memory_mb})")
    made.add_argument("--keras-cache", type=Path, help="a Keras cache folder (with models/) to put the weights in "
                                                       "the zip, for a build without internet; default: setup.sh "
                                                       "downloads them on Gradescope")
    made.add_argument("--coursekit", dest="coursekit_from", default="bundle", choices=["bundle", "github"],
                      help="bundle (default): coursekit from this folder, inside the zip; github: installed from "
                           "course.toml's repository at this commit (public repositories only)")
    made.add_argument("--root", type=Path, default=Path("."), help="the course's repository (default: here)")
    for name, text in (("run", "grade the submission (what run_autograder calls)"),
                       ("check", "check the installation (what setup.sh calls last)")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--root", type=Path, default=Path(os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT))
    fetched = commands.add_parser("fetch", help="download the profile's weights into $KERAS_HOME (setup.sh)")
    fetched.add_argument("--profile", required=True, choices=["smoke", "quick", "full"])
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.root)
    if args.command == "check":
        return check(args.root)
    if args.command == "fetch":
        print("In the Keras cache: " + ", ".join(fetch(args.profile)))
        return 0
    try:
        config = build(args.lesson, args.out, args.root, args.profile, args.timeout, args.check_timeout,
                       args.memory_mb, args.visibility, args.keras_cache, args.coursekit_from)
    except (BuildError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if config.coursekit_changed:
        print("warning: coursekit has changes that are not committed; the zip holds them as they are now.",
              file=sys.stderr)
    minutes = int(-(-config.seconds_needed // 60))
    print(f"Wrote {args.out}: lesson {config.lesson}, profile {config.profile}, time-out {config.timeout:g} s, "
          f"feedback {config.visibility}. On Gradescope, give the autograder at least {minutes} minutes "
          "(and the memory the README gives for this lesson).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
