"""``exit()`` and ``quit()`` in a submission: ignored while grading, and named in the grade's reason.

In a Jupyter kernel, ``exit()`` (or ``quit()``, or either alone on a line) stops the kernel a moment
after its cell has finished. Students leave it at the end of a notebook out of habit; the grader
would then find the kernel gone when it checks the tasks, and the work would earn nothing. Before a
submission runs, :func:`keep_kernel_on_exit` makes both print a note instead, in the kernel;
:func:`exit_calls` finds the cells that call them, for the grade's reason.
"""
from __future__ import annotations

import ast
import sys

NOTE = "[grading: exit() and quit() are ignored here, so that every task can still be checked]\n"
NAMES = ("exit", "quit")


def keep_kernel_on_exit() -> None:
    """In a kernel: ``exit()`` and ``quit()`` print :data:`NOTE` and leave the kernel running."""
    from IPython import get_ipython

    def ask_exit():
        print(NOTE, end="", file=sys.stderr)

    shell = get_ipython()
    if shell is not None:
        shell.ask_exit = ask_exit   # what IPython's exit and quit call, with or without parentheses


def _calls_exit(source: str) -> bool:
    """Whether a code cell calls ``exit`` or ``quit`` (bare names, as IPython's autocall runs them too)."""
    from IPython.core.inputtransformer2 import TransformerManager
    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        target = node.func if isinstance(node, ast.Call) else node.value if isinstance(node, ast.Expr) else None
        if isinstance(target, ast.Name) and target.id in NAMES:
            return True
    return False


def exit_calls(notebook) -> list[int]:
    """The numbers (from 1, as the grader's reasons count cells) of the code cells that call exit or quit."""
    return [number for number, cell in enumerate(notebook.cells, start=1)
            if cell.get("cell_type") == "code" and isinstance(cell.get("source"), str)
            and any(name in cell.source for name in NAMES) and _calls_exit(cell.source)]


def exit_note(notebook) -> str:
    """A reason's note for the cells that call exit or quit; empty when none does."""
    cells = exit_calls(notebook)
    if not cells:
        return ""
    where = ", ".join(map(str, cells[:5])) + (" ..." if len(cells) > 5 else "")
    return (f"exit()/quit() in cell{'s' if len(cells) > 1 else ''} {where} ignored while grading: the kernel "
            "kept running, so every task was checked")
