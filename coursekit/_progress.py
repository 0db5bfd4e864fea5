"""Progress bars that draw once: one line per loop in a notebook, updated in place.

tqdm's text bar redraws by writing ``"\\r" + bar`` to stderr. A live terminal overwrites the line;
a notebook executed headless (the HTML gallery, CI, nbval) stores every write as an output of its
own, so one loop of 24 steps left a page with a pink box per step. In a notebook kernel the bar is
therefore one display output that each redraw *updates* (a Jupyter display id): live it moves in
place, in the saved notebook and its HTML it is one line, the loop's last state. Outside a
notebook it is tqdm's ordinary bar on stderr.
"""
from __future__ import annotations

from tqdm import tqdm


class _DisplayLine:
    """A file for tqdm whose text is one notebook output, replaced by each redraw."""

    encoding = "utf-8"   # tqdm draws its unicode bar only into files that say they take it

    def __init__(self):
        from IPython.display import display
        self._line = ""
        self._handle = display({"text/plain": ""}, raw=True, display_id=True)

    def write(self, text: str) -> None:
        # A redraw is "\r" + bar; closing with leave=False writes blanks: keep the last bar drawn.
        parts = [part for part in text.replace("\n", "\r").split("\r") if part.strip()]
        if parts and parts[-1] != self._line:
            self._line = parts[-1]
            self._handle.update({"text/plain": self._line}, raw=True)

    def flush(self) -> None:
        pass


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None   # a Jupyter / Colab kernel, not a terminal


def progress(iterable=None, **options) -> tqdm:
    """``tqdm(iterable, **options)`` drawn as one updating line in a notebook (module docstring).

    With ``disable=True`` nothing is drawn, in a notebook nothing is displayed either.
    """
    if _in_notebook() and not options.get("disable"):
        options = {**options, "file": _DisplayLine(), "leave": True}
    return tqdm(iterable, **options)
