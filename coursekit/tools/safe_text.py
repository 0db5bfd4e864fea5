"""Text a student controls, made inert wherever the grader shows or stores it.

A file name, an exception message or a value an answer returned can hold anything: terminal
escape sequences (clear the screen, rewrite earlier lines, set the clipboard), a newline that
prints a forged progress line, a spreadsheet formula, Markdown or HTML. Everything the grader
prints, writes to a table or puts into a notebook cell passes through one of these:

* :func:`inert`: one line of plain text, every control character, line separator and
  direction override written as an escape (``\\x1b``, ``\\n``, ``\\u2028``), visible and harmless.
* :func:`spreadsheet_cell`: :func:`inert`, and a cell that a spreadsheet would read as a formula
  (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) starts with ``'`` instead.
  Every table written for a human (``grades.csv``, gradebook exports) writes text cells with it.
* :func:`literal_block`: lines shown as literal text in Markdown (a fenced block no line can
  close), so that no heading, link, image or HTML of the student's is rendered.
"""
from __future__ import annotations

import unicodedata

# what makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula, with the
# full-width forms some input methods type
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# characters that change how the rest of a line reads without being control characters
_DIRECTION_MARKS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if char == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs") or char in _DIRECTION_MARKS


def inert(value, limit: int | None = None) -> str:
    """``value`` as one line of text with every control character, line or paragraph separator and
    direction override escaped; at most ``limit`` characters of it (then ``...``)."""
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return "".join(_escape(char) if _is_unsafe(char) else char for char in text)


def spreadsheet_cell(value):
    """``value`` as a cell that no spreadsheet runs as a formula (see the module docstring).

    Numbers stay numbers; text is :func:`inert`, with ``'`` in front when it would start a formula,
    leading spaces included (``"  =1+1"``).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = inert("" if value is None else value)
    return "'" + text if text.lstrip(" ").startswith(FORMULA_STARTS) else text


def from_spreadsheet_cell(text: str) -> str:
    """The text :func:`spreadsheet_cell` guarded, without its ``'`` (a file name read back from a table)."""
    guarded = text.startswith("'") and text[1:].lstrip(" ").startswith(FORMULA_STARTS)
    return text[1:] if guarded else text


def literal_block(lines: list[str]) -> str:
    """Markdown that shows each of ``lines`` (made :func:`inert`) as literal text, in one fenced block.

    The fence is longer than any run of backticks in the text, so no line can close it early; inside
    it Markdown and HTML are not rendered.
    """
    shown = [inert(line) for line in lines]
    longest = _longest_backtick_run("\n".join(shown))
    fence = "`" * max(3, longest + 1)
    return "\n".join([f"{fence}text", *shown, fence])


def _longest_backtick_run(text: str) -> int:
    longest = current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        longest = max(longest, current)
    return longest
