"""Writing a file the grading tools' readers may open at any moment (a spreadsheet, Gradescope)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path``: a reader sees the old file or the new one.

    The text goes to a temporary file beside ``path``, which then replaces it in one step; the new
    file gets the usual permissions (0666 less the umask, as ``open`` would give). If writing fails,
    the temporary file is removed and ``path`` is left as it was. Missing folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as file:
            file.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
