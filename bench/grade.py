"""Grading: the sandbox's cost per submission, and --jobs 2 against --jobs 1, in one run.

    python bench/grade.py [--copies 20] [--solution solutions/01_inside_a_cnn.ipynb] [--trivial]

--trivial grades a one-cell notebook instead (no TensorFlow in the kernel): what is left is the
kernel's start and stop, the sandbox's cost (its launcher, its cgroup or memory watch), and the
grader's checks of missing answers. A lesson with from-scratch tasks (04, 07) checks those answers
again in a second, fresh kernel: --solution solutions/04_*.ipynb measures that too.

Three batches of the same copies: --jobs 1 in the sandbox, --jobs 1 without it (--no-sandbox),
--jobs 2 in the sandbox. Goals: the sandbox adds under 1 s per submission; --jobs 2 takes at most
0.7x the time of --jobs 1.

The copies are a light version of the solution: its imports, task cells and check cells (no
pretrained model, no figures), so the run takes a few minutes; each copy still starts a kernel,
imports TensorFlow and is checked task by task, as a real submission is. Prints both wall times
and their ratios.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("COURSEKIT_PROFILE", "smoke")

from coursekit import checks  # noqa: E402
from coursekit.tools import course, grade  # noqa: E402


def light_copy(solution_path: Path):
    """The solution's import cell, task cells and check cells, nothing else."""
    notebook = nbformat.read(solution_path, as_version=4)
    kept = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or course.SETUP_TAG in cell.metadata.get("tags", []):
            continue
        source = cell.source
        first = source.lstrip().splitlines()[0] if source.strip() else ""
        if "### BEGIN SOLUTION" in source or "check(" in source or first.startswith(("import ", "from ")):
            kept.append(cell)
    notebook.cells = kept
    notebook.metadata["coursekit"] = {"lesson": solution_path.name[:2]}
    return notebook


def timed_batch(paths: list[Path], out: Path, jobs: int, sandboxed: bool = True) -> float:
    start = time.perf_counter()
    status = grade.main([*map(str, paths), "--out", str(out), "--jobs", str(jobs), "--quiet", "--no-executed",
                         *([] if sandboxed else ["--no-sandbox"])])
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"the grader failed (exit {status})")
    return seconds


def full_marks(out: Path, possible: int) -> int:
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if int(row["total"]) != possible:
            print(f"  not at full marks: {Path(row['file']).name}: {row['total']} points, {row['status']}: "
                  f"{row['reason']}")
    return sum(int(row["total"]) == possible for row in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--solution", type=Path, default=ROOT / "solutions" / "01_inside_a_cnn.ipynb")
    parser.add_argument("--trivial", action="store_true", help="one cell, `x = 1`, instead of the solution")
    args = parser.parse_args(argv)
    possible = sum(t.points for t in checks.tasks(args.solution.name[:2]))
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as folder:
        folder = Path(folder)
        notebook = light_copy(args.solution)
        if args.trivial:
            notebook.cells = [nbformat.v4.new_code_cell("x = 1")]
            possible = 0
        paths = [folder / f"student_{i:02d}.ipynb" for i in range(args.copies)]
        for path in paths:
            nbformat.write(notebook, path)
        kind = "one-cell notebooks" if args.trivial else f"light copies of {args.solution.name}"
        print(f"Grading {args.copies} {kind} ({len(notebook.cells)} code cells), "
              f"{os.cpu_count()} CPU cores, profile {os.environ['COURSEKIT_PROFILE']}.", flush=True)
        timed_batch(paths[:1], folder / "warmup.csv", 1)  # first kernel start and imports: disk caches
        times = {}
        for jobs, sandboxed in ((1, True), (1, False), (2, True)):
            out = folder / f"jobs{jobs}-{sandboxed}.csv"
            load_before = os.getloadavg()[0]
            times[jobs, sandboxed] = seconds = timed_batch(paths, out, jobs, sandboxed)
            print(f"--jobs {jobs} {'in the sandbox' if sandboxed else 'no sandbox    '}: {seconds:6.1f} s  "
                  f"({seconds / args.copies:.2f} s per notebook, {full_marks(out, possible)}/{args.copies} at full "
                  f"marks; machine load {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
                  flush=True)
    cost = (times[1, True] - times[1, False]) / args.copies
    ratio = times[2, True] / times[1, True]
    print(f"sandbox cost: {cost:+.2f} s per submission (goal < 1 s: {'met' if cost < 1 else 'NOT met'})")
    print(f"ratio --jobs 2 / --jobs 1: {ratio:.2f}  (goal <= 0.70: {'met' if ratio <= 0.7 else 'NOT met'}; "
          "other processes on the machine take cores from --jobs 2: compare the loads above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
