"""Notebook wall times: every notebook run by nbval is timed (kernel start included) and, in the
smoke profile, one over COURSEKIT_NOTEBOOK_BUDGET_S seconds (default 60) fails the session. A
shared machine's load can stretch one run by a fifth: a notebook over the budget is run once more,
alone in a fresh kernel, and fails only if that run is over it too (both times are printed).
Each lesson's printed output is checked after its cells ran: its claims, and a clean page."""
from __future__ import annotations

import ast
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from coursekit.claims import CHECK_MARK, UNCHECKED_MARK

_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration


def _budget() -> float | None:
    if os.environ.get("COURSEKIT_PROFILE", "").lower() != "smoke":
        return None
    return float(os.environ.get("COURSEKIT_NOTEBOOK_BUDGET_S", "60"))


def _seconds_of_a_fresh_run(path: str) -> float:
    """Wall time of ``path`` executed once more in a new kernel, in its own folder as under nbval
    (kernel start included); inf if that run fails (nbval's own run reports why)."""
    from coursekit.tools.gallery import execute  # only when a notebook was over the budget
    run = execute(path, Path(path).parent, progress=False)
    return run.seconds if run.ok else float("inf")


_rerun_seconds: dict[str, float] = {}


def pytest_sessionfinish(session, exitstatus):
    budget = _budget()
    for path, seconds in _seconds.items():
        if budget is not None and seconds > budget:
            _rerun_seconds[path] = _seconds_of_a_fresh_run(path)
    slow = {path: s for path, s in _rerun_seconds.items() if s > budget}
    if slow:
        session.config._notebook_overruns = slow
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    budget = _budget()
    terminalreporter.section("notebook wall times (kernel start included)")
    overruns = getattr(terminalreporter.config, "_notebook_overruns", {})
    for path, seconds in sorted(_seconds.items()):
        flag = ""
        if path in _rerun_seconds:
            again = _rerun_seconds[path]
            flag = (f"  over {budget:g} s; run again alone: {again:.1f} s"
                    f"{'  OVER BUDGET' if path in overruns else ''}")
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
    if overruns:
        terminalreporter.write_line(f"FAILED: {len(overruns)} notebook(s) took longer than {budget:g} s "
                                    "in the smoke profile, twice; make them faster (fewer steps, smaller data).")


# ----------------------------------------------------------------------------- what each lesson printed
# nbval runs every lesson once; these two checks read what its cells printed in that same run,
# so no lesson is executed a second time. Each lesson notebook (notebooks/NN_*.ipynb) gets two more
# test items after its cells:
#   "claims checked": every claim(...) of its source printed its verdict (coursekit.claims);
#   "clean page": no terminal colour codes, Keras progress bars, "retracing" warnings, and each
#   progress bar shown once.
_printed: dict[str, list[tuple[int, dict]]] = defaultdict(list)   # notebook -> (cell number, output)
_failed_notebooks: set[str] = set()

UNCLEAN = {
    "a terminal colour code (ANSI escape)": re.compile(r"\x1b\["),
    "a Keras progress bar (pass verbose=0)": re.compile(r"━|\d+/\d+ \[[=>.]+\]|\d+m?s/step|^Epoch \d+/\d+", re.M),
    "TensorFlow's retracing warning (build the tf.function once per model)": re.compile(r"retracing", re.I),
}
PROGRESS_BAR = re.compile(r"^(?P<label>[^\n\r|]*?)\s*\d+%\|", re.M)   # tqdm's "label:  40%|████"


def is_lesson(path) -> bool:
    path = Path(path)
    return path.parent.name == "notebooks" and re.fullmatch(r"\d\d_.+\.ipynb", path.name) is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    outputs = getattr(item, "test_outputs", None)   # nbval's cell item keeps what the cell printed
    if outputs is not None and is_lesson(item.path):
        _printed[str(item.path)] += [(getattr(item, "cell_num", -1), output) for output in outputs]


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and call.when == "call" and type(item).__name__ == "IPyNbCell":
        _failed_notebooks.add(str(item.path))


def output_text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return output.get("data", {}).get("text/plain", "") if output.get("output_type") != "error" else ""


def claim_calls(notebook_path) -> int:
    """How many ``claim(...)`` calls the notebook's code cells hold."""
    import nbformat
    count = 0
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        python = re.sub(r"^(\s*)[%!].*$", r"\1pass", cell.source, flags=re.M)   # IPython's magics: no calls
        count += sum(isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "claim"
                     for node in ast.walk(ast.parse(python)))
    return count


def claims_problem(notebook_path, outputs) -> str | None:
    calls = claim_calls(notebook_path)
    verdicts = sum(line.startswith((CHECK_MARK, UNCHECKED_MARK))
                   for _, output in outputs for line in output_text(output).splitlines())
    if calls == 0:
        return ("no claim(...) in this lesson: every sentence that states a number or a comparison quotes "
                "a printed number or is followed by coursekit.claims.claim(...)")
    if verdicts != calls:
        return (f"{calls} claim(...) calls in the source, {verdicts} verdicts printed: a claim inside a loop or a "
                "branch that did not run? Write one claim per sentence, outside loops and ifs (put the "
                "condition into its first argument).")
    return None


def page_problems(outputs) -> list[str]:
    problems = []
    for cell, output in outputs:
        text = output_text(output)
        problems += [f"cell {cell}: {what}: {pattern.search(text).group(0)!r}"
                     for what, pattern in UNCLEAN.items() if pattern.search(text)]
    bars: dict[tuple[int, str], int] = defaultdict(int)   # nbval already applied each "\r" to its line
    for cell, output in outputs:
        for match in PROGRESS_BAR.finditer(output_text(output)):
            bars[(cell, match["label"])] += 1
    problems += [f"cell {cell}: the progress bar {label!r} is shown {count} times, not once (tqdm with "
                 "leave=True, and nothing printed while it runs)" for (cell, label), count in bars.items() if count > 1]
    return problems


class LessonPageCheck(pytest.Item):
    """A check of what a lesson printed in this session's nbval run (see the comment above)."""

    def __init__(self, *, check, **kwargs):
        super().__init__(**kwargs)
        self.check = check

    def runtest(self):
        path = str(self.path)
        if path in _failed_notebooks:
            pytest.skip("a cell of the lesson failed (reported above): its page is incomplete")
        if path not in _printed:
            pytest.skip("the lesson's cells did not run in this process")
        problems = ([problem] if (problem := claims_problem(self.path, _printed[path])) else []) \
            if self.check == "claims checked" else page_problems(_printed[path])
        if problems:
            raise AssertionError(f"{self.path.name}:\n  " + "\n  ".join(problems))

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"


def pytest_collection_modifyitems(session, config, items):
    last_cell: dict[str, int] = {}
    for index, item in enumerate(items):
        if type(item).__name__ == "IPyNbCell" and is_lesson(item.path):
            last_cell[str(item.path)] = index
    for index in sorted(last_cell.values(), reverse=True):   # from the end, so that earlier indices hold
        parent = items[index].parent
        items[index + 1:index + 1] = [LessonPageCheck.from_parent(parent, name=check, check=check)
                                      for check in ("claims checked", "clean page")]
