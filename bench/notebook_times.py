"""Wall time and peak memory of every lesson notebook in each profile, each run in a fresh kernel.

    python bench/notebook_times.py                                   # smoke, every lesson
    python bench/notebook_times.py --profiles quick full --random-weights --only 03 07
    python bench/notebook_times.py --folders notebooks solutions --kill-above-gb 6
    python bench/notebook_times.py --markdown                        # the README's table rows
    python bench/notebook_times.py --table a.json b.json             # the table of earlier --json runs

For each notebook and profile it reports:

* the wall time, kernel start included;
* the peak resident memory (RSS) of the kernel's whole process tree: the kernel and every process
  it starts, sampled every ``--interval`` seconds with psutil, and, for the kernel process itself,
  its exact high-water mark (``VmHWM``, reset before each cell on Linux), so a short spike between
  two samples is not missed;
* the kernel's peak virtual memory (``VmPeak``): what a per-process address-space limit, such as
  the grader's ``--memory-mb``, must allow (TensorFlow reserves far more than it touches);
* the heaviest cell (the highest peak RSS while it ran) and the slowest cell, by number (the
  1-based position among the notebook's code cells) and first line;
* on a machine with a GPU, the peak GPU memory that TensorFlow allocated
  (``tf.config.experimental.get_memory_info``, read and reset after every cell by a probe that
  does not touch the notebook's own variables) and the cell that reached it.

A lesson whose process tree passes ``--kill-above-gb`` (default 12) is killed there and reported as
over that limit, naming the cell, instead of taking a shared machine down. A profile whose models
cannot be had here (e.g. ``full`` offline) is reported as failed with the reason, not hidden.
``--random-weights`` gives the ImageNet models random weights (COURSEKIT_RANDOM_WEIGHTS=1), so
that the quick and full profiles run, and are measured, where their weights cannot be downloaded:
the pictures are then meaningless; time and memory do not depend on the weights. Run it with
``nice`` on a shared machine, one profile at a time.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coursekit.env import RANDOM_WEIGHTS_VARIABLE  # noqa: E402

GB = 2 ** 30
BUDGETS_GB = {"smoke": 3.0, "quick": 6.0, "full": 10.0}   # host memory per lesson (README, Profiles)
SMOKE_SECONDS = 60.0
T4_GB = 15.0

# Run after every code cell; reads and resets TensorFlow's GPU peak without importing anything new
# or leaving a name behind in the notebook's namespace.
GPU_PROBE = """\
def _coursekit_gpu_probe():
    import sys
    tf = sys.modules.get("tensorflow")
    if tf is None or not tf.config.list_physical_devices("GPU"):
        return
    info = tf.config.experimental.get_memory_info("GPU:0")
    tf.config.experimental.reset_memory_stats("GPU:0")
    print("COURSEKIT-GPU-PEAK", info["peak"], info["current"])
_coursekit_gpu_probe()
del _coursekit_gpu_probe
"""
GPU_MARKER = "COURSEKIT-GPU-PEAK"

# --few-iterations: the loops whose count sets the time but not the memory (each pass holds the
# same tensors as the last), cut to one or two passes. Every size that sets memory is kept: the
# models and image sizes, images explained, samples and path points, curve steps, filters optimised
# together, concept sets and runs, the data and the batches.
FEW_ITERATIONS = {"epochs": 1, "ascent_steps": 2, "fourier_steps": 2, "dream_steps": 2,
                  "memorise_epochs": 2, "finetune_epochs": 1, "cascade_steps": 2}
FEW_ITERATIONS_CELL = """\
def _coursekit_few_iterations():
    import dataclasses
    from coursekit import env
    name = env.profile().name
    env.PROFILES[name] = dataclasses.replace(env.PROFILES[name], **%r)
_coursekit_few_iterations()
del _coursekit_few_iterations
""" % FEW_ITERATIONS


@dataclasses.dataclass
class CellCost:
    """What one code cell cost."""

    number: int          #: 1-based position among the notebook's code cells
    first_line: str      #: the cell's first non-empty line, shortened
    seconds: float       #: wall time of the cell
    peak_bytes: int      #: peak RSS of the kernel's process tree while the cell ran
    gpu_peak_bytes: int | None = None  #: peak GPU memory TensorFlow allocated in the cell (None: no GPU)


@dataclasses.dataclass
class NotebookCost:
    """What one notebook cost in one profile."""

    profile: str         #: the profile's name
    notebook: str        #: path relative to the repository
    seconds: float       #: wall time, kernel start included
    peak_bytes: int      #: peak RSS of the kernel's process tree over the whole run
    cpu_seconds: float   #: CPU time of the kernel and its children (less sensitive to a busy machine)
    address_space_bytes: int  #: the kernel's peak virtual memory (VmPeak): what a per-process limit
                              #: on address space (ulimit -v, the grader's --memory-mb) must allow
    cells: list[CellCost]  #: every code cell that ran
    error: str | None = None   #: None when every cell ran
    killed: bool = False       #: killed for passing --kill-above-gb

    @property
    def heaviest(self) -> CellCost | None:
        return max(self.cells, key=lambda cell: cell.peak_bytes, default=None)

    @property
    def slowest(self) -> CellCost | None:
        return max(self.cells, key=lambda cell: cell.seconds, default=None)

    @property
    def gpu_peak_bytes(self) -> int | None:
        peaks = [cell.gpu_peak_bytes for cell in self.cells if cell.gpu_peak_bytes is not None]
        return max(peaks) if peaks else None


# ----------------------------------------------------------------------------- the process tree

def _status_bytes(pid: int, field: str) -> int:
    """A size from Linux's ``/proc/<pid>/status`` (``VmHWM``: peak RSS since the last reset; ``VmPeak``:
    peak virtual memory), bytes; 0 elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _high_water_mark(pid: int) -> int:
    return _status_bytes(pid, "VmHWM")


def _reset_high_water_mark(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")   # 5: reset the peak RSS (Linux >= 4.0)
    except OSError:
        pass


class TreeMonitor(threading.Thread):
    """Samples the RSS of a process and its descendants; kills them all above ``kill_above`` bytes."""

    def __init__(self, pid: int, kill_above: float, interval: float):
        super().__init__(daemon=True)
        import psutil
        self.process = psutil.Process(pid)
        self.kill_above, self.interval = kill_above, interval
        self.peak = self.cell_peak = self.children_cell_peak = 0
        self.killed = False
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def tree_rss(self) -> tuple[int, int]:
        """(RSS of the kernel, RSS of its descendants), bytes."""
        import psutil
        try:
            own = self.process.memory_info().rss
            children = self.process.children(recursive=True)
        except psutil.Error:
            return 0, 0
        rest = 0
        for child in children:
            try:
                rest += child.memory_info().rss
            except psutil.Error:
                pass
        return own, rest

    def run(self):
        while not self._stop_event.wait(self.interval):
            own, rest = self.tree_rss()
            with self._lock:
                self.peak = max(self.peak, own + rest)
                self.cell_peak = max(self.cell_peak, own + rest)
                self.children_cell_peak = max(self.children_cell_peak, rest)
            if own + rest > self.kill_above and not self.killed:
                self.killed = True
                self.kill_tree()

    def kill_tree(self):
        import psutil
        try:
            processes = self.process.children(recursive=True) + [self.process]
        except psutil.Error:
            return
        for process in processes:
            try:
                process.kill()
            except psutil.Error:
                pass

    def begin_cell(self):
        _reset_high_water_mark(self.process.pid)
        with self._lock:
            self.cell_peak = self.children_cell_peak = 0

    def end_cell(self) -> int:
        """The cell's peak: the larger of the sampled tree and the kernel's exact peak + its children's."""
        exact = _high_water_mark(self.process.pid)
        own, rest = self.tree_rss()
        with self._lock:
            peak = max(self.cell_peak, own + rest, exact + max(self.children_cell_peak, rest))
            self.peak = max(self.peak, peak)
        return peak

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the kernel and of its children, running and finished."""
        import psutil
        try:
            times = self.process.cpu_times()
            running = sum(sum(child.cpu_times()[:2]) for child in self.process.children(recursive=True))
        except psutil.Error:
            return 0.0
        return times.user + times.system + times.children_user + times.children_system + running

    def stop(self):
        self._stop_event.set()


# ----------------------------------------------------------------------------- one notebook

def _first_line(source: str) -> str:
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    line = lines[0] if lines else source.strip().splitlines()[0] if source.strip() else ""
    return line if len(line) <= 60 else line[:57] + "..."


def measure(path: Path, workdir: Path, profile_name: str, kill_above_gb: float, interval: float,
            cell_timeout: int, few_iterations: bool = False) -> NotebookCost:
    """Run ``path`` in a fresh kernel (in ``workdir``) and measure it (``few_iterations``: with the
    profile's loops cut to ``FEW_ITERATIONS`` first)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    cells: list[CellCost] = []
    error, killed, monitor, cpu, virtual = None, False, None, 0.0, 0
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            monitor = TreeMonitor(client.km.provisioner.pid, kill_above_gb * GB, interval)
            monitor.start()
            if few_iterations:
                client.execute_cell(nbformat.v4.new_code_cell(FEW_ITERATIONS_CELL), 0, store_history=False)
            number = 0
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                number += 1
                monitor.begin_cell()
                cell_start = time.perf_counter()
                try:
                    client.execute_cell(cell, index, execution_count=number)
                finally:
                    seconds = time.perf_counter() - cell_start
                    cells.append(CellCost(number, _first_line(cell.source), seconds, monitor.end_cell()))
                cells[-1].gpu_peak_bytes = _gpu_peak(client, index)
                cpu = monitor.cpu_seconds()
                virtual = max(virtual, _status_bytes(monitor.process.pid, "VmPeak"))
    except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as failure:
        killed = monitor is not None and monitor.killed
        message = str(failure).strip().splitlines()
        error = (f"killed above {kill_above_gb:g} GB in code cell {cells[-1].number if cells else '?'}"
                 if killed else (message[-1][:300] if message else type(failure).__name__))
    finally:
        if monitor is not None:
            monitor.stop()
    return NotebookCost(profile_name, str(path.relative_to(ROOT)), time.perf_counter() - start,
                        monitor.peak if monitor else 0, cpu, virtual, cells, error, killed)


def _gpu_peak(client, index: int) -> int | None:
    """Run the GPU probe in the kernel; the peak it printed, bytes (None: no GPU, or TensorFlow not loaded)."""
    import nbformat
    probe = nbformat.v4.new_code_cell(GPU_PROBE)
    try:
        client.execute_cell(probe, index, store_history=False)
    except Exception:  # a probe never fails a measurement
        return None
    for output in probe.outputs:
        for line in output.get("text", "").splitlines():
            if line.startswith(GPU_MARKER):
                return int(line.split()[1])
    return None


# ----------------------------------------------------------------------------- reports

def _gb(value: int | None) -> str:
    return "-" if value is None else f"{value / GB:.1f} GB"


def describe(cost: NotebookCost) -> str:
    heaviest, slowest = cost.heaviest, cost.slowest
    budget = BUDGETS_GB.get(cost.profile.split()[0])
    over = []
    if budget is not None and cost.peak_bytes > budget * GB:
        over.append(f"OVER the {budget:g} GB budget")
    if cost.profile == "smoke" and cost.seconds > SMOKE_SECONDS:
        over.append(f"OVER {SMOKE_SECONDS:g} s")
    gpu = f", GPU peak {_gb(cost.gpu_peak_bytes)}" if cost.gpu_peak_bytes is not None else ""
    text = (f"{cost.profile:<6} {cost.notebook:<42} {cost.seconds:7.1f} s (CPU {cost.cpu_seconds:6.1f} s)  "
            f"peak {_gb(cost.peak_bytes):>8}{gpu}, address space {_gb(cost.address_space_bytes)}"
            f"  {'ok' if cost.error is None else 'FAILED: ' + cost.error}")
    if heaviest:
        text += f"\n       heaviest cell {heaviest.number} ({_gb(heaviest.peak_bytes)}): {heaviest.first_line}"
        text += f"\n       slowest cell  {slowest.number} ({slowest.seconds:.1f} s): {slowest.first_line}"
    return text + ("".join(f"\n       {flag}" for flag in over))


def markdown_rows(costs: list[NotebookCost]) -> str:
    gpu = any(cost.gpu_peak_bytes is not None for cost in costs)
    rows = ["| profile | notebook | wall time | CPU time | peak RSS (process tree) | address space | "
            + ("peak GPU memory | " if gpu else "") + "heaviest cell |",
            "|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|"]
    for cost in costs:
        heaviest = cost.heaviest
        cell = f"{heaviest.number}: `{heaviest.first_line}`" if heaviest else "-"
        status = "" if cost.error is None else f" ({'killed' if cost.killed else 'failed'})"
        budget = BUDGETS_GB.get(cost.profile.split()[0])
        over = " (over budget)" if budget is not None and cost.peak_bytes > budget * GB else ""
        cut = "few iterations" in cost.profile     # its times are not the profile's
        wall, cpu = ("loops cut", "-") if cut else (f"{cost.seconds:.0f} s", f"{cost.cpu_seconds:.0f} s")
        rows.append(f"| {cost.profile} | {cost.notebook} | {wall}{status} | "
                    f"{cpu} | {_gb(cost.peak_bytes)}{over} | {_gb(cost.address_space_bytes)} | "
                    + (f"{_gb(cost.gpu_peak_bytes)} | " if gpu else "") + f"{cell} |")
    return "\n".join(rows)


def load(path: Path) -> list[NotebookCost]:
    """The measurements a ``--json`` run wrote."""
    return [NotebookCost(**{**entry, "cells": [CellCost(**cell) for cell in entry["cells"]]})
            for entry in json.loads(path.read_text())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["smoke"])
    parser.add_argument("--folders", nargs="+", default=["notebooks"])
    parser.add_argument("--only", nargs="*", help="only notebooks whose name contains one of these")
    parser.add_argument("--random-weights", action="store_true",
                        help="ImageNet models with random weights (runs quick/full offline)")
    parser.add_argument("--kill-above-gb", type=float, default=12.0,
                        help="kill a notebook whose process tree passes this resident memory (default 12)")
    parser.add_argument("--few-iterations", action="store_true",
                        help="cut the profile's training and ascent loops to one or two passes "
                             f"({', '.join(f'{k}={v}' for k, v in FEW_ITERATIONS.items())}), every size "
                             "that sets memory kept: the profile's memory in a fraction of its time "
                             "(the wall times are then not the profile's)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between memory samples")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds one cell may take")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument("--markdown", action="store_true", help="also print the results as Markdown table rows")
    parser.add_argument("--table", nargs="+", type=Path, metavar="JSON",
                        help="run nothing: print the Markdown table of these --json files, in order")
    args = parser.parse_args()
    if args.table:
        print(markdown_rows([cost for path in args.table for cost in load(path)]))
        return 0
    if args.random_weights:
        os.environ[RANDOM_WEIGHTS_VARIABLE] = "1"  # the kernels inherit it
    notebooks = [path for folder in args.folders for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))
                 if not args.only or any(key in path.name for key in args.only)]
    costs: list[NotebookCost] = []
    for profile_name in args.profiles:
        os.environ["COURSEKIT_PROFILE"] = profile_name  # the kernel inherits it
        for path in notebooks:
            with tempfile.TemporaryDirectory() as workdir:
                cost = measure(path, Path(workdir), profile_name, args.kill_above_gb, args.interval,
                               args.cell_timeout, args.few_iterations)
            if args.few_iterations:
                cost.profile += " (few iterations)"
            costs.append(cost)
            print(describe(cost), flush=True)
            if args.json:   # rewritten after every notebook: a stopped run keeps what it measured
                args.json.write_text(json.dumps([dataclasses.asdict(c) for c in costs], indent=1))
    weights = "random ImageNet weights" if args.random_weights else "the profile's own weights"
    if args.few_iterations:
        weights += ", loops cut to " + ", ".join(f"{k}={v}" for k, v in FEW_ITERATIONS.items())
    print(f"\nprofile  notebook                                   wall time    CPU time   peak RSS   VmPeak  "
          f"({weights}, {os.cpu_count()} CPUs visible)")
    for cost in costs:
        print(f"{cost.profile:<8} {cost.notebook:<42} {cost.seconds:7.1f} s {cost.cpu_seconds:8.1f} s "
              f"{_gb(cost.peak_bytes):>9} {_gb(cost.address_space_bytes):>8}"
              f"{'' if cost.gpu_peak_bytes is None else '  GPU ' + _gb(cost.gpu_peak_bytes)}"
              f"{'' if cost.error is None else '  (killed)' if cost.killed else '  (failed)'}")
    if args.markdown:
        print("\n" + markdown_rows(costs))
    return 0 if all(cost.error is None for cost in costs) else 1


if __name__ == "__main__":
    sys.exit(main())
