"""Time and peak memory of the Gradescope autograder grading each lesson's solution, as Gradescope runs it.

    python bench/autograder_needs.py                     # lessons 01 and 03, smoke profile
    python bench/autograder_needs.py --lessons 01 03 05 08 --kill-above-mb 6000

For each lesson: builds the autograder zip (weights from COURSEKIT_OFFLINE_CACHE), unpacks it into
a temporary /autograder tree, puts the lesson's solution in submission/ and runs run_autograder
(with this Python, as tests/test_gradescope.py does). While it runs, the memory of its whole
process tree (the grader, its kernel, their children) is sampled every 0.2 s: the sum of PSS
(each shared page counted once, as a container's memory limit counts it) and the sum of RSS (an
upper bound). Prints the wall time (Python and TensorFlow start-up included), the score, both
peaks and the grader's own process' peak PSS (the rest is the student's kernel and its children).
``--kill-above-mb`` stops a run whose PSS passes that bound (it is then reported as such).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return 0


class TreeMemory(threading.Thread):
    """Samples the memory of ``pid`` and its descendants until stopped; kills the tree above a bound."""

    def __init__(self, pid: int, kill_above_mb: float | None):
        super().__init__(daemon=True)
        self.pid, self.kill_above_kb = pid, kill_above_mb * 1024 if kill_above_mb else None
        self.peak_pss_kb = self.peak_rss_kb = self.peak_grader_kb = 0
        self.killed = False
        self.stopping = threading.Event()

    def tree(self) -> list[psutil.Process]:
        try:
            top = psutil.Process(self.pid)
            return [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            processes = self.tree()
            each = [pss_kb(p.pid) for p in processes]
            pss = sum(each)
            self.peak_grader_kb = max(self.peak_grader_kb, each[0] if each else 0)   # the grader's own process
            rss = 0
            for process in processes:
                try:
                    rss += process.memory_info().rss // 1024
                except psutil.NoSuchProcess:
                    pass
            self.peak_pss_kb, self.peak_rss_kb = max(self.peak_pss_kb, pss), max(self.peak_rss_kb, rss)
            if self.kill_above_kb and pss > self.kill_above_kb:
                self.killed = True
                for process in reversed(processes):
                    try:
                        process.kill()
                    except psutil.NoSuchProcess:
                        pass


def measure(lesson: str, profile: str, cache: str, kill_above_mb: float | None, workdir: Path) -> dict:
    archive = workdir / f"autograder-{lesson}.zip"
    subprocess.run([sys.executable, "-m", "coursekit.tools.gradescope", "build", "--lesson", lesson, "--out",
                    str(archive), "--profile", profile, "--keras-cache", cache], check=True, cwd=ROOT,
                   capture_output=True)
    root = workdir / f"autograder-{lesson}"
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(root / "source")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    shutil.copy(next((ROOT / "solutions").glob(f"{lesson}_*.ipynb")), root / "submission" / "solution.ipynb")
    environment = {**os.environ, "COURSEKIT_AUTOGRADER_ROOT": str(root), "COURSEKIT_AUTOGRADER_PYTHON": sys.executable}
    environment.pop("PYTHONPATH", None)
    start = time.monotonic()
    process = subprocess.Popen(["bash", str(root / "run_autograder")], env=environment, cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeMemory(process.pid, kill_above_mb)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.monotonic() - start
    sampler.stopping.set()
    sampler.join()
    results = json.loads((root / "results" / "results.json").read_text())
    return {"lesson": lesson, "seconds": seconds, "score": results["score"],
            "possible": sum(test["max_score"] for test in results["tests"]),
            "status": "killed above the bound" if sampler.killed else results.get("extra_data", {}).get("status", "?"),
            "pss_mb": sampler.peak_pss_kb / 1024, "rss_mb": sampler.peak_rss_kb / 1024,
            "grader_mb": sampler.peak_grader_kb / 1024,
            "sandbox": results.get("extra_data", {}).get("sandbox", "?"), "tail": output[-400:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lessons", nargs="+", default=["01", "03"])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--kill-above-mb", type=float, default=6000, help="stop a run above this PSS (default 6000)")
    args = parser.parse_args()
    cache = os.environ.get("COURSEKIT_OFFLINE_CACHE") or str(Path.home() / ".keras")
    rows = []
    with tempfile.TemporaryDirectory(prefix="autograder-needs-") as scratch:
        for lesson in args.lessons:
            row = measure(lesson, args.profile, cache, args.kill_above_mb, Path(scratch))
            rows.append(row)
            print(f"lesson {lesson}: {row['seconds']:.0f} s, {row['score']}/{row['possible']} points ({row['status']}), "
                  f"peak {row['pss_mb']:.0f} MB PSS (grader alone {row['grader_mb']:.0f}) / {row['rss_mb']:.0f} MB RSS, "
                  f"sandbox {row['sandbox']}", flush=True)
            if row["status"] not in ("ok",):
                print(row["tail"])
    print(f"\nprofile {args.profile}, {os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.1f}")
    print("lesson  wall time  peak PSS, all processes  grader alone  peak RSS sum  score")
    for row in rows:
        print(f"{row['lesson']:<7} {row['seconds']:6.0f} s  {row['pss_mb']:8.0f} MB {'':13} {row['grader_mb']:6.0f} MB  "
              f"{row['rss_mb']:8.0f} MB  {row['score']}/{row['possible']} {row['status']}")
    return 0 if all(row["status"] == "ok" and row["score"] == row["possible"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
