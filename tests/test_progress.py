"""Progress bars draw once: one output per loop in a notebook, its last state kept."""
import nbformat
import pytest
from nbclient import NotebookClient

from coursekit import _progress


def test_a_bar_in_a_notebook_is_one_output_that_each_redraw_replaces(monkeypatch):
    displayed, updates = [], []

    class Handle:
        def update(self, data, raw):
            updates.append(data["text/plain"])

    def fake_display(data, raw, display_id):
        displayed.append(data)
        return Handle()

    monkeypatch.setattr("IPython.display.display", fake_display)
    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)
    for _ in _progress.progress(range(5), desc="steps", mininterval=0, leave=False):
        pass
    assert len(displayed) == 1                       # one output for the whole loop
    assert len(updates) >= 2 and all("\r" not in line and line.strip() for line in updates)
    assert "100%" in updates[-1] and "5/5" in updates[-1]   # leave=False's blanks do not wipe it
    assert "█" in updates[-1]                        # the unicode bar, not tqdm's ASCII fallback


def test_a_disabled_bar_displays_nothing(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: pytest.fail("displayed"))
    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)
    assert list(_progress.progress(range(3), disable=True)) == [0, 1, 2]


def test_outside_a_notebook_it_is_tqdm_on_stderr(capsys):
    assert not _progress._in_notebook()
    list(_progress.progress(range(3), desc="plain", mininterval=0))
    assert "plain" in capsys.readouterr().err


def test_an_executed_notebook_keeps_one_output_per_loop(tmp_path):
    # What the HTML gallery stores: before, every redraw of a text bar was an output of its own.
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from coursekit._progress import progress\n"
        "for _ in progress(range(40), desc='first', mininterval=0): pass\n"
        "for _ in progress(range(40), desc='second', mininterval=0, leave=False): pass\n")])
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    assert [output.output_type for output in outputs] == ["display_data", "display_data"]
    texts = [output.data["text/plain"] for output in outputs]
    assert texts[0].startswith("first") and "40/40" in texts[0]
    assert texts[1].startswith("second") and "40/40" in texts[1]
