"""Notebook wall times: every notebook run by nbval is timed (kernel start included) and, in the
smoke profile, one over COURSEKIT_NOTEBOOK_BUDGET_S seconds (default 60) fails the session."""
from __future__ import annotations

import os
from collections import defaultdict

import pytest

_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration


def _budget() -> float | None:
    if os.environ.get("COURSEKIT_PROFILE", "").lower() != "smoke":
        return None
    return float(os.environ.get("COURSEKIT_NOTEBOOK_BUDGET_S", "60"))


def pytest_sessionfinish(session, exitstatus):
    budget = _budget()
    slow = {path: s for path, s in _seconds.items() if budget is not None and s > budget}
    if slow:
        session.config._notebook_overruns = slow
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    budget = _budget()
    terminalreporter.section("notebook wall times (kernel start included)")
    for path, seconds in sorted(_seconds.items()):
        flag = "  OVER BUDGET" if budget is not None and seconds > budget else ""
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
    overruns = getattr(terminalreporter.config, "_notebook_overruns", {})
    if overruns:
        terminalreporter.write_line(f"FAILED: {len(overruns)} notebook(s) took longer than {budget:.0f} s "
                                    "in the smoke profile; make them faster (fewer steps, smaller data).")
