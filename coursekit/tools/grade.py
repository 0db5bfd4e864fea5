"""Grade exercise notebooks: run each submission in a sandbox of its own, check every task outside it.

    python -m coursekit.tools.grade SUBMISSION.ipynb... --out grades.csv --lesson NN [--jobs N] [--timeout SECONDS]

Every submission is read into memory and hashed before the first kernel starts (the files are
never written). Each then runs in a fresh kernel, in a temporary folder of its own, inside a
bubblewrap sandbox (:mod:`coursekit.tools.sandbox`: read-only system and installation, private
HOME and temporary folder, no network, its own process namespace, an allow-listed environment,
--memory-mb and --cpu-seconds per process), with a time limit for the whole notebook. Cells that
raise do not stop it. Afterwards every task is checked in the grader's own process: the cases
and the reference are made here, the student's answer is called in the kernel on the cases,
and only plain data comes back (:mod:`coursekit.tools.remote`). What a notebook prints,
patches or redefines earns nothing. A submission that runs out of time is interrupted and the
tasks it finished are still checked; one whose kernel dies is re-run up to the cell that killed it.

The lesson comes from the instructor: with --lesson NN every submission is graded as lesson NN,
and one whose notebook belongs to another lesson gets 0 (``lesson mismatch``). Without it the
lesson is read from each notebook (its metadata, check calls or file name).

The CSV (written atomically, after every submission, only by the grader and where no kernel can
see it) has one row per submission: file, the points of each task, total, status (ok, errors,
timeout, kernel-died, invalid, interrupted, grader-error), reason, seconds and sandbox. A
submission takes at most --timeout plus --check-timeout plus :data:`GRACE_SECONDS`. Executed
copies of the submissions, ending in a grade cell, go to ``<out>-executed/``. Ctrl-C stops the
batch: rows already graded are kept, the ones in progress are marked interrupted, and the exit
status is 1. Otherwise the exit status is 0 whatever the submissions do; 1 when the grader failed.

Without bubblewrap (macOS, or where namespaces cannot be made) submissions run with your
permissions, as the summary and every row say: grade notebooks you do not trust in a container
or a throw-away account there.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
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
from . import exits, notebook_json, sandbox
from .submission import Isolation, SubmissionRun, preload

OUTPUT_LIMIT = 5_000_000          # characters of output kept per submission
MAX_FILE_BYTES = 200_000_000      # the file as saved: Colab keeps every figure, and outputs are dropped
MAX_NOTEBOOK_BYTES = 20_000_000   # what is run: the notebook without its outputs
MAX_CELLS = 2_000                 # cells of the notebook that is run
READ_SECONDS = 120                # to read, parse and strip one file (in a process of its own)
CHECK_SECONDS = 20                # time for all of a submission's checks, after its cells
GRACE_SECONDS = 60                # per submission, beyond both: kernel start and stop, writing the record
STATUSES = ("ok", "errors", "timeout", "kernel-died", "invalid", "interrupted", "grader-error")


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
    lines = [f"## Grade: {grade.total} / {sum(t.points for t in tasks)} points ({grade.status})", ""]
    if grade.reason:
        lines += [grade.reason, ""]
    lines += ["| task | points | feedback |", "|---|---|---|"]
    for task in tasks:
        feedback = grade.feedback.get(task.id, "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {task.id} {task.title} | {grade.points.get(task.id, 0)}/{task.points} | {feedback} |")
    return nbformat.v4.new_markdown_cell("\n".join(lines))


async def _run_and_check(notebook, workdir: Path, tasks: list, settings: Settings, deadline: float):
    """Run the notebook, re-running once up to a cell that killed the kernel, then check its tasks.

    Returns the first run's :class:`Execution` and executed notebook, whether output was
    truncated, and each task's outcome (missing when no check could run).
    """
    execution, record, truncated, outcomes, stop = None, None, False, {}, None
    for attempt in (1, 2):
        run = SubmissionRun(nbformat.from_dict(json.loads(json.dumps(notebook))), workdir, deadline,
                            settings.timeout, settings.output_limit, settings.profile, settings.isolation)
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
            outcomes, alive = await run.check_tasks(tasks, settings.check_seconds)
            if not alive:
                execution.reason += "; the kernel died while checking"
            break
    return execution, record, truncated, outcomes


def _workdir_name(name: str) -> str:
    """A plain file name for the copy the kernel runs (the student's may hold any bytes)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name)[:80].strip("._") or "submission"
    return stem if stem.endswith(".ipynb") else f"{stem}.ipynb"


async def grade_submission(found: Submission, settings: Settings, record_path: Path | None = None) -> Grade:
    """Grade one submission; never raises for anything the submission does."""
    start = time.monotonic()
    grade = Grade(file=found.name, sandbox=settings.sandbox_note)
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
        workdir = Path(tempfile.mkdtemp(prefix="coursekit-grade-"))
        try:
            (workdir / _workdir_name(found.name)).write_bytes(found.data)
            execution, record, truncated, outcomes = await _run_and_check(
                notebook, workdir, tasks, settings, deadline=start + settings.timeout)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        for task in tasks:
            outcome = outcomes.get(task.id, {"passed": False, "message": "not checked", "check_error": False})
            grade.points[task.id] = task.points if outcome["passed"] else 0
            grade.feedback[task.id] = outcome["message"]
            if outcome["check_error"]:
                grade.check_errors.append(f"{task.id}: {outcome['message'][:200]}")
        grade.status = execution.status
        grade.reason = _reason(execution, truncated, grade.check_errors, settings.output_limit)
        grade.reason = "; ".join(filter(None, [grade.reason, exits.exit_note(notebook)]))
        if record_path is not None:
            try:
                record.cells.append(_grade_cell(grade, tasks))
                record.metadata["coursekit_grade"] = {"sha256": found.sha256, "total": grade.total,
                                                      "status": grade.status, "sandbox": grade.sandbox}
                record_path.parent.mkdir(parents=True, exist_ok=True)
                text = nbformat.writes(record)
                record_path.write_text(text)
            except Exception as error:  # noqa: BLE001 - outputs that do not serialise: the grade stands
                grade.reason = "; ".join(filter(None, [grade.reason, f"executed copy not written ({type(error).__name__})"]))
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
        name = _workdir_name(item.name)
        stem, n = name[:-len(".ipynb")], 1
        while name in taken:
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
    """Write the table to ``out`` atomically: a reader sees the old file or the new one."""
    columns = task_columns(grades)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", *columns, "total", "status", "reason", "seconds", "sandbox"])
    for grade in grades:
        cells = [grade.points.get(column, "") if grade.lesson and column in grade.points else ""
                 for column in columns]
        writer.writerow([grade.file, *cells, grade.total, grade.status, grade.reason, f"{grade.seconds:.1f}",
                         grade.sandbox])
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="") as file:
            file.write(buffer.getvalue())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def grade_all(paths: list[Path], out: Path, settings: Settings, jobs: int = 1,
                    quiet: bool = False, grades: list | None = None) -> list[Grade]:
    """Grade every submission, ``jobs`` at a time, into ``grades`` (filled as they finish).

    Cancelling it (the instructor's Ctrl-C) marks the submissions in progress ``interrupted``,
    keeps every row already graded in the CSV, and re-raises the cancellation.
    """
    found = [load_submission(path) for path in paths]   # all read and hashed before any kernel starts
    await asyncio.to_thread(preload)
    records = _record_paths(found, settings.executed_dir)
    grades = [None] * len(paths) if grades is None else grades
    grades[:] = [None] * len(paths)
    limit = asyncio.Semaphore(max(1, jobs))
    done = 0
    per_submission = settings.timeout + settings.check_seconds + GRACE_SECONDS

    async def one(index: int) -> None:
        nonlocal done
        async with limit:
            item = found[index]
            try:
                grade = await asyncio.wait_for(grade_submission(item, settings, records[index]), timeout=per_submission)
            except asyncio.TimeoutError:
                grade = Grade(file=item.name, status="timeout", sandbox=settings.sandbox_note, seconds=per_submission,
                              reason=f"the grader stopped it after {per_submission:g} s")
            except asyncio.CancelledError:
                grades[index] = Grade(file=item.name, status="interrupted", sandbox=settings.sandbox_note,
                                      reason="the instructor stopped the batch while this one ran; 0 points")
                raise
            except Exception as error:  # a failure of the grader, not of the submission
                grade = Grade(file=item.name, status="grader-error", sandbox=settings.sandbox_note,
                              reason=f"{type(error).__name__}: {error}"[:300] or type(error).__name__)
            grades[index] = grade
            done += 1
            write_csv([g for g in grades if g is not None], out)
            if not quiet:
                print(f"[{done}/{len(paths)}] {item.name}: {grade.total} points, {grade.status}"
                      f"{' (' + grade.reason + ')' if grade.reason else ''} in {grade.seconds:.1f} s", flush=True)

    running = [asyncio.create_task(one(i)) for i in range(len(paths))]
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
    if settings is not None:
        if settings.isolation.limits is not None:
            limits = settings.isolation.limits
            lines.append(f"Sandbox: bubblewrap, one per submission ({limits.memory_mb} MB of address space and "
                         f"{limits.cpu_seconds} s of CPU per process).")
        else:
            lines.append(f"NOT SANDBOXED: {settings.sandbox_note}; the submissions ran with your permissions.")
        if not settings.lesson:
            lines.append("The lesson was read from each notebook: pass --lesson NN to grade a batch as one lesson.")
    return "\n".join(lines)


def main(argv=None) -> int:
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
    parser.add_argument("--profile", default="smoke", choices=["smoke", "quick", "full"],
                        help="COURSEKIT_PROFILE in the submissions' kernels (default smoke: fastest; "
                             "the checks do not depend on it)")
    parser.add_argument("--executed", type=Path, help="folder for the executed notebooks "
                                                      "(default: <out without .csv>-executed)")
    parser.add_argument("--no-executed", action="store_true", help="do not keep executed notebooks")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--memory-mb", type=int, default=sandbox.MEMORY_MB,
                        help=f"address space per process in the sandbox, in MB (default {sandbox.MEMORY_MB})")
    parser.add_argument("--cpu-seconds", type=int, help="CPU time per process in the sandbox (default: "
                                                        "--timeout plus --check-timeout plus 60)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run kernels as your own processes even where bubblewrap works (not for untrusted work)")
    args = parser.parse_args(argv)
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
    if args.cpu_seconds is not None and args.cpu_seconds < 1:
        parser.error("--cpu-seconds must be a positive number of seconds")
    hidden = {path.resolve().parent for path in args.submissions} | {args.out.resolve().parent}
    if executed is not None:
        hidden.add(executed.resolve())
    missing = "no sandbox: --no-sandbox given" if args.no_sandbox else sandbox.unavailable()
    if missing:
        isolation = Isolation()
    else:
        cpu = args.cpu_seconds or int(args.timeout + args.check_timeout + 60)
        isolation = Isolation(sandbox.Limits(args.memory_mb, cpu), tuple(sorted(hidden)))
    settings = Settings(timeout=args.timeout, check_seconds=args.check_timeout, profile=args.profile,
                        lesson=args.lesson, executed_dir=executed, isolation=isolation, sandbox_note=missing or "bwrap")
    start = time.monotonic()
    try:
        grades, interrupted = asyncio.run(_run_batch(list(args.submissions), args.out, settings, args.jobs, args.quiet))
    except KeyboardInterrupt:
        print("Interrupted: the CSV holds the submissions graded so far.", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"The grader failed: {type(error).__name__}: {error}", file=sys.stderr)
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
