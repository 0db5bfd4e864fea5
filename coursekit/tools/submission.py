"""One submission in a kernel of its own, then the grader's own copy of the checks inside it.

Used by :mod:`coursekit.tools.grade`. A :class:`SubmissionRun` starts a fresh kernel in a given folder,
caps the output the kernel may send, runs the notebook's code cells until a deadline (a cell that
raises does not stop it; one still running at the deadline is interrupted), then loads the
checks' source, read by the grader before any submission ran, under a private module name and
checks each task against the objects the notebook defined. What the notebook printed, and any
change it made to the kernel's own ``coursekit``, play no part in that.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from .. import checks

GRADE_MIME = "application/vnd.coursekit.grade+json"
TIMEOUT_ENAME = "CoursekitGraderTimeout"


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
_coursekit_display.display(
    {@MIME@: dict(_coursekit_sys.modules[@MODULE@].grade(@TASK@, _coursekit_sys._getframe(0).f_globals),
                  nonce=@NONCE@)}, raw=True)
del _coursekit_sys, _coursekit_display
'''


def _fill(template: str, **values) -> str:
    """``template`` with every ``@NAME@`` replaced by ``repr(values[name])``."""
    return re.sub(r"@([A-Z]+)@", lambda match: repr(values[match.group(1).lower()]), template)


# ----------------------------------------------------------------------------- one submission

class CappedClient(NotebookClient):
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
class Execution:
    status: str = "ok"                 # ok | errors | timeout | kernel-died
    reason: str = ""
    died_at: int | None = None         # index of the cell during which the kernel died
    errors: list[str] = field(default_factory=list)


class SubmissionRun:
    """One kernel running one submission, then the grader's checks inside it."""

    def __init__(self, notebook, workdir: Path, deadline: float, timeout: float, output_limit: int,
                 profile: str = "smoke"):
        """Run ``notebook`` with ``workdir`` as its current folder; code cells stop at ``deadline``
        (a ``time.monotonic()`` value; ``timeout`` is the time it stands for, for messages)."""
        self.notebook, self.deadline, self.timeout, self.output_limit = notebook, deadline, timeout, output_limit
        self.client = CappedClient(
            notebook, output_limit, kernel_name="python3", allow_errors=True,
            interrupt_on_timeout=True, record_timing=False, shutdown_kernel="immediate",
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "the notebook ran out of time",
                              "traceback": []},
            startup_timeout=int(max(10, min(60, timeout))),
            resources={"metadata": {"path": str(workdir)}})
        self.client.on_cell_executed = self._remember_reply
        self.env = {**os.environ, "COURSEKIT_PROFILE": profile, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}

    def kernel(self):
        """``async with run.kernel():`` starts the kernel (its own output silenced) and stops it."""
        return self.client.async_setup_kernel(env=self.env, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)

    def _remember_reply(self, cell, cell_index, execute_reply):
        self.client.last_reply = execute_reply

    async def execute(self, stop: int | None = None) -> Execution:
        """Run the code cells before index ``stop`` (all when None) until the deadline."""
        result = Execution()
        note_added = False
        cap_code = _fill(_CAP_OUTPUT_CODE, limit=self.output_limit, exempt=GRADE_MIME,
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
                return Execution("timeout", f"ran out of time ({self.timeout:g} s) before {where}",
                                 None, result.errors)
            self.client.timeout = max(1, math.ceil(remaining))
            self.client.last_reply = None
            try:
                await self.client.async_execute_cell(cell, index)
            except DeadKernelError:
                return Execution("kernel-died", f"the kernel died in {where} (os._exit, a crash or "
                                 "running out of memory)", index, result.errors)
            if self.client.truncated and not note_added:
                cell.outputs.append(nbformat.v4.new_output(
                    "stream", name="stderr", text=f"\n[output truncated: the grader keeps "
                                                  f"{self.output_limit / 1e6:g} MB per notebook]\n"))
                note_added = True
            reply = (self.client.last_reply or {}).get("content", {})
            if reply.get("ename") == TIMEOUT_ENAME:
                return Execution("timeout", f"still running {where} after {self.timeout:g} s; "
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

    async def check_tasks(self, tasks: list, sources: dict, packages: list,
                          seconds: float) -> tuple[dict[str, dict], bool]:
        """Load the trusted checks into the kernel and check every task within ``seconds``.

        Returns ``({task_id: {"passed", "message", "check_error"}}, kernel still alive)``.
        """
        deadline = time.monotonic() + seconds
        prefix = f"_coursekit_grader_{secrets.token_hex(8)}"
        loader = _fill(_LOAD_CHECKS_CODE, prefix=prefix, sources=sources, packages=packages)
        state, _ = await self.hidden(loader, timeout=max(1.0, deadline - time.monotonic()))
        if state != "ok":
            note = _not_checked("the kernel did not respond after the notebook ran")
            return {task.id: note for task in tasks}, state != "dead"
        outcomes = {}
        for task in tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcomes[task.id] = _not_checked(f"the checks ran out of time ({seconds:g} s)")
                continue
            nonce = secrets.token_hex(8)
            code = _fill(_GRADE_TASK_CODE, mime=GRADE_MIME, module=f"{prefix}.checks", task=task.id, nonce=nonce)
            state, payloads = await self.hidden(code, timeout=remaining)
            payload = next((p for p in payloads if p.get("nonce") == nonce and p.get("task") == task.id), None)
            if payload is None:
                outcomes[task.id] = _not_checked({"timeout": "checking it took too long",
                                                  "dead": "the kernel died"}.get(state, "the check could not run"))
                if state == "dead":
                    return outcomes, False
                continue
            outcomes[task.id] = {"passed": payload.get("passed") is True,
                                 "message": str(payload.get("message", ""))[:500],
                                 "check_error": bool(payload.get("check_error"))}
        return outcomes, True


def _not_checked(why: str) -> dict:
    return {"passed": False, "message": f"not checked: {why}", "check_error": False}
