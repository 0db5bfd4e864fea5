"""From-scratch tasks: the answer checked in a kernel whose coursekit lacks what it must not use.

A task that asks the student to write something coursekit provides names it
(``@task(..., from_scratch=("models.last_spatial_layer",))``). Watching calls in the student's own
process cannot settle it (the profiler can be switched off, the function copied, its source
re-run), so the grader checks such an answer a second time, after it passed, in a fresh sandboxed
kernel that runs the notebook's definitions up to the answer's (its imports, functions and plain
assignments: :func:`definitions_only`; when the answer needs more, every cell up to it), and in
which coursekit's
file holds a stub in place of each forbidden function (:func:`view`): its code, its source and
its cached bytecode are not there to call, copy or read. The stub raises ``ValueError`` saying so,
also when one of coursekit's public helpers calls it (``require_spatial``'s error message names the
last spatial layer: in that kernel it raises the stub's ``ValueError`` instead), so that only the
student's own use of it costs points.

What a kernel cannot show, a human can: :func:`review` lists, per submission, the places in its
code that reach for these functions or for ways around a check (introspection, the profiler,
threads and processes, code built at run time, coursekit's private helpers), for the ``review``
column of the grade table.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .sandbox import View

PACKAGE = "coursekit"


@dataclass(frozen=True)
class Forbidden:
    name: str          # as the task names it, relative to the package: "models.last_spatial_layer"
    module: str        # the module that defines it: "coursekit._inputs"
    function: str      # its name there: "last_spatial_layer"
    file: Path         # that module's source file

    @property
    def public(self) -> str:
        return f"{PACKAGE}.{self.name}"


def resolve(name: str) -> Forbidden:
    """Where the function a task forbids is defined (through aliases such as ``models.x = _inputs.x``)."""
    module_name, _, attribute = name.rpartition(".")
    function = inspect.unwrap(getattr(importlib.import_module(f"{PACKAGE}.{module_name}"), attribute))
    module = importlib.import_module(function.__module__)
    return Forbidden(name, module.__name__, function.__name__, Path(inspect.getsourcefile(module)).resolve())


def _stub(forbidden: Forbidden, definition: ast.FunctionDef, task_ids: list[str]) -> list[str]:
    message = (f"coursekit's {forbidden.function} is not available while task {', '.join(task_ids)} is checked: "
               "the task asks you to write it yourself.")
    return [f"def {definition.name}(*args, **kwargs):", f"    raise ValueError({message!r})"]


def stubbed_source(source: str, functions: dict[str, list[str]], forbidden: dict[str, Forbidden]) -> str:
    """``source`` with each top-level function in ``functions`` (name -> task ids) replaced by a stub
    of as many lines (so that the lines after it keep their numbers)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    found = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for name, task_ids in functions.items():
        if name not in found:
            raise ValueError(f"{name} is not a top-level function of its module")
        node = found[name]
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        last = node.end_lineno
        stub = _stub(forbidden[name], node, task_ids)
        lines[first:last] = stub + [""] * max(0, last - first - len(stub))
    return "\n".join(lines) + "\n"


def view(tasks: list, folder: Path) -> View:
    """A sandbox view of coursekit in which the functions ``tasks`` forbid are stubs; files in ``folder``.

    Every ``__pycache__`` folder of coursekit is seen empty, so that no cached bytecode of the
    original module is there to load either.
    """
    by_module: dict[Path, dict[str, list[str]]] = {}
    resolved: dict[str, Forbidden] = {}
    for task in tasks:
        for name in task.from_scratch:
            found = resolve(name)
            resolved[found.function] = found
            by_module.setdefault(found.file, {}).setdefault(found.function, []).append(task.id)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    files = []
    for index, (file, functions) in enumerate(sorted(by_module.items())):
        copy = folder / f"{index}-{file.name}"
        copy.write_text(stubbed_source(file.read_text(), functions, resolved))
        copy.chmod(0o644)
        files.append((copy, file))
    package = Path(importlib.import_module(PACKAGE).__file__).resolve().parent
    caches = tuple(sorted(path for path in package.rglob("__pycache__") if path.is_dir()))
    return View(tuple(files), caches)


def remove_view(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- which cells to run

def _bound_names(source: str) -> set[str]:
    """Top-level names a cell binds (definitions, assignments, imports, loop targets)."""
    source = _python(source)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        found = re.findall(r"^\s*(?:def|class)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*=", source, flags=re.M)
        return {name for pair in found for name in pair if name}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _python(source: str) -> str:
    """A cell's source as plain Python (IPython's magics and shell escapes turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - not IPython's syntax either: the raw text
        return source


def _runs_nothing(value: ast.AST) -> bool:
    """Whether evaluating ``value`` calls nothing (literals, names, attributes, lambdas, containers)."""
    if isinstance(value, ast.Lambda):
        return True
    return not any(isinstance(node, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr))
                   for node in ast.walk(value))


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        return _runs_nothing(node.value)
    if isinstance(node, ast.Try):
        return all(_is_definition(inner) for inner in node.body)
    return False


def definitions_only(source: str) -> str:
    """The imports, function and class definitions and plain assignments of a cell, nothing it runs
    (no call at its top level): what a function defined in the notebook needs, in a fraction of the time."""
    try:
        tree = ast.parse(_python(source))
    except (SyntaxError, ValueError):
        return ""
    kept = [node for node in tree.body if _is_definition(node)]
    return ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else ""


def cells_needed(notebook, answers: set[str]) -> int | None:
    """The index after the last code cell that binds one of ``answers`` (run the cells before it);
    None when no cell visibly does (then run them all)."""
    last = None
    for index, cell in enumerate(notebook.cells):
        if cell.get("cell_type") == "code" and _bound_names(cell.get("source", "")) & answers:
            last = index
    return None if last is None else last + 1


# ----------------------------------------------------------------------------- the review report

_REACHES = [
    (r"\bgetsource(lines|file)?\b|\blinecache\b|\b__file__\b|\bco_code\b|\b__code__\b|\bFunctionType\b|\bCodeType\b"
     r"|\bmarshal\b|\b__wrapped__\b|\b__globals__\b|\b__closure__\b|\bdis\.", "reads or copies code"),
    (r"\bsetprofile\b|\bsettrace\b|\bsys\.monitoring\b|\bCallWatch\b|\bforbidden_now\b|\bfrom_scratch\b|\b_current\b",
     "touches the profiler or the watch"),
    (r"\bthreading\b|\b_thread\b|\bfork\b|\bmultiprocessing\b|\bsubprocess\b|\bconcurrent\.futures\b|\bos\.system\b"
     r"|\bpopen\b|\bspawn", "threads or other processes"),
    # "x" in sys.modules (the course's setup cell asks whether it runs on Colab) only reads it
    (r"(?<![\w.])(exec|eval|compile)\s*\(|\bimportlib\b|\b__import__\b|(?<!\bin )\bsys\.modules\b",
     "code built at run time"),
    (r"\bcoursekit(\.\w+)*\._\w+|from\s+coursekit[\w.]*\s+import\s+(\([^)]*|[^\n]*)\b_\w+|\b_inputs\b|\b_forward\b"
     r"|\b_cache\b|\b_featurevis\b", "coursekit's private helpers"),
]


def review(notebook, tasks: list) -> list[str]:
    """Places in the notebook's code that reach for what ``tasks`` forbid, or for ways around a check.

    Each is ``"cell N: what (the line)"``; an empty list when the lesson has no from-scratch task.
    """
    names = sorted({name.rpartition(".")[2] for task in tasks for name in task.from_scratch})
    if not names:
        return []
    patterns = [(re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b"), "names a function it must write")]
    patterns += [(re.compile(pattern), what) for pattern, what in _REACHES]
    found = []
    number = 0
    for cell in notebook.cells:
        if cell.get("cell_type") != "code":
            continue
        number += 1
        for line in str(cell.get("source", "")).splitlines():
            for pattern, what in patterns:
                match = pattern.search(line)
                if match:
                    found.append(f"code cell {number}: {what} ({match.group(0).strip()[:40]})")
    return list(dict.fromkeys(found))
