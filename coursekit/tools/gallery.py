"""Run lesson notebooks headless and write a browsable HTML gallery.

    python -m coursekit.tools.gallery notebooks --out build/lessons

Each notebook runs in a fresh kernel in its own folder under ``<out>/run/``, with a progress bar
over its cells; the executed notebook and an HTML page (figures embedded) go to ``<out>``, and
``<out>/index.html`` links them with their status and wall time. A failing notebook is shown as
failed (its page ends at the error, the whole error message kept) and the others still run; the
exit status is 1 if any failed. A notebook whose cells draw figures but whose page holds none
fails too: kernels start without ``MPLBACKEND``, which would otherwise send every figure to a
backend that draws nowhere.

Before the first lesson, the profile's ImageNet weights are looked for (``coursekit.tools.cache``):
on a machine with neither them nor internet, nothing runs and one message says what to do (exit
status 3); a lesson that still fails for want of weights stops the run with that message.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from tqdm.auto import tqdm

from .course import lesson_notebooks, notebook_title

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the colours of a kernel's traceback
# A code cell that draws: plt.show(), a coursekit.plotting figure, a seaborn plot.
DRAWING_CALL = re.compile(r"\bplt\.show\(|\bplotting\.(?:show|plot)_\w+\(|\bsns\.\w+plot\(|\bsns\.heatmap\(")
# Variables a kernel must not inherit: MPLBACKEND=Agg (usual on servers and in CI) makes every
# figure of a lesson vanish from its page without an error.
NOT_INHERITED = ("MPLBACKEND",)
STOPS_THE_RUN = "WeightsUnavailableError"   # the next lessons would fail the same way, minutes later


@dataclass
class RunResult:
    path: Path
    title: str
    seconds: float
    error: str | None          # the whole error message, or None when the notebook ran and drew
    notebook: object
    error_name: str | None = None  # the exception's class name ("WeightsUnavailableError", ...)

    @property
    def ok(self) -> bool:
        return self.error is None


def kernel_environment() -> dict[str, str]:
    """This process's environment less :data:`NOT_INHERITED`: what every kernel starts with."""
    return {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}


def drawing_cells(notebook) -> int:
    """How many code cells call a drawing function (:data:`DRAWING_CALL`)."""
    return sum(cell.cell_type == "code" and bool(DRAWING_CALL.search(cell.source)) for cell in notebook.cells)


def figures(notebook) -> int:
    """How many images the executed ``notebook``'s outputs hold."""
    return sum("image/png" in output.get("data", {}) or "image/svg+xml" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))


def error_message(failure: Exception) -> tuple[str, str]:
    """``(exception name, the whole message)`` of a failed execution, without terminal colours."""
    name = getattr(failure, "ename", None) or type(failure).__name__
    if isinstance(failure, CellExecutionError):
        message = f"{failure.ename}: {failure.evalue}"
    elif isinstance(failure, DeadKernelError):
        message = (f"{name}: the kernel died (out of memory, or a crash in compiled code); "
                   "run the notebook in Jupyter to see where")
    else:
        message = f"{name}: {failure}"
    return name, ANSI_ESCAPE.sub("", message).strip()


def execute(path: str | Path, workdir: str | Path, cell_timeout: int = 600, progress: bool = True) -> RunResult:
    """Execute the notebook at ``path`` in a fresh kernel with ``workdir`` as its current folder.

    The kernel gets :func:`kernel_environment`. A notebook that ran but drew no figure although
    its cells call drawing functions is a failure too (its page would be empty).
    """
    path, workdir = Path(path), Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(path, as_version=4)
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    bar = tqdm(total=code_cells, desc=path.stem, unit="cell", disable=not progress, leave=True)
    client = NotebookClient(notebook, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}},
                            on_cell_executed=lambda **_: bar.update(1))
    start, error, name = time.perf_counter(), None, None
    try:
        client.execute(env=kernel_environment())
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as failure:
        name, error = error_message(failure)
    finally:
        bar.close()
    drawing = drawing_cells(notebook)
    if error is None and drawing and not figures(notebook):
        name = "NoFigures"
        cells = "1 cell calls" if drawing == 1 else f"{drawing} cells call"
        error = (f"NoFigures: {cells} plt.show() or a plotting function, and the page holds no figure: "
                 "matplotlib drew to a backend that shows nothing (a matplotlib.use(...) or MPLBACKEND inside "
                 "the notebook?)")
    return RunResult(path, notebook_title(notebook), time.perf_counter() - start, error, notebook, name)


def to_html(notebook) -> str:
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(notebook)
    return body


def write_index(results: list[RunResult], out: Path, profile_name: str, stopped: str | None = None) -> Path:
    rows = "\n".join(
        f"<tr><td><a href='{html.escape(r.path.stem)}.html'>{html.escape(r.title)}</a></td>"
        f"<td>{html.escape(r.path.name)}</td><td>{r.seconds:.1f} s</td>"
        f"<td class='{'ok' if r.ok else 'failed'}'>{'ok' if r.ok else 'FAILED: ' + html.escape(r.error)}</td></tr>"
        for r in results)
    note = f"<p class='failed'>The run stopped here.</p><pre>{html.escape(stopped)}</pre>" if stopped else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>What CNNs Learn: lessons</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.3em .8em;text-align:left}}
td{{white-space:pre-wrap;vertical-align:top}}.ok{{color:#070}}.failed{{color:#b00}}pre{{white-space:pre-wrap}}</style>
</head><body>
<h1>What CNNs Learn: executed lessons</h1><p>Profile: <b>{html.escape(profile_name)}</b>.
Generated by <code>make lessons</code>.</p>
<table><tr><th>Lesson</th><th>Notebook</th><th>Wall time</th><th>Status</th></tr>
{rows}</table>{note}</body></html>"""
    index = out / "index.html"
    index.write_text(page)
    return index


def select(folder: str | Path, only: list[str] | None = None) -> list[Path]:
    """The lessons of ``folder`` whose name contains one of ``only`` (all without it); never empty."""
    notebooks = lesson_notebooks(folder)
    if only:
        notebooks = [nb for nb in notebooks if any(key in nb.name for key in only)]
    if not notebooks:
        raise FileNotFoundError(f"No numbered notebooks (NN_name.ipynb) in {str(folder)!r}"
                                + (f" whose name contains one of {only}." if only else "."))
    return notebooks


def loads_pretrained(path: Path) -> bool:
    """True when the notebook at ``path`` loads an ImageNet model (``models.pretrained(...)``)."""
    return any(cell.cell_type == "code" and "pretrained(" in cell.source
               for cell in nbformat.read(path, as_version=4).cells)


def build(folder: str | Path, out: str | Path, only: list[str] | None = None) -> list[RunResult]:
    """Run every lesson of ``folder`` (or those whose name contains one of ``only``) into ``out``.

    Stops after a lesson that failed for want of pretrained weights (:data:`STOPS_THE_RUN`):
    every later one would fail the same way.
    """
    notebooks, out = select(folder, only), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in notebooks:
        workdir = out / "run" / path.stem
        shutil.rmtree(workdir, ignore_errors=True)
        result = execute(path, workdir)
        (out / f"{path.stem}.html").write_text(to_html(result.notebook))
        nbformat.write(result.notebook, out / path.name)
        results.append(result)
        print(f"{path.name}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f} s", flush=True)
        if result.error_name == STOPS_THE_RUN:
            break                     # main() prints its message once, after the index is written
        if not result.ok:
            print("    " + result.error.replace("\n", "\n    "), flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="notebooks")
    parser.add_argument("--out", default="build/lessons")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    args = parser.parse_args(argv)
    from ..env import profile
    from .cache import preflight
    try:
        profile_name = profile().name
    except ValueError as error:   # an unknown COURSEKIT_PROFILE
        print(f"coursekit.tools.gallery: {error}", file=sys.stderr)
        return 2
    print(f"Running lessons in profile '{profile_name}' (COURSEKIT_PROFILE=smoke|quick|full chooses another).",
          flush=True)
    try:
        notebooks = select(args.folder, args.only)
    except FileNotFoundError as error:
        print(f"coursekit.tools.gallery: {error}", file=sys.stderr)
        return 2
    problem = preflight(profile_name) if any(loads_pretrained(path) for path in notebooks) else None
    if problem:
        print(f"\nNo lesson was run.\n{problem}", file=sys.stderr)
        return 3
    results = build(args.folder, args.out, args.only)
    stopped = results[-1].error if results and results[-1].error_name == STOPS_THE_RUN else None
    index = write_index(results, Path(args.out), profile_name, stopped)
    if stopped:
        print(f"\nThe run stopped at {results[-1].path.name}: the lessons after it need the same weights.\n"
              f"{stopped}", file=sys.stderr)
    print(f"Gallery: {index.resolve()}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.exit(main())
