"""One submission in a kernel of its own (sandboxed where possible), then its tasks checked by the grader.

Used by :mod:`coursekit.tools.grade`. A :class:`SubmissionRun` starts a fresh kernel in a given folder
(inside a :mod:`coursekit.tools.sandbox` when one is given), caps the output the kernel may send,
runs the notebook's code cells until a deadline (a cell that raises does not stop it; one still
running at the deadline is interrupted), then checks each task in the grader's own process with
:mod:`coursekit.tools.remote`: the student's answers are called in the kernel and only plain data
comes back. What the notebook printed, and any change it made to the kernel's own ``coursekit``,
play no part in the verdict.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import os
import pkgutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from . import remote, sandbox


def preload() -> None:
    """Import every module of coursekit (and so TensorFlow and Keras) into the grader's process.

    Done once, before any submission runs: a submission that edits files of the installation
    (possible only without the sandbox) cannot change the checks the grader runs afterwards.
    """
    import coursekit

    from .. import checks
    for info in pkgutil.walk_packages(coursekit.__path__, prefix="coursekit."):
        if info.name.startswith("coursekit.tools.") and info.name.rsplit(".", 1)[-1] in ("course", "gallery"):
            continue  # tools that do not check anything
        importlib.import_module(info.name)
    for lesson in checks.lessons():
        checks.tasks(lesson)


class CappedClient(NotebookClient):
    """nbclient's client, keeping at most ``output_limit`` characters of output per notebook."""

    def __init__(self, nb, output_limit: int, **kwargs):
        super().__init__(nb, **kwargs)
        self.output_left = output_limit
        self.truncated = False
        self.timed_out = False
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

    async def _async_handle_timeout(self, timeout, cell=None):
        self.timed_out = True  # the grader's own deadline: known here, not guessed from an error's name
        return await super()._async_handle_timeout(timeout, cell)


def _output_size(msg_type: str, content: dict) -> int:
    if msg_type == "stream":
        return len(str(content.get("text", "")))
    data = content.get("data")
    if isinstance(data, dict):
        return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in data.values())
    if msg_type == "error":
        traceback = content.get("traceback")
        return len(str(content.get("evalue", ""))) + (sum(len(str(line)) for line in traceback)
                                                      if isinstance(traceback, list) else 0)
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


@dataclass(frozen=True)
class Isolation:
    """Where a submission's kernel runs: in a sandbox (``limits`` set) or as the instructor's process."""
    limits: sandbox.Limits | None = None
    hidden: tuple[Path, ...] = ()      # folders the kernel must not see (submissions, outputs)


class SubmissionRun:
    """One kernel running one submission, then the grader's checks of its answers."""

    def __init__(self, notebook, workdir: Path, deadline: float, timeout: float, output_limit: int,
                 profile: str = "smoke", isolation: Isolation | None = None):
        """Run ``notebook`` with ``workdir`` as its current folder; code cells stop at ``deadline``
        (a ``time.monotonic()`` value; ``timeout`` is the time it stands for, for messages)."""
        self.notebook, self.deadline, self.timeout, self.output_limit = notebook, deadline, timeout, output_limit
        self.workdir, self.isolation = Path(workdir), isolation or Isolation()
        self.client = CappedClient(
            notebook, output_limit, kernel_name="python3", allow_errors=True,
            interrupt_on_timeout=True, record_timing=False, shutdown_kernel="immediate",
            error_on_timeout={"ename": "Timeout", "evalue": "the notebook ran out of time", "traceback": []},
            startup_timeout=int(max(10, min(60, timeout))),
            resources={"metadata": {"path": str(workdir)}})
        self.client.on_cell_executed = self._remember_reply
        self.env = {**os.environ, "COURSEKIT_PROFILE": profile, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        self.env.pop("JPY_PARENT_PID", None)

    @contextlib.asynccontextmanager
    async def kernel(self):
        """``async with run.kernel():`` starts the kernel (its own output silenced) and always stops it."""
        sockets = None
        if self.isolation.limits is not None:
            sockets = self.workdir.parent / f"{self.workdir.name}-sockets"
            sockets.mkdir(mode=0o700)
        manager = sandbox.kernel_manager(self.workdir, sockets, list(self.isolation.hidden), self.isolation.limits)
        self.client.km = manager
        try:
            await manager.start_kernel(cwd=str(self.workdir), env=self.env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            await self.client.async_start_new_kernel_client()
            yield self
        finally:
            await asyncio.shield(_stop(self.client, manager))
            if sockets is not None:
                import shutil
                shutil.rmtree(sockets, ignore_errors=True)

    def _remember_reply(self, cell, cell_index, execute_reply):
        self.client.last_reply = execute_reply

    async def execute(self, stop: int | None = None) -> Execution:
        """Run the code cells before index ``stop`` (all when None) until the deadline."""
        result = Execution()
        note_added = False
        cap_code = (f"__import__('coursekit.tools.kernel_side', fromlist=['cap_output'])"
                    f".cap_output({self.output_limit!r})")
        await self.hidden(cap_code, timeout=min(30.0, max(1.0, self.deadline - time.monotonic())))
        await self.hidden("__import__('coursekit.tools.exits', fromlist=['keep_kernel_on_exit']).keep_kernel_on_exit()",
                          timeout=min(30.0, max(1.0, self.deadline - time.monotonic())))
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
            if self.client.timed_out:
                return Execution("timeout", f"still running {where} after {self.timeout:g} s; "
                                 "interrupted", None, result.errors)
            reply = (self.client.last_reply or {}).get("content", {})
            if isinstance(reply, dict) and reply.get("status") == "error":
                message = str(reply.get("evalue") or "").strip()[:120]
                result.errors.append(f"{where}: {str(reply.get('ename'))[:60]}" + (f": {message}" if message else ""))
        if result.errors:
            result.status = "errors"
        return result

    async def hidden(self, code: str, timeout: float) -> str:
        """Run ``code`` in the kernel outside the notebook; ok, error, timeout (interrupted) or dead."""
        from queue import Empty
        kc, km = self.client.kc, self.client.km
        msg_id = kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        deadline, state, interrupted_at = time.monotonic() + timeout, "ok", None
        while True:
            now = time.monotonic()
            if now >= deadline and interrupted_at is None:
                await ensure_async(km.interrupt_kernel())
                interrupted_at, state = now, "timeout"
            if interrupted_at is not None and now >= interrupted_at + 3:
                return "timeout"
            try:
                msg = await ensure_async(kc.iopub_channel.get_msg(timeout=0.5))
            except Empty:
                if not await ensure_async(km.is_alive()):
                    return "dead"
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "error" and state == "ok":
                state = "error"
            elif kind == "status" and content.get("execution_state") == "idle":
                return state

    async def check_tasks(self, tasks: list, seconds: float) -> tuple[dict[str, dict], bool]:
        """Check every task in the grader, calling the answers in the kernel, within ``seconds``.

        Returns ``({task_id: {"passed", "message", "check_error"}}, kernel still alive)``.
        """
        loop = asyncio.get_running_loop()
        km = self.client.km
        if self.client.kc is not None:  # no one would read its messages now: let none pile up in it
            await ensure_async(self.client.kc.stop_channels())
            self.client.kc = None

        def on_loop(coroutine_function):
            return asyncio.run_coroutine_threadsafe(ensure_async(coroutine_function()), loop).result(30)

        link = remote.KernelLink(km.get_connection_info(), self.workdir, seconds,
                                 interrupt=lambda: on_loop(km.interrupt_kernel), alive=lambda: on_loop(km.is_alive))
        self.link = link
        try:
            outcomes = await asyncio.to_thread(remote.grade_tasks, link, tasks)
        finally:
            link.stop()
            await asyncio.to_thread(link.close)
        return outcomes, await ensure_async(km.is_alive())


async def _stop(client: CappedClient, manager) -> None:
    """Stop the client's channels and kill the kernel (and, in a sandbox, every process it started)."""
    try:
        if client.kc is not None:
            await ensure_async(client.kc.stop_channels())
    finally:
        client.kc = None
        try:
            if manager.has_kernel:
                await ensure_async(manager.shutdown_kernel(now=True))
        except Exception:  # noqa: BLE001 - already dead
            pass
        finally:
            with contextlib.suppress(Exception):
                await ensure_async(manager.cleanup_resources())
