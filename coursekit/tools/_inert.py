"""Student text made inert before it lands in a spreadsheet or a report.

A file name, a roster entry or an exception message can hold anything: terminal escapes, line
breaks that forge a second row or line, or a leading ``=`` that a spreadsheet runs as a formula.

# TO REPLACE after the merge of the grader's "student text is inert" work: that work adds one
# shared helper for the grader; these two functions are a stand-in with the same rules, used only
# by coursekit.tools.export and coursekit.tools.gradescope. Switch both to it and delete this module.
"""
from __future__ import annotations

import re

# C0 and C1 control characters (escape, carriage return, newline, tab, ...), DEL, and the Unicode
# line and paragraph separators: everything that can move a cursor or start a new line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula, including
# the full-width forms that some input methods type.
FORMULA_START = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def printable(text: object) -> str:
    """``text`` on one line, every control character written as its escape (``\\x1b``, ``\\n``)."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))


def spreadsheet_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as the text it is: numbers stay numbers; text is
    :func:`printable`, and text that would start a formula gets a leading apostrophe (OWASP's rule)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = printable("" if value is None else value)
    return "'" + text if text.lstrip().startswith(FORMULA_START) else text
