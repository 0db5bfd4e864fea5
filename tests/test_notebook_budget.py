"""The smoke profile's time budget per notebook (conftest.py at the repository root): a notebook
over it is run once more alone, and the session fails only when both runs are over."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Sleeps 8 s on its first run only (a stand-in for a run slowed by a busy machine). The budget, 6 s,
# leaves a kernel start on a loaded machine (1-3 s) well under it when the sleep is skipped.
SLOW_ONCE = """\
from pathlib import Path
import time
marker = Path("ran_once")
if not marker.exists():
    marker.write_text("")
    time.sleep(8)
"""
SLOW_ALWAYS = "import time\ntime.sleep(8)\n"


def run_budget_check(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "timed.ipynb")
    environment = {**os.environ, "COURSEKIT_PROFILE": "smoke", "COURSEKIT_NOTEBOOK_BUDGET_S": "6",
                   "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "timed.ipynb"],
                          cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("source, fails", [(SLOW_ONCE, False), (SLOW_ALWAYS, True)], ids=["slow-once", "slow-always"])
def test_a_notebook_fails_the_budget_only_when_a_second_run_is_over_it_too(tmp_path, source, fails):
    result = run_budget_check(tmp_path, source)
    report = result.stdout + result.stderr
    assert "over 6 s; run again alone:" in report, report   # the first run was over and was repeated
    assert ("OVER BUDGET" in report) == fails, report
    assert (result.returncode != 0) == fails, report
