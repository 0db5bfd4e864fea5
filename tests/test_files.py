"""coursekit.tools.files.write_atomically: what the grade table, shards, exports and Gradescope's
results are written with."""
from __future__ import annotations

import os
import stat

import pytest

from coursekit.tools import files


def test_the_new_file_has_the_text_and_the_permissions_open_would_give(tmp_path):
    old_umask = os.umask(0o027)
    try:
        files.write_atomically(tmp_path / "new" / "grades.csv", "file,total\r\nkim.ipynb,10\r\n")
    finally:
        os.umask(old_umask)
    written = tmp_path / "new" / "grades.csv"
    assert written.read_bytes() == b"file,total\r\nkim.ipynb,10\r\n"      # newlines kept as given
    assert stat.S_IMODE(written.stat().st_mode) == 0o640                  # 0666 less the umask, not mkstemp's 0600
    assert [p.name for p in written.parent.iterdir()] == ["grades.csv"]   # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "grades.csv"
    target.write_text("the old table\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        files.write_atomically(target, "an unpaired surrogate: \ud800")
    assert target.read_text(encoding="utf-8") == "the old table\n"
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]


def test_text_is_written_as_utf8_whatever_the_locale(tmp_path):
    files.write_atomically(tmp_path / "roster.csv", "Zoë,Łukasz,李\n")
    assert (tmp_path / "roster.csv").read_bytes().decode("utf-8") == "Zoë,Łukasz,李\n"
