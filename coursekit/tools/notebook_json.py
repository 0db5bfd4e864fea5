"""A submitted notebook file read in a process of its own: hashed, parsed, and stripped of what is never run.

The grader takes files up to 200 MB, since Colab keeps every figure in the notebook; but a JSON file
of that size can also hold millions of tiny objects and take gigabytes to parse. So the grader
(:func:`coursekit.tools.grade.load_submission`) runs this file as a script, in a child process that
first limits its own memory and CPU time, and gets back only the notebook's hash and the notebook
without outputs, execution counts, widget state and attachments (a few MB at most), as JSON::

    python -I notebook_json.py PATH LIMIT_BYTES MAX_CELLS MAX_BYTES   # {"sha256", "notebook" or "problem"}

Standard library only: the script runs without coursekit, numpy or anything else being imported.
"""
from __future__ import annotations

import hashlib
import json
import sys

MEMORY_BYTES = 3 * 1024 ** 3         # the reading process's address space: a 200 MB file needs about 1 GB
CPU_SECONDS = 60
MAX_CONTAINERS = 5_000_000           # JSON lists and objects in one file: outputs of plots hold many
NOT_RUN_NOTEBOOK_METADATA = ("widgets",)      # ipywidgets' saved state (progress bars, sliders)
NOT_RUN_CELL_KEYS = ("attachments",)          # images pasted into Markdown cells


class Unreadable(ValueError):
    """The file is not a notebook that can be graded; the message says why, for the student."""


def drop_what_is_not_run(raw) -> list:
    """Clear outputs, execution counts, widget state and attachments in the notebook JSON ``raw``
    (nbformat 3 or 4, changed in place); its cells, whatever the version keeps them in."""
    if not isinstance(raw, dict):
        raise Unreadable("not a valid notebook (invalid JSON or format): no list of cells")
    if raw.get("nbformat") in (1, 2, 3):
        sheets = raw.get("worksheets")
        if not isinstance(sheets, list) or not all(isinstance(s, dict) and isinstance(s.get("cells"), list)
                                                   for s in sheets):
            raise Unreadable("not a valid notebook (invalid format): no list of worksheets with cells")
        cells = [cell for sheet in sheets for cell in sheet["cells"]]
    elif isinstance(raw.get("cells"), list):
        cells = raw["cells"]
    else:
        raise Unreadable("not a valid notebook (invalid JSON or format): no list of cells")
    if isinstance(raw.get("metadata"), dict):
        for key in NOT_RUN_NOTEBOOK_METADATA:
            raw["metadata"].pop(key, None)
    for cell in cells:
        if not isinstance(cell, dict):
            raise Unreadable("not a valid notebook (invalid format): a cell is not a JSON object")
        if "outputs" in cell:
            cell["outputs"] = []
        for count in ("execution_count", "prompt_number"):
            if count in cell:
                cell[count] = None
        for key in NOT_RUN_CELL_KEYS:
            cell.pop(key, None)
    return cells


def runnable_text(data: bytes, max_cells: int, max_bytes: int) -> str:
    """The notebook JSON in ``data`` without what is never run (see :func:`drop_what_is_not_run`),
    as JSON text; :class:`Unreadable` when it is not a notebook, or when what would run holds more
    than ``max_cells`` cells or ``max_bytes`` characters."""
    # Two quick counts before parsing (a key can be spelled with escapes to dodge them, so the
    # reading process is limited all the same): a notebook has few cells, and few JSON objects
    # and lists beside its outputs' text and images.
    if data.count(b'"cell_type"') > max_cells:
        raise Unreadable(f"more than {max_cells} cells ({len(data) / 1e6:.0f} MB): the grader takes at most {max_cells}")
    if data.count(b"[") + data.count(b"{") > MAX_CONTAINERS:
        raise Unreadable(f"more than {MAX_CONTAINERS:,} JSON lists and objects ({len(data) / 1e6:.0f} MB): "
                         "clear the outputs (Edit > Clear all outputs), save, and submit again")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("not a text file (not UTF-8): is it really an .ipynb notebook?") from None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise Unreadable(f"not a valid notebook (invalid JSON: {str(error)[:120]})") from None
    del text
    cells = drop_what_is_not_run(raw)
    if len(cells) > max_cells:
        raise Unreadable(f"{len(cells)} cells ({len(data) / 1e6:.0f} MB): the grader takes at most {max_cells}")
    runnable = json.dumps(raw)
    if len(runnable) > max_bytes:
        raise Unreadable(f"{len(runnable) / 1e6:.0f} MB of code and text without the outputs is more than the "
                         f"grader runs ({max_bytes / 1e6:.0f} MB)")
    return runnable


def read(path: str, limit_bytes: int, max_cells: int, max_bytes: int) -> dict:
    """``{"sha256", "notebook": JSON text}`` for the file at ``path``, or with ``"problem"`` instead
    of ``"notebook"``: what :func:`main` prints."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit_bytes + 1)
    except OSError as error:
        return {"problem": f"cannot be read ({error.strerror or type(error).__name__})"}
    if len(data) > limit_bytes:
        return {"problem": f"larger than {limit_bytes / 1e6:.0f} MB as a file: clear the outputs (Edit > Clear "
                           "all outputs), save, and submit again"}
    digest = hashlib.sha256(data).hexdigest()
    try:
        return {"sha256": digest, "notebook": runnable_text(data, max_cells, max_bytes)}
    except Unreadable as problem:
        return {"sha256": digest, "problem": str(problem)}


def _limit_myself() -> None:
    try:
        import resource
    except ImportError:  # Windows: no limits to set
        return
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def main() -> None:
    _limit_myself()
    path, limit_bytes, max_cells, max_bytes = sys.argv[1], *map(int, sys.argv[2:5])
    json.dump(read(path, limit_bytes, max_cells, max_bytes), sys.stdout)


if __name__ == "__main__":
    main()
