"""Grade exercise notebooks: run each submission in a sandbox of its own, check every task outside it.

    python -m coursekit.tools.grade SUBMISSION.ipynb... --out grades.csv --lesson NN [--jobs N] [--timeout SECONDS]
    python -m coursekit.tools.grade SUBMISSION.ipynb... --shard K/N --out part-K.csv ...   (see coursekit.tools.shards)
    python -m coursekit.tools.grade merge part-1.csv part-2.csv ... --out grades.csv
    python -m coursekit.tools.grade export grades.csv --roster roster.csv --format canvas|moodle|long ...

Every submission is read into memory and hashed before the first kernel starts (the files are
never written). Each then runs in a fresh kernel inside a bubblewrap sandbox
(:mod:`coursekit.tools.sandbox`: read-only system and installation, nothing of the grader's
working folder, private HOME, working and temporary folders of limited size, no network, its own
process namespace, an unprivileged user, an allow-listed environment, and limits on memory and
processes for the sandbox as a whole), with a time limit for the whole notebook. Cells that raise
do not stop it. Afterwards every task is checked in the grader's own process: the cases and the
reference are made here, the student's answer is called in the kernel on the cases, and only
plain data comes back (:mod:`coursekit.tools.remote`). What a notebook prints, patches or
redefines earns nothing. A submission that runs out of time is interrupted and the tasks it
finished are still checked; one whose kernel dies is re-run up to the cell that killed it. A
from-scratch task's answer that passed is checked again in a fresh kernel whose coursekit lacks
the functions it must not use (:mod:`coursekit.tools.scratch`).

The lesson comes from the instructor: with --lesson NN every submission is graded as lesson NN,
and one whose notebook belongs to another lesson gets 0 (``lesson mismatch``). Without it the
lesson is read from each notebook (its metadata, check calls or file name). Multiple-choice tasks
are marked against the key file given with --keys (``python -m coursekit.tools.keys``) when there
is one, else against the keys coursekit holds.

The CSV (written atomically, after every submission, only by the grader and where no kernel can
see it) has one row per submission: file, the points of each task, total, status (ok, errors,
timeout, kernel-died, invalid, interrupted, grader-error), reason, seconds, sandbox, record (the
executed copy's file name) and review (places in the code a human should look at). Text a
student controls is written inert (:mod:`coursekit.tools.safe_text`). A submission takes at most
--timeout plus --check-timeout plus :data:`GRACE_SECONDS` (three times the first two when a
from-scratch answer is checked again), not counting time spent waiting for another submission's
checks. Executed copies of the submissions, without scripts and ending in a grade cell, go to
``<out>-executed/``. Ctrl-C stops the batch: rows already graded are kept, the ones in progress
are marked interrupted, and the exit status is 1. A sandbox that cannot start stops the batch
before any submission runs (exit status 1). Otherwise the exit status is 0 whatever the
submissions do; 1 when the grader failed.

Without bubblewrap (macOS, or where namespaces cannot be made) submissions run with your
permissions, as the summary and every row say: grade notebooks you do not trust in a container
or a throw-away account there.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import checks
from ..checks.core import CHECK_CALL, LESSON_ID, lesson_of_file_name
from . import exits, model_files, notebook_json, sandbox, scratch
from .files import write_atomically
from .remote import NOT_MARKED, Clock
from .safe_text import inert, literal_block, spreadsheet_cell
from .submission import Isolation, SubmissionRun, preload

OUTPUT_LIMIT = 5_000_000          # characters of output kept per submission
MAX_FILE_BYTES = 200_000_000      # the file as saved: Colab keeps every figure, and outputs are dropped
MAX_NOTEBOOK_BYTES = 20_000_000   # what is run: the notebook without its outputs
MAX_CELLS = 2_000                 # cells of the notebook that is run
READ_SECONDS = 120                # to read, parse and strip one file (in a process of its own)
CHECK_SECONDS = 20                # time for all of a submission's checks, after its cells
GRACE_SECONDS = 60                # per submission, beyond both: kernel start and stop, writing the record
STATUSES = ("ok", "errors", "timeout", "kernel-died", "invalid", "interrupted", "grader-error")
KEYS_FORMAT = "coursekit-choice-keys"


@dataclass
class Settings:
    timeout: float = 600.0
    check_seconds: float = CHECK_SECONDS
    output_limit: int = OUTPUT_LIMIT
    profile: str = "smoke"
    lesson: str | None = None
    executed_dir: Path | None = None
    isolation: Isolation = field(default_factory=Isolation)
    sandbox_note: str = "bwrap"       # the CSV's sandbox column: bwrap, or why there is none
    keys: dict[str, frozenset] | None = None     # multiple-choice keys from --keys, by task id
    views: dict[str, sandbox.View] = field(default_factory=dict)   # from-scratch views, by lesson


@dataclass
class Grade:
    file: str
    lesson: str | None = None
    points: dict[str, int] = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""
    seconds: float = 0.0
    feedback: dict[str, str] = field(default_factory=dict)
    check_errors: list[str] = field(default_factory=list)  # checks that failed internally
    sandbox: str = ""
    record: str = ""                   # the executed copy's file name
    review: list[str] = field(default_factory=list)        # for a human to look at

    @property
    def total(self) -> int:
        return sum(self.points.values())


@dataclass
class Submission:
    """A submission as read before any kernel starts."""
    path: Path
    name: str                          # the path as text (bytes that are not UTF-8 escaped)
    data: bytes | None = None          # the notebook that will run, outputs dropped (nbformat 4 JSON)
    sha256: str = ""                   # of the file as submitted
    problem: str | None = None         # why it cannot be graded, found while reading it


class SandboxError(Exception):
    """The sandbox cannot start on this machine: the batch stops before any submission runs."""


class InvalidSubmission(Exception):
    """The file cannot be graded as a notebook; the message says why."""


def printable(path: Path) -> str:
    """``path`` as text that can be printed and written to a CSV, whatever bytes its name holds."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def load_submission(path: Path, limit_bytes: int = MAX_FILE_BYTES) -> Submission:
    """Read and hash one file (at most ``limit_bytes``), and keep the notebook that will run: without
    its outputs (see :func:`read_submission`). Problems are kept, never raised.

    A file larger than what may run (:data:`MAX_NOTEBOOK_BYTES`) is read and parsed in a process of
    its own, with limits on its memory and time (:mod:`coursekit.tools.notebook_json`): a file of
    many small objects can take gigabytes to parse; only the notebook without outputs comes back.
    """
    found = Submission(path, printable(path))
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError:
        size = None
    if size is None:
        found.problem = "no such file"
        return found
    if size <= MAX_NOTEBOOK_BYTES:   # small enough to parse here, as any notebook that runs is
        reply = notebook_json.read(os.fsdecode(path), min(limit_bytes, MAX_NOTEBOOK_BYTES), MAX_CELLS,
                                   MAX_NOTEBOOK_BYTES)
    else:
        reply = _read_apart(path, limit_bytes)
    found.sha256 = str(reply.get("sha256", ""))
    if "problem" in reply:
        found.problem = str(reply["problem"])
        return found
    try:
        found.data = nbformat.writes(read_submission(str(reply["notebook"]).encode())).encode()
    except InvalidSubmission as invalid:
        found.problem = str(invalid)
    return found


def _read_apart(path: Path, limit_bytes: int) -> dict:
    """:func:`notebook_json.read` in a process of its own, limited in memory and time."""
    command = [sys.executable, "-I", str(Path(notebook_json.__file__)), os.fsdecode(path), str(limit_bytes),
               str(MAX_CELLS), str(MAX_NOTEBOOK_BYTES)]
    try:
        reading = subprocess.run(command, capture_output=True, timeout=READ_SECONDS)
        return json.loads(reading.stdout)
    except subprocess.TimeoutExpired:
        return {"problem": f"could not be read in {READ_SECONDS} s: is it really a notebook?"}
    except ValueError:   # the reader ran out of memory or time: no reply
        return {"problem": f"too large to read (more than {notebook_json.MEMORY_BYTES / 2 ** 30:.0f} GB of "
                           "memory once parsed): clear the outputs (Edit > Clear all outputs), save, and submit again"}


def read_submission(data: bytes, max_cells: int = MAX_CELLS, max_bytes: int = MAX_NOTEBOOK_BYTES):
    """The notebook in ``data`` (nbformat 4, or 3 converted), without outputs, or :class:`InvalidSubmission`.

    The limits apply to what will run: at most ``max_cells`` cells and ``max_bytes`` once the
    outputs, widget state and attachments are dropped, however large the file with them.
    """
    try:
        text = notebook_json.runnable_text(data, max_cells, max_bytes)
    except notebook_json.Unreadable as problem:
        raise InvalidSubmission(str(problem)) from None
    try:
        notebook = nbformat.reads(text, as_version=4)   # converts nbformat 3
        if notebook.get("nbformat_minor", 0) < nbformat.v4.nbformat_minor:   # Colab writes 4.0: cells get
            notebook = nbformat.v4.upgrade(notebook, from_version=4)        # ids, as the grade cell has
    except Exception as error:  # nbformat raises several kinds for a broken notebook
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise InvalidSubmission(f"not a valid notebook (invalid JSON or format): {first}") from None
    if not isinstance(notebook.get("metadata"), dict):
        notebook.metadata = nbformat.NotebookNode()
    code_cells = [cell for cell in notebook.get("cells", []) if isinstance(cell, dict) and cell.get("cell_type") == "code"]
    if not code_cells:
        raise InvalidSubmission("the notebook has no code cells")
    for cell in code_cells:
        if not isinstance(cell.get("source"), str):
            raise InvalidSubmission("a code cell has no source text")
        cell.outputs, cell.execution_count = [], None
        if not isinstance(cell.get("metadata"), dict):
            cell.metadata = nbformat.NotebookNode()
    return notebook


def declared_lesson(notebook) -> str | None:
    """The lesson a notebook says it belongs to: its metadata, else its check calls."""
    coursekit_metadata = notebook.metadata.get("coursekit")
    declared = str(coursekit_metadata.get("lesson", "")) if isinstance(coursekit_metadata, dict) else ""
    if LESSON_ID.match(declared):
        return declared
    calls = Counter(match.group("lesson") for cell in notebook.cells if cell.get("cell_type") == "code"
                    and isinstance(cell.get("source"), str) for match in CHECK_CALL.finditer(cell.source))
    return calls.most_common(1)[0][0] if calls else None


def lesson_of(notebook, path: Path, forced: str | None = None) -> str | None:
    """The lesson a submission is graded as: forced, else what it declares, else its file name."""
    if forced:
        return forced
    declared = declared_lesson(notebook)
    if declared:
        return declared
    return lesson_of_file_name(path.name)


def _grade_cell(grade: Grade, tasks: list) -> nbformat.NotebookNode:
    """The grade cell: the grader's own text as Markdown, everything a student's code could have
    shaped (feedback, reasons) as literal text."""
    lines = [f"## Grade: {grade.total} / {sum(t.points for t in tasks)} points ({grade.status})", "",
             "| task | points |", "|---|---|"]
    for task in tasks:
        title = re.sub(r"[|<>`*_\[\]\\]", " ", task.title)
        lines.append(f"| {task.id} {title} | {grade.points.get(task.id, 0)}/{task.points} |")
    notes = [f"{task.id}: {grade.feedback.get(task.id, '')}" for task in tasks]
    if grade.reason:
        notes.append(f"notes: {grade.reason}")
    lines += ["", "Feedback:", "", literal_block(notes)]
    return nbformat.v4.new_markdown_cell("\n".join(lines))


# ----------------------------------------------------------------------------- what goes back to students

SCRIPT_TYPES = ("application/javascript", "text/javascript", "application/x-javascript", "application/ecmascript",
                "image/svg+xml", "application/vnd.jupyter.widget-view+json")
_SCRIPT_BLOCKS = re.compile(r"<(script|style|iframe|object|embed)\b.*?(</\1\s*>|$)", re.I | re.S)
_HTML_TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "div", "em", "h1", "h2", "h3", "h4", "hr",
              "i", "img", "li", "ol", "p", "pre", "small", "span", "strong", "sub", "sup", "table", "tbody", "td",
              "tfoot", "th", "thead", "tr", "ul"}


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "colspan", "rowspan", "align", "title", "alt"):
        return True
    if tag == "img" and name == "src":
        return value.startswith("data:image/") and not value.startswith("data:image/svg")
    if tag == "a" and name == "href":
        return value.startswith(("http://", "https://"))
    return False


def clean_html(html: str) -> str:
    """``html`` without scripts, styles, frames, event handlers or remote images."""
    import bleach
    return bleach.clean(_SCRIPT_BLOCKS.sub("", html), tags=_HTML_TAGS, attributes=_allowed_attribute,
                        protocols=["http", "https", "data"], strip=True)


def without_scripts(notebook) -> None:
    """Drop from an executed notebook what a browser would run: script outputs, scripts in HTML
    outputs and in Markdown cells (done in place)."""
    for cell in notebook.cells:
        if cell.get("cell_type") == "markdown" and isinstance(cell.get("source"), str):
            cell.source = _SCRIPT_BLOCKS.sub("", cell.source)
            cell.pop("attachments", None)
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data")
            if not isinstance(data, dict):
                continue
            for kind in [k for k in data if k in SCRIPT_TYPES or "javascript" in k]:
                del data[kind]
            if isinstance(data.get("text/html"), (str, list)):
                html = data["text/html"] if isinstance(data["text/html"], str) else "".join(data["text/html"])
                try:
                    data["text/html"] = clean_html(html)
                except ImportError:   # no sanitiser: keep the plain-text form only
                    del data["text/html"]
            if not data:
                data["text/plain"] = "[output removed by the grader: it held a script]"
    notebook.metadata.pop("widgets", None)


async def _run_and_check(notebook, folder: Path, copy: Path, copy_name: str, tasks: list, settings: Settings,
                         deadline: float, clock: Clock, lesson: str | None):
    """Run the notebook, re-running once up to a cell that killed the kernel, then check its tasks.

    Returns the first run's :class:`Execution` and executed notebook, whether output was
    truncated, and each task's outcome (missing when no check could run).
    """
    execution, record, truncated, outcomes, stop = None, None, False, {}, None
    for attempt in (1, 2):
        run = SubmissionRun(nbformat.from_dict(json.loads(json.dumps(notebook))), folder, deadline,
                            settings.timeout, settings.output_limit, settings.profile, settings.isolation,
                            copy, copy_name, clock)
        async with run.kernel():
            result = await run.execute(stop)
            truncated = truncated or run.client.truncated
            if attempt == 1:
                execution, record = result, run.notebook
            if result.status == "kernel-died":
                if attempt == 1 and result.died_at:
                    stop = result.died_at  # the cells before the one that killed it
                    continue
                if attempt == 2:
                    execution.reason += "; re-running the cells before it failed too"
                break
            if attempt == 2:
                execution.reason += "; graded on a re-run of the cells before it"
            outcomes, alive = await run.check_tasks(tasks, settings.check_seconds, settings.keys)
            if not alive:
                execution.reason += "; the kernel died while checking"
            break
    rechecked = await _check_from_scratch(notebook, folder, copy, copy_name, tasks, settings, outcomes, clock, lesson,
                                          before=stop)
    return execution, record, truncated, outcomes, rechecked


async def _check_from_scratch(notebook, folder: Path, copy: Path, copy_name: str, tasks: list, settings: Settings,
                              outcomes: dict, clock: Clock, lesson: str | None, before: int | None = None) -> list[str]:
    """Check again, in a fresh kernel whose coursekit lacks what they forbid, the from-scratch
    answers that passed (:mod:`coursekit.tools.scratch`), running no cell at or after ``before``
    (the cell that killed the first run's kernel); updates ``outcomes``, returns their ids."""
    strict = [task for task in tasks if task.from_scratch and outcomes.get(task.id, {}).get("passed")]
    view = settings.views.get(lesson or "")
    if not strict or view is None or settings.isolation.limits is None:
        return []
    stop = scratch.cells_needed(notebook, {task.answer for task in strict})
    if before is not None:
        stop = before if stop is None else min(stop, before)
    isolation = dataclasses.replace(settings.isolation, view=view)
    again, left = {}, list(strict)
    for definitions_only in (True, False):   # first the definitions alone (fast), then every cell up to the answer
        variant = nbformat.from_dict(json.loads(json.dumps(notebook)))
        if definitions_only:
            for cell in variant.cells:
                if cell.get("cell_type") == "code":
                    cell.source = scratch.definitions_only(cell.source)
        run = SubmissionRun(variant, folder, time.monotonic() + settings.timeout, settings.timeout,
                            settings.output_limit, settings.profile, isolation, copy, copy_name, clock)
        async with run.kernel():
            result = await run.execute(stop)
            if result.status != "kernel-died":
                found, _ = await run.check_tasks(left, settings.check_seconds, settings.keys)
                again.update(found)
        left = [task for task in left if not again.get(task.id, {}).get("passed")]
        if not left:
            break
    for task in strict:
        found = again.get(task.id, {"passed": False, "message": "not checked: the kernel died", "check_error": False})
        if not found["passed"]:
            names = ", ".join(f"`{name.rpartition('.')[2]}`" for name in task.from_scratch)
            outcomes[task.id] = {"passed": False, "check_error": found["check_error"],
                                 "message": f"this task asks you to write it yourself: checked again in a fresh "
                                            f"kernel where coursekit's {names} does not exist, your answer did not "
                                            f"pass ({found['message']})"}
    return [task.id for task in strict]


def _workdir_name(name: str) -> str:
    """A plain file name for the copy the kernel runs (the student's may hold any bytes)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name)[:80].strip("._") or "submission"
    return stem if stem.endswith(".ipynb") else f"{stem}.ipynb"


def record_name(name: str) -> str:
    """The executed copy's file name: the submission's name made plain, and a hash of all of it, so
    that two names made plain alike (``kim lee.ipynb``, ``kim_lee.ipynb``) never share a record."""
    stem = _workdir_name(name)[:-len(".ipynb")][:60]
    digest = hashlib.sha256(os.fsencode(name) if isinstance(name, str) else name).hexdigest()[:10]
    return f"{stem}-{digest}.ipynb"


def _private_folder() -> Path:
    """A folder of the grader's for one submission: the sandbox's user may pass through it, not list it."""
    folder = Path(tempfile.mkdtemp(prefix="coursekit-grade-"))
    folder.chmod(0o711)
    return folder


async def grade_submission(found: Submission, settings: Settings, record_path: Path | None = None,
                           clock: Clock | None = None) -> Grade:
    """Grade one submission; never raises for anything the submission does."""
    start = time.monotonic()
    clock = clock or Clock()
    grade = Grade(file=found.name, sandbox=settings.sandbox_note, record=record_path.name if record_path else "")
    try:
        if found.problem is not None:
            grade.status, grade.reason = "invalid", found.problem
            return grade
        try:
            notebook = await asyncio.to_thread(read_submission, found.data)
        except InvalidSubmission as invalid:
            grade.status, grade.reason = "invalid", str(invalid)
            return grade
        declared = declared_lesson(notebook)
        grade.lesson = lesson_of(notebook, found.path, settings.lesson)
        if settings.lesson and declared and declared != settings.lesson:
            grade.status = "invalid"
            grade.reason = (f"lesson mismatch: this notebook is lesson {declared}'s, the batch is lesson "
                            f"{settings.lesson}'s; 0 points")
            return grade
        try:
            tasks = checks.tasks(grade.lesson) if grade.lesson else None
        except ValueError as error:
            tasks, grade.reason = None, str(error)
        if not tasks:
            grade.status = "invalid"
            grade.reason = grade.reason or "cannot tell which lesson this is: pass --lesson NN"
            return grade
        grade.review = scratch.review(notebook, tasks)
        folder = await asyncio.to_thread(_private_folder)
        try:
            copy = folder / "notebook.ipynb"
            copy.write_bytes(found.data)
            execution, record, truncated, outcomes, rechecked = await _run_and_check(
                notebook, folder, copy, _workdir_name(found.name), tasks, settings,
                deadline=start + clock.paused + settings.timeout, clock=clock, lesson=grade.lesson)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        for task in tasks:
            outcome = outcomes.get(task.id, {"passed": False, "message": "not checked", "check_error": False})
            grade.points[task.id] = task.points if outcome["passed"] else 0
            grade.feedback[task.id] = outcome["message"]
            if outcome["check_error"]:
                grade.check_errors.append(f"{task.id}: {outcome['message'][:200]}")
            if task.id in rechecked and not outcome["passed"]:
                grade.review.append(f"{task.id} passed while coursekit's own functions were there, not without them")
        grade.status = execution.status
        grade.reason = _reason(execution, truncated, grade.check_errors, settings.output_limit)
        grade.reason = "; ".join(filter(None, [grade.reason, exits.exit_note(notebook)]))
        if record_path is not None:
            try:
                without_scripts(record)
                record.cells.append(_grade_cell(grade, tasks))
                record.metadata["coursekit_grade"] = {"sha256": found.sha256, "total": grade.total,
                                                      "status": grade.status, "sandbox": grade.sandbox}
                text = nbformat.writes(record)
                record_path.write_text(text)
            except Exception as error:  # noqa: BLE001 - outputs that do not serialise: the grade stands
                grade.reason = "; ".join(filter(None, [grade.reason, f"executed copy not written ({type(error).__name__})"]))
                grade.record = ""
    finally:
        grade.seconds = time.monotonic() - start
    return grade


def _reason(execution, truncated: bool, check_errors: list[str], output_limit: int) -> str:
    reasons = [execution.reason] if execution.reason else []
    if execution.errors:
        more = f" (and {len(execution.errors) - 1} more)" if len(execution.errors) > 1 else ""
        reasons.append(f"errors in {execution.errors[0]}{more}")
    if truncated:
        reasons.append(f"output truncated at {output_limit / 1e6:g} MB")
    if check_errors:
        reasons.append(f"{len(check_errors)} check(s) failed internally, please report to the course "
                       f"maintainers ({check_errors[0]})")
    return "; ".join(reasons)


# ----------------------------------------------------------------------------- a batch

def _record_paths(found: list[Submission], folder: Path | None) -> list[Path | None]:
    if folder is None:
        return [None] * len(found)
    taken, result = set(), []
    for item in found:
        name = record_name(item.name)
        stem, n = name[:-len(".ipynb")], 1
        while name in taken:   # the same file named twice
            n += 1
            name = f"{stem}_{n}.ipynb"
        taken.add(name)
        result.append(folder / name)
    return result


def task_columns(grades: list[Grade]) -> list[str]:
    columns = set()
    for grade in grades:
        columns.update(grade.points)
    return sorted(columns, key=lambda tid: (tid[:2], int(tid.split(".")[1])))


def write_csv(grades: list[Grade], out: Path) -> None:
    """Write the table to ``out`` atomically: a reader sees the old file or the new one.

    Every text cell goes through :func:`spreadsheet_cell`: no student's text runs as a formula.
    """
    columns = task_columns(grades)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", *columns, "total", "status", "reason", "seconds", "sandbox", "record", "review"])
    for grade in grades:
        cells = [grade.points.get(column, "") if grade.lesson and column in grade.points else ""
                 for column in columns]
        writer.writerow([spreadsheet_cell(grade.file), *cells, grade.total, grade.status,
                         spreadsheet_cell(grade.reason), f"{grade.seconds:.1f}", spreadsheet_cell(grade.sandbox),
                         spreadsheet_cell(grade.record), spreadsheet_cell("; ".join(grade.review))])
    write_atomically(out, buffer.getvalue())


def _from_scratch_lessons(settings: Settings) -> list[str]:
    lessons = [settings.lesson] if settings.lesson else checks.lessons()
    return [lesson for lesson in lessons if any(task.from_scratch for task in checks.tasks(lesson))]


async def _prepare(settings: Settings, folder: Path) -> None:
    """Before the first kernel: the sandbox must start, and the from-scratch views exist."""
    if settings.isolation.limits is None:
        return
    problem = await asyncio.to_thread(sandbox.probe, settings.isolation.limits, folder, settings.isolation.hidden)
    if problem:
        raise SandboxError(problem)
    for lesson in _from_scratch_lessons(settings):
        tasks = [task for task in checks.tasks(lesson) if task.from_scratch]
        settings.views[lesson] = await asyncio.to_thread(scratch.view, tasks, folder / f"scratch-{lesson}")


async def grade_all(paths: list[Path], out: Path, settings: Settings, jobs: int = 1,
                    quiet: bool = False, grades: list | None = None) -> list[Grade]:
    """Grade every submission, ``jobs`` at a time, into ``grades`` (filled as they finish).

    Cancelling it (the instructor's Ctrl-C) marks the submissions in progress ``interrupted``,
    keeps every row already graded in the CSV, and re-raises the cancellation.
    """
    found = [load_submission(path) for path in paths]   # all read and hashed before any kernel starts
    out.parent.mkdir(parents=True, exist_ok=True)
    if settings.executed_dir is not None:
        settings.executed_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(preload)
    batch_folder = Path(tempfile.mkdtemp(prefix="coursekit-batch-"))
    batch_folder.chmod(0o711)
    try:
        await _prepare(settings, batch_folder)
        return await _grade_found(found, out, settings, jobs, quiet, grades)
    finally:
        await asyncio.to_thread(model_files.stop_builder)
        await asyncio.to_thread(shutil.rmtree, batch_folder, True)


async def _grade_found(found: list[Submission], out: Path, settings: Settings, jobs: int, quiet: bool,
                       grades: list | None) -> list[Grade]:
    records = _record_paths(found, settings.executed_dir)
    grades = [None] * len(found) if grades is None else grades
    grades[:] = [None] * len(found)
    limit = asyncio.Semaphore(max(1, jobs))
    done = 0
    per_submission = settings.timeout + settings.check_seconds + GRACE_SECONDS
    if settings.views:   # a from-scratch answer may be run and checked twice more (definitions, then all cells)
        per_submission += 2 * (settings.timeout + settings.check_seconds)

    async def one(index: int) -> None:
        nonlocal done
        async with limit:
            item, clock, start = found[index], Clock(), time.monotonic()
            running = asyncio.ensure_future(grade_submission(item, settings, records[index], clock))
            try:
                while not running.done():
                    left = start + per_submission + clock.paused - time.monotonic()
                    if left <= 0:
                        break
                    await asyncio.wait({running}, timeout=left)
                if running.done():
                    grade = running.result()
                else:
                    running.cancel()
                    await asyncio.wait({running})
                    grade = Grade(file=item.name, status="timeout", sandbox=settings.sandbox_note,
                                  seconds=time.monotonic() - start,
                                  reason=f"the grader stopped it after {per_submission:g} s")
            except asyncio.CancelledError:
                grades[index] = Grade(file=item.name, status="interrupted", sandbox=settings.sandbox_note,
                                      reason="the instructor stopped the batch while this one ran; 0 points")
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):   # its kernel stops before the batch ends
                    await asyncio.wait({running})
                raise
            except Exception as error:  # a failure of the grader, not of the submission
                grade = Grade(file=item.name, status="grader-error", sandbox=settings.sandbox_note,
                              reason=f"{type(error).__name__}: {error}"[:300] or type(error).__name__)
            grades[index] = grade
            done += 1
            write_csv([g for g in grades if g is not None], out)
            if not quiet:
                reason = f" ({inert(grade.reason, 300)})" if grade.reason else ""
                print(f"[{done}/{len(found)}] {inert(item.name)}: {grade.total} points, {grade.status}{reason} "
                      f"in {grade.seconds:.1f} s", flush=True)

    running = [asyncio.create_task(one(i)) for i in range(len(found))]
    try:
        await asyncio.gather(*running)
    except asyncio.CancelledError:
        for task in running:
            task.cancel()
        await asyncio.wait(running)   # each one marks itself interrupted and stops its kernel
        write_csv([g for g in grades if g is not None], out)
        raise
    return [g for g in grades if g is not None]


async def _run_batch(paths: list[Path], out: Path, settings: Settings, jobs: int, quiet: bool):
    """``(grades, interrupted)``: Ctrl-C and SIGTERM stop the batch, whatever the submissions do."""
    loop = asyncio.get_running_loop()
    batch = asyncio.current_task()
    grades: list = []
    stopped = []

    def stop(number):
        stopped.append(number)
        batch.cancel()

    handled = []
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(number, stop, number)
            handled.append(number)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt instead
            pass
    try:
        return await grade_all(paths, out, settings, jobs, quiet, grades), False
    except asyncio.CancelledError:
        if not stopped:
            raise
        return [g for g in grades if g is not None], True
    finally:
        for number in handled:
            loop.remove_signal_handler(number)


def summary(grades: list[Grade], seconds: float, jobs: int, settings: Settings | None = None) -> str:
    states = Counter(g.status for g in grades)
    totals = [g.total for g in grades]
    possible = {g.lesson: sum(checks.find(t).points for t in g.points) for g in grades if g.lesson and g.points}
    lines = [f"Graded {len(grades)} submission(s) in {seconds:.1f} s ({jobs} at a time): "
             + ", ".join(f"{n} {s}" for s, n in sorted(states.items(), key=lambda kv: STATUSES.index(kv[0])))]
    if totals:
        out_of = "/".join(str(v) for v in sorted(set(possible.values()))) or "?"
        lines.append(f"Points: mean {statistics.mean(totals):.1f}, median {statistics.median(totals):g}, "
                     f"max {max(totals)} (out of {out_of}).")
    if any(g.check_errors for g in grades):
        lines.append("Some checks failed internally (see the reason column): report them to the course maintainers.")
    unmarked = sum(message == NOT_MARKED for g in grades for message in g.feedback.values())
    if unmarked:
        lines.append(f"{unmarked} multiple-choice answer(s) not marked: this course holds no key for them; "
                     "grade again with --keys KEYFILE (python -m coursekit.tools.keys).")
    flagged = sum(bool(g.review) for g in grades)
    if flagged:
        lines.append(f"{flagged} submission(s) to look at by hand: their code reaches for what a from-scratch task "
                     "forbids, or for ways around a check (the review column).")
    if settings is not None:
        if settings.isolation.limits is not None:
            lines.append(f"Sandbox: {sandbox.describe(settings.isolation.limits)}.")
        else:
            lines.append(f"NOT SANDBOXED: {settings.sandbox_note}; the submissions ran with your permissions, and a "
                         "from-scratch answer was only watched in its own kernel.")
        if settings.keys is not None:
            lines.append(f"Multiple choice marked against your key file ({len(settings.keys)} key(s)).")
        if not settings.lesson:
            lines.append("The lesson was read from each notebook: pass --lesson NN to grade a batch as one lesson.")
    return "\n".join(lines)


def read_keys(path: Path) -> dict[str, frozenset]:
    """The multiple-choice keys in a key file written by ``python -m coursekit.tools.keys make``."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the key file {path}: {error}") from None
    keys = found.get("keys") if isinstance(found, dict) and found.get("format") == KEYS_FORMAT else None
    if not isinstance(keys, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                             for v in keys.values()):
        raise ValueError(f"{path} is not a key file (make one with python -m coursekit.tools.keys make)")
    return {str(task_id): frozenset(letters) for task_id, letters in keys.items()}


def main(argv=None) -> int:
    from . import export, shards  # the class-wide commands: a part of the batch, merge, export
    command = sys.argv[1:] if argv is None else list(argv)
    if command[:1] == ["merge"]:
        return shards.main(command[1:])
    if command[:1] == ["export"]:
        return export.main(command[1:], prog="python -m coursekit.tools.grade export")
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", nargs="+", type=Path, help="the students' .ipynb files")
    parser.add_argument("--out", required=True, type=Path, help="the CSV to write (e.g. grades.csv)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions run at the same time (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default 600)")
    parser.add_argument("--check-timeout", type=float, default=CHECK_SECONDS,
                        help=f"seconds for all checks of one notebook, after it ran (default {CHECK_SECONDS})")
    parser.add_argument("--lesson", help="the lesson number (NN) of every submission; "
                                         "default: read from each notebook")
    parser.add_argument("--keys", type=Path, help="the multiple-choice key file (python -m coursekit.tools.keys "
                                                  "make); default: the keys coursekit holds")
    parser.add_argument("--profile", default="smoke", choices=["smoke", "quick", "full"],
                        help="COURSEKIT_PROFILE in the submissions' kernels (default smoke: fastest; "
                             "the checks do not depend on it)")
    parser.add_argument("--executed", type=Path, help="folder for the executed notebooks "
                                                      "(default: <out without .csv>-executed)")
    parser.add_argument("--no-executed", action="store_true", help="do not keep executed notebooks")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--memory-mb", type=int, default=sandbox.MEMORY_MB,
                        help=f"memory of a sandbox's processes together, and address space of each, in MB "
                             f"(default {sandbox.MEMORY_MB})")
    parser.add_argument("--processes", type=int, default=sandbox.PROCESSES,
                        help=f"processes and threads in a sandbox (default {sandbox.PROCESSES})")
    parser.add_argument("--cpu-seconds", type=int, help="CPU time per process in the sandbox (default: "
                                                        "--timeout plus --check-timeout plus 60)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run kernels as your own processes even where bubblewrap works (not for untrusted work)")
    parser.add_argument("--shard", type=shards.spec_argument, metavar="K/N",
                        help="grade only part K of N of the files, chosen by a hash of their bytes; "
                             "join the parts with: grade merge")
    args = parser.parse_args(command)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    if args.lesson and not LESSON_ID.match(args.lesson):
        parser.error("--lesson takes two digits, such as 01")
    submissions = {path.resolve() for path in args.submissions}
    if args.out.resolve() in submissions:
        parser.error(f"--out {args.out} is one of the submissions; choose another file name")
    executed = None if args.no_executed else (args.executed or args.out.with_name(f"{args.out.stem}-executed"))
    if executed is not None and any(path.parent == executed.resolve() for path in submissions):
        parser.error(f"the executed-notebook folder {executed} holds submissions; pass --executed DIR")
    if args.check_timeout <= 0:
        parser.error("--check-timeout must be a positive number of seconds")
    if args.memory_mb < 512:
        parser.error("--memory-mb must be at least 512 (TensorFlow alone needs more)")
    if args.processes < 16:
        parser.error("--processes must be at least 16 (TensorFlow starts a few dozen threads)")
    if args.cpu_seconds is not None and args.cpu_seconds < 1:
        parser.error("--cpu-seconds must be a positive number of seconds")
    keys = None
    if args.keys is not None:
        try:
            keys = read_keys(args.keys)
        except ValueError as error:
            parser.error(str(error))
    hidden = {path.resolve().parent for path in args.submissions} | {args.out.resolve().parent}
    if executed is not None:
        hidden.add(executed.resolve())
    if args.keys is not None:
        hidden.add(args.keys.resolve().parent)
    missing = "no sandbox: --no-sandbox given" if args.no_sandbox else sandbox.unavailable()
    if missing:
        isolation = Isolation()
    else:
        cpu = args.cpu_seconds or int(args.timeout + args.check_timeout + 60)
        isolation = Isolation(sandbox.Limits(args.memory_mb, cpu, args.processes), tuple(sorted(hidden)))
    settings = Settings(timeout=args.timeout, check_seconds=args.check_timeout, profile=args.profile,
                        lesson=args.lesson, executed_dir=executed, isolation=isolation,
                        sandbox_note=missing or "bwrap", keys=keys)
    start = time.monotonic()
    try:
        batch = shards.start(args.submissions, args.shard, args.out, vars(args)) if args.shard else list(args.submissions)
        grades, interrupted = asyncio.run(_run_batch(batch, args.out, settings, args.jobs, args.quiet))
    except KeyboardInterrupt:
        print("Interrupted: the CSV holds the submissions graded so far.", file=sys.stderr)
        return 1
    except SandboxError as error:
        print(f"The sandbox cannot start on this machine, so no submission was graded: {inert(error)}\n"
              "Run the grader where bubblewrap can make namespaces and read the Python installation (when "
              "you are root, the sandbox runs as nobody: the installation must be readable by other users), "
              "or pass --no-sandbox for work you trust.", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"The grader failed: {type(error).__name__}: {inert(error)}", file=sys.stderr)
        return 1
    print(summary(grades, time.monotonic() - start, args.jobs, settings))
    if interrupted:
        print(f"Interrupted: {args.out} holds the {sum(g.status != 'interrupted' for g in grades)} submission(s) "
              "graded so far; the one(s) in progress are marked interrupted.", file=sys.stderr)
        return 1
    print(f"Wrote {args.out}" + (f"; executed notebooks in {executed}/" if executed else ""))
    return 1 if any(g.status == "grader-error" for g in grades) else 0


if __name__ == "__main__":
    sys.exit(main())
