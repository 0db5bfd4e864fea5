"""Grade exercise notebooks: run each submission in isolation, re-check every task, write a table.

    python -m coursekit.grade SUBMISSION.ipynb... --out grades.csv [--jobs N] [--timeout SECONDS]

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
import math
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from . import checks

OUTPUT_LIMIT = 5_000_000          # characters of output kept per submission
MAX_SUBMISSION_BYTES = 100_000_000
CHECK_SECONDS = 20                # time for all of a submission's checks, after its cells
GRADE_MIME = "application/vnd.coursekit.grade+json"
TIMEOUT_ENAME = "CoursekitGraderTimeout"
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
    check_errors: int = 0
    check_error_messages: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.points.values())


class InvalidSubmission(Exception):
    """The file cannot be graded as a notebook; the message says why."""


# ----------------------------------------------------------------------------- trusted check code

def trusted_sources() -> tuple[dict[str, str], list[str]]:
    """Every module of this coursekit as text, keyed by dotted name relative to the package.

    Read once, before any submission runs, so that a submission that edits files on disk cannot
    change the checks the grader runs afterwards.
    """
    root = Path(checks.__file__).resolve().parents[1]
    sources, packages = {}, []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            packages.append(".".join(parts))
        sources[".".join(parts)] = path.read_text()
    for lesson in checks.lessons():  # the grader's own task table, loaded before any submission
        checks.tasks(lesson)
    return sources, packages


_CAP_OUTPUT_CODE = r'''
def _coursekit_cap_output(limit, note, exempt):
    import sys
    shell = get_ipython()
    owners = (getattr(shell, "kernel", None), sys.stdout, sys.stderr,
              getattr(shell, "display_pub", None), getattr(shell, "displayhook", None))
    sessions = {id(s): s for s in (getattr(o, "session", None) for o in owners) if s is not None}
    left = [limit]
    capped = {"stream", "display_data", "execute_result", "update_display_data", "error"}

    def size(body):
        if "text" in body:
            return len(body["text"])
        if "data" in body:
            return sum(len(v) if isinstance(v, str) else len(repr(v)) for v in body["data"].values())
        return len(str(body.get("evalue", ""))) + sum(len(line) for line in body.get("traceback", []))

    def shrink(msg_type, body):
        if msg_type == "stream":
            body["text"] = body["text"][:max(left[0], 0)] + note
        elif msg_type == "error":
            body["evalue"], body["traceback"] = str(body.get("evalue", ""))[:1000], [note]
        else:
            body["data"], body["metadata"] = {"text/plain": note}, {}

    def wrap(send):
        def capped_send(stream, msg_or_type, content=None, *args, **kwargs):
            if isinstance(msg_or_type, dict):
                msg_type, body = msg_or_type.get("msg_type"), msg_or_type.get("content")
            else:
                msg_type, body = msg_or_type, content
            if msg_type in capped and isinstance(body, dict) and exempt not in body.get("data", {}):
                if left[0] < 0:
                    return None
                needed = size(body)
                if needed > left[0]:
                    shrink(msg_type, body)
                    left[0] = -1
                else:
                    left[0] -= needed
            return send(stream, msg_or_type, content, *args, **kwargs)
        return capped_send

    for session in sessions.values():
        session.send = wrap(session.send)

_coursekit_cap_output(@LIMIT@, @NOTE@, @EXEMPT@)
del _coursekit_cap_output
'''

_LOAD_CHECKS_CODE = r'''
def _coursekit_load_checks(prefix, sources, packages):
    import importlib, importlib.abc, importlib.util, sys

    class TrustedCopy(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            if fullname != prefix and not fullname.startswith(prefix + "."):
                return None
            relative = fullname[len(prefix) + 1:]
            if relative not in sources:
                return None
            return importlib.util.spec_from_loader(fullname, self, is_package=relative in packages)

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            relative = module.__name__[len(prefix) + 1:]
            code = compile(sources[relative], f"<grader's coursekit/{relative or '__init__'}>", "exec")
            exec(code, module.__dict__)

    sys.meta_path.insert(0, TrustedCopy())
    importlib.import_module(prefix + ".checks")

_coursekit_load_checks(@PREFIX@, @SOURCES@, @PACKAGES@)
del _coursekit_load_checks
'''

_GRADE_TASK_CODE = r'''
import sys as _coursekit_sys
import IPython.display as _coursekit_display
_coursekit_display.display({@MIME@: dict(_coursekit_sys.modules[@MODULE@].grade(@TASK@, _coursekit_sys._getframe(0).f_globals), nonce=@NONCE@)}, raw=True)
del _coursekit_sys, _coursekit_display
'''


def _fill(template: str, **values) -> str:
    """``template`` with every ``@NAME@`` replaced by ``repr(values[name])``."""
    return re.sub(r"@([A-Z]+)@", lambda match: repr(values[match.group(1).lower()]), template)


# ----------------------------------------------------------------------------- one submission

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


class _CappedClient(NotebookClient):
    """nbclient's client, keeping at most ``output_limit`` characters of output per notebook."""

    def __init__(self, nb, output_limit: int, **kwargs):
        super().__init__(nb, **kwargs)
        self.output_left = output_limit
        self.truncated = False
        self.last_reply: dict | None = None

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = _output_size(msg["msg_type"], content)
        if size > self.output_left:
            self.truncated = True
            if msg["msg_type"] == "stream" and self.output_left > 0:
                content["text"] = content.get("text", "")[:self.output_left]
                self.output_left = 0
                return super().output(outs, msg, display_id, cell_index)
            self.output_left = 0
            return None
        self.output_left -= size
        return super().output(outs, msg, display_id, cell_index)


def _output_size(msg_type: str, content: dict) -> int:
    if msg_type == "stream":
        return len(content.get("text", ""))
    if "data" in content:
        return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in content["data"].values())
    if msg_type == "error":
        return len(str(content.get("evalue", ""))) + sum(len(line) for line in content.get("traceback", []))
    return 0


def _first_line(source: str) -> str:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class _Execution:
    status: str = "ok"                 # ok | errors | timeout | kernel-died
    reason: str = ""
    died_at: int | None = None         # index of the cell during which the kernel died
    errors: list[str] = field(default_factory=list)


class _SubmissionRun:
    """One kernel running one submission, then the grader's checks inside it."""

    def __init__(self, notebook, workdir: Path, settings: Settings, deadline: float):
        self.notebook, self.settings, self.deadline = notebook, settings, deadline
        self.client = _CappedClient(
            notebook, settings.output_limit, kernel_name="python3", allow_errors=True,
            interrupt_on_timeout=True, record_timing=False, shutdown_kernel="immediate",
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "the notebook ran out of time",
                              "traceback": []},
            startup_timeout=int(max(10, min(60, settings.timeout))),
            resources={"metadata": {"path": str(workdir)}})
        self.client.on_cell_executed = self._remember_reply
        self.env = {**os.environ, "COURSEKIT_PROFILE": settings.profile,
                    "PYDEVD_DISABLE_FILE_VALIDATION": "1"}

    def _remember_reply(self, cell, cell_index, execute_reply):
        self.client.last_reply = execute_reply

    async def execute(self, stop: int | None = None) -> _Execution:
        """Run the code cells before index ``stop`` (all when None) until the deadline."""
        result = _Execution()
        note_added = False
        cap_code = _fill(_CAP_OUTPUT_CODE, limit=self.settings.output_limit, exempt=GRADE_MIME,
                                           note="\n[... more output dropped by the grader ...]\n")
        await self.hidden(cap_code, timeout=min(30.0, max(1.0, self.deadline - time.monotonic())))
        for index, cell in enumerate(self.notebook.cells):
            if stop is not None and index >= stop:
                break
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            remaining = self.deadline - time.monotonic()
            where = f"cell {index + 1} (`{_first_line(cell.source)}`)"
            if remaining <= 0:
                return _Execution("timeout", f"ran out of time ({self.settings.timeout:g} s) before {where}",
                                  None, result.errors)
            self.client.timeout = max(1, math.ceil(remaining))
            self.client.last_reply = None
            try:
                await self.client.async_execute_cell(cell, index)
            except DeadKernelError:
                return _Execution("kernel-died", f"the kernel died in {where} (os._exit, a crash or "
                                  "running out of memory)", index, result.errors)
            if self.client.truncated and not note_added:
                cell.outputs.append(nbformat.v4.new_output(
                    "stream", name="stderr", text=f"\n[output truncated: the grader keeps "
                                                  f"{self.settings.output_limit / 1e6:g} MB per notebook]\n"))
                note_added = True
            reply = (self.client.last_reply or {}).get("content", {})
            if reply.get("ename") == TIMEOUT_ENAME:
                return _Execution("timeout", f"still running {where} after {self.settings.timeout:g} s; "
                                  "interrupted", None, result.errors)
            for output in cell.outputs:
                if output.get("output_type") == "error":
                    message = str(output.get("evalue") or "").strip()[:120]
                    result.errors.append(f"{where}: {output.get('ename')}" + (f": {message}" if message else ""))
                    break
        if result.errors:
            result.status = "errors"
        return result

    async def hidden(self, code: str, timeout: float) -> tuple[str, list[dict]]:
        """Run ``code`` in the kernel outside the notebook; ``(state, grade payloads)``.

        state: ok, error, timeout (interrupted) or dead.
        """
        kc, km = self.client.kc, self.client.km
        msg_id = kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        deadline, payloads, state = time.monotonic() + timeout, [], "ok"
        interrupted_at = None
        while True:
            now = time.monotonic()
            if now >= deadline and interrupted_at is None:
                await ensure_async(km.interrupt_kernel())
                interrupted_at, state = now, "timeout"
            if interrupted_at is not None and now >= interrupted_at + 3:
                return "timeout", payloads
            try:
                msg = await ensure_async(kc.iopub_channel.get_msg(timeout=0.5))
            except Empty:
                if not await ensure_async(km.is_alive()):
                    return "dead", payloads
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "display_data" and GRADE_MIME in content.get("data", {}):
                payloads.append(content["data"][GRADE_MIME])
            elif kind == "error" and state == "ok":
                state = "error"
            elif kind == "status" and content.get("execution_state") == "idle":
                return state, payloads

    async def check_tasks(self, tasks: list, sources: dict, packages: list, grade: Grade) -> bool:
        """Load the trusted checks into the kernel and check every task; False if the kernel is gone."""
        deadline = time.monotonic() + self.settings.check_seconds
        prefix = f"_coursekit_grader_{secrets.token_hex(8)}"
        loader = _fill(_LOAD_CHECKS_CODE, prefix=prefix, sources=sources, packages=packages)
        state, _ = await self.hidden(loader, timeout=max(1.0, deadline - time.monotonic()))
        if state != "ok":
            for task in tasks:
                grade.feedback[task.id] = "not checked: the kernel did not respond after the notebook ran"
            return state != "dead"
        for task in tasks:
            nonce = secrets.token_hex(8)
            code = _fill(_GRADE_TASK_CODE, mime=GRADE_MIME, module=f"{prefix}.checks", task=task.id, nonce=nonce)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                grade.feedback[task.id] = f"not checked: the checks ran out of time ({self.settings.check_seconds:g} s)"
                continue
            state, payloads = await self.hidden(code, timeout=remaining)
            outcome = next((p for p in payloads if p.get("nonce") == nonce and p.get("task") == task.id), None)
            if outcome is None:
                grade.feedback[task.id] = ("not checked: checking it took too long" if state == "timeout"
                                           else "not checked: the kernel died" if state == "dead"
                                           else "not checked: the check could not run")
                if state == "dead":
                    return False
                continue
            if outcome.get("passed") is True:
                grade.points[task.id] = task.points
            grade.feedback[task.id] = str(outcome.get("message", ""))[:500]
            if outcome.get("check_error"):
                grade.check_errors += 1
                grade.check_error_messages.append(f"{task.id}: {grade.feedback[task.id][:200]}")
        return True


def _grade_cell(grade: Grade, tasks: list) -> nbformat.NotebookNode:
    lines = [f"## Grade: {grade.total} / {sum(t.points for t in tasks)} points ({grade.status})", ""]
    if grade.reason:
        lines += [grade.reason, ""]
    lines += ["| task | points | feedback |", "|---|---|---|"]
    for task in tasks:
        feedback = grade.feedback.get(task.id, "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {task.id} {task.title} | {grade.points.get(task.id, 0)}/{task.points} | {feedback} |")
    return nbformat.v4.new_markdown_cell("\n".join(lines))


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
    grade.points = {task.id: 0 for task in tasks}
    workdir = Path(tempfile.mkdtemp(prefix="coursekit-grade-"))
    try:
        (workdir / path.name).write_bytes(data)
        deadline = start + settings.timeout
        execution, stop, record, truncated = None, None, None, False
        for attempt in (1, 2):
            run = _SubmissionRun(nbformat.from_dict(json.loads(json.dumps(notebook))), workdir, settings, deadline)
            async with run.client.async_setup_kernel(env=run.env, stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.DEVNULL):
                result = await run.execute(stop)
                truncated = truncated or run.client.truncated
                if attempt == 1:
                    execution, record = result, run.notebook
                if result.status == "kernel-died":
                    if attempt == 1 and result.died_at:
                        stop = result.died_at  # re-run what came before the cell that killed it
                        continue
                    if attempt == 2:
                        execution.reason += "; re-running the cells before it failed too"
                    break
                if attempt == 2:
                    execution.reason += "; graded on a re-run of the cells before it"
                if not await run.check_tasks(tasks, sources, packages, grade):
                    execution.reason += "; the kernel died while checking"
                break
        grade.status = execution.status
        reasons = [execution.reason] if execution.reason else []
        if execution.errors:
            more = f" (and {len(execution.errors) - 1} more)" if len(execution.errors) > 1 else ""
            reasons.append(f"errors in {execution.errors[0]}{more}")
        if truncated:
            reasons.append(f"output truncated at {settings.output_limit / 1e6:g} MB")
        if grade.check_errors:
            reasons.append(f"{grade.check_errors} check(s) failed internally, please report to the course "
                           f"maintainers ({grade.check_error_messages[0]})")
        grade.reason = "; ".join(reasons)
        if record_path is not None:
            record.cells.append(_grade_cell(grade, tasks))
            record_path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(record, record_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        grade.seconds = time.monotonic() - start
    return grade


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
    parser = argparse.ArgumentParser(prog="python -m coursekit.grade", description=__doc__,
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
