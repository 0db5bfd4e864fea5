"""Grade exercise notebooks: run each submission in isolation, re-check every task, write a table.

    python -m coursekit.tools.grade SUBMISSION.ipynb... --out grades.csv [--jobs N] [--timeout SECONDS]

Each submission is read once (never written), and a copy runs in a fresh kernel in a temporary
folder of its own, with a time limit for the whole notebook. Cells that raise do not stop it.
Afterwards the grader loads its own copy of the checks into that kernel (read from this
installation before any submission ran, under a private module name) and checks every task of
the lesson against the objects the notebook defined: what a notebook prints, a redefined
``check`` or a patched ``coursekit.checks`` earn nothing. A submission that runs out of time is
interrupted and the tasks it finished are still checked; one whose kernel dies is re-run up to
the cell that killed it. Output beyond a limit is dropped, in the kernel and in the grader.

The CSV (written atomically, after every submission) has one row per submission: file, the points
of each task, total, status (ok, errors, timeout, kernel-died, invalid, grader-error), reason
and seconds. A run ends within --timeout plus --check-timeout plus a few seconds.
Executed copies of the submissions, ending in a grade cell, go to ``<out>-executed/``.
The exit status is 0 whatever the submissions do; 1 only when the grader itself failed.

This is not a security sandbox: a submission runs with your permissions. Grade notebooks you do
not trust inside a container or a throw-away account.
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
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import checks
from .submission import SubmissionRun, trusted_sources

OUTPUT_LIMIT = 5_000_000          # characters of output kept per submission
MAX_SUBMISSION_BYTES = 100_000_000
CHECK_SECONDS = 20                # time for all of a submission's checks, after its cells
STATUSES = ("ok", "errors", "timeout", "kernel-died", "invalid", "grader-error")


@dataclass
class Settings:
    timeout: float = 600.0
    check_seconds: float = CHECK_SECONDS
    output_limit: int = OUTPUT_LIMIT
    profile: str = "smoke"
    lesson: str | None = None
    executed_dir: Path | None = None


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

    @property
    def total(self) -> int:
        return sum(self.points.values())


class InvalidSubmission(Exception):
    """The file cannot be graded as a notebook; the message says why."""


def read_submission(path: Path, limit_bytes: int = MAX_SUBMISSION_BYTES):
    """The notebook at ``path`` with outputs cleared, or :class:`InvalidSubmission`."""
    if not path.is_file():
        raise InvalidSubmission("no such file")
    size = path.stat().st_size
    if size > limit_bytes:
        raise InvalidSubmission(f"{size / 1e6:.0f} MB is too large: clear the outputs "
                                "(Edit > Clear all outputs) and submit again")
    data = path.read_bytes()
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    except UnicodeDecodeError:
        raise InvalidSubmission("not a text file (not UTF-8): is it really an .ipynb notebook?") from None
    except Exception as error:  # nbformat raises several kinds for broken JSON
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise InvalidSubmission(f"not a valid notebook (invalid JSON or format): {first}") from None
    code_cells = [cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"]
    if not code_cells:
        raise InvalidSubmission("the notebook has no code cells")
    for cell in code_cells:
        cell.outputs, cell.execution_count = [], None
        if not isinstance(cell.get("source"), str):
            raise InvalidSubmission("a code cell has no source text")
    return notebook, data


_CHECK_CALL = re.compile(r"""check\(\s*["'](\d\d)\.\d+["']""")


def lesson_of(notebook, path: Path, forced: str | None = None) -> str | None:
    """The lesson a submission belongs to: forced, else its metadata, check calls, or file name."""
    if forced:
        return forced
    declared = str(notebook.metadata.get("coursekit", {}).get("lesson", ""))
    if re.fullmatch(r"\d\d", declared):
        return declared
    calls = Counter(match for cell in notebook.cells if cell.cell_type == "code"
                    for match in _CHECK_CALL.findall(cell.source))
    if calls:
        return calls.most_common(1)[0][0]
    named = re.match(r"(\d\d)_", path.name)
    return named.group(1) if named else None


def _grade_cell(grade: Grade, tasks: list) -> nbformat.NotebookNode:
    lines = [f"## Grade: {grade.total} / {sum(t.points for t in tasks)} points ({grade.status})", ""]
    if grade.reason:
        lines += [grade.reason, ""]
    lines += ["| task | points | feedback |", "|---|---|---|"]
    for task in tasks:
        feedback = grade.feedback.get(task.id, "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {task.id} {task.title} | {grade.points.get(task.id, 0)}/{task.points} | {feedback} |")
    return nbformat.v4.new_markdown_cell("\n".join(lines))


async def _run_and_check(notebook, workdir: Path, tasks: list, settings: Settings, sources: dict,
                         packages: list, deadline: float):
    """Run the notebook, re-running once up to a cell that killed the kernel, then check its tasks.

    Returns the first run's :class:`Execution` and executed notebook, whether output was
    truncated, and each task's outcome (missing when no check could run).
    """
    execution, record, truncated, outcomes, stop = None, None, False, {}, None
    for attempt in (1, 2):
        run = SubmissionRun(nbformat.from_dict(json.loads(json.dumps(notebook))), workdir, deadline,
                            settings.timeout, settings.output_limit, settings.profile)
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
            outcomes, alive = await run.check_tasks(tasks, sources, packages, settings.check_seconds)
            if not alive:
                execution.reason += "; the kernel died while checking"
            break
    return execution, record, truncated, outcomes


async def grade_submission(path: Path, settings: Settings, sources: dict, packages: list,
                           record_path: Path | None = None) -> Grade:
    """Grade one submission; never raises for anything the submission does."""
    start = time.monotonic()
    grade = Grade(file=str(path))
    try:
        notebook, data = read_submission(path)
    except InvalidSubmission as invalid:
        grade.status, grade.reason = "invalid", str(invalid)
        return grade
    grade.lesson = lesson_of(notebook, path, settings.lesson)
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
        (workdir / path.name).write_bytes(data)
        execution, record, truncated, outcomes = await _run_and_check(
            notebook, workdir, tasks, settings, sources, packages, deadline=start + settings.timeout)
        for task in tasks:
            outcome = outcomes.get(task.id, {"passed": False, "message": "not checked", "check_error": False})
            grade.points[task.id] = task.points if outcome["passed"] else 0
            grade.feedback[task.id] = outcome["message"]
            if outcome["check_error"]:
                grade.check_errors.append(f"{task.id}: {outcome['message'][:200]}")
        grade.status = execution.status
        grade.reason = _reason(execution, truncated, grade.check_errors, settings.output_limit)
        if record_path is not None:
            record.cells.append(_grade_cell(grade, tasks))
            record_path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(record, record_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
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

def _record_paths(paths: list[Path], folder: Path | None) -> list[Path | None]:
    if folder is None:
        return [None] * len(paths)
    taken, result = set(), []
    for path in paths:
        name, n = path.name if path.suffix == ".ipynb" else f"{path.name}.ipynb", 1
        while name in taken:
            n += 1
            name = f"{path.stem}_{n}.ipynb"
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
    writer.writerow(["file", *columns, "total", "status", "reason", "seconds"])
    for grade in grades:
        cells = [grade.points.get(column, "") if grade.lesson and column in grade.points else ""
                 for column in columns]
        writer.writerow([grade.file, *cells, grade.total, grade.status, grade.reason, f"{grade.seconds:.1f}"])
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
                    quiet: bool = False) -> list[Grade]:
    sources, packages = trusted_sources()
    records = _record_paths(paths, settings.executed_dir)
    grades: list[Grade | None] = [None] * len(paths)
    limit = asyncio.Semaphore(max(1, jobs))
    done = 0

    async def one(index: int) -> None:
        nonlocal done
        async with limit:
            path = paths[index]
            try:
                grade = await asyncio.wait_for(
                    grade_submission(path, settings, sources, packages, records[index]),
                    timeout=settings.timeout + settings.check_seconds + 120)
            except Exception as error:  # a failure of the grader, not of the submission
                grade = Grade(file=str(path), status="grader-error",
                              reason=f"{type(error).__name__}: {error}"[:300] or type(error).__name__)
            grades[index] = grade
            done += 1
            write_csv([g for g in grades if g is not None], out)
            if not quiet:
                print(f"[{done}/{len(paths)}] {path}: {grade.total} points, {grade.status}"
                      f"{' (' + grade.reason + ')' if grade.reason else ''} in {grade.seconds:.1f} s", flush=True)

    await asyncio.gather(*(one(i) for i in range(len(paths))))
    return [g for g in grades if g is not None]


def summary(grades: list[Grade], seconds: float, jobs: int) -> str:
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
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    if args.lesson and not re.fullmatch(r"\d\d", args.lesson):
        parser.error("--lesson takes two digits, such as 01")
    submissions = {path.resolve() for path in args.submissions}
    if args.out.resolve() in submissions:
        parser.error(f"--out {args.out} is one of the submissions; choose another file name")
    executed = None if args.no_executed else (args.executed or args.out.with_name(f"{args.out.stem}-executed"))
    if executed is not None and any(path.parent == executed.resolve() for path in submissions):
        parser.error(f"the executed-notebook folder {executed} holds submissions; pass --executed DIR")
    if args.check_timeout <= 0:
        parser.error("--check-timeout must be a positive number of seconds")
    settings = Settings(timeout=args.timeout, check_seconds=args.check_timeout, profile=args.profile,
                        lesson=args.lesson, executed_dir=executed)
    start = time.monotonic()
    try:
        grades = asyncio.run(grade_all(list(args.submissions), args.out, settings, args.jobs, args.quiet))
    except KeyboardInterrupt:
        print("Interrupted: the CSV holds the submissions graded so far.", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"The grader failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(summary(grades, time.monotonic() - start, args.jobs))
    print(f"Wrote {args.out}" + (f"; executed notebooks in {executed}/" if executed else ""))
    return 1 if any(g.status == "grader-error" for g in grades) else 0


if __name__ == "__main__":
    sys.exit(main())
