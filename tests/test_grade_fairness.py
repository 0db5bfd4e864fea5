"""Honest work graded fairly: right answers written the ways real students write them, and notebooks
saved the ways Colab and Jupyter save them, all graded at full marks by the real grader, with
``check()`` in the notebook agreeing with the grader on every task.

The submissions are built here from the solution notebooks (cut down to the cells the tasks need:
setup, imports, answers, checks), with one or more answers rewritten in an honest variant, and
graded in ONE batch (``--jobs 2``) to keep the time down. Each variant is then a test of its own:
the grader's points for its task, and the ✓ or ✗ that ``check()`` printed in the executed notebook.
"""
from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from coursekit import checks
from coursekit.checks.core import CHECK_CALL
from coursekit.tools import exits, grade, notebook_json, wire

ROOT = Path(__file__).resolve().parents[1]
COLAB_BYTES = 22_000_000          # a notebook saved by Colab with its figures: over the old 20 MB limit
NON_ASCII = "01_élève_Ødegård (1).ipynb"


# ----------------------------------------------------------------------------- building the notebooks

def lean_solution(lesson: str) -> nbformat.NotebookNode:
    """The lesson's solution notebook with only what its tasks need: its markdown, the setup and
    import cells, the answer cells, the check cells and the summary (no model loading, no cell
    that uses an answer), as a student's notebook that skipped the demonstrations would be."""
    path = next((ROOT / "solutions").glob(f"{lesson}_*.ipynb"))
    notebook = nbformat.read(path, as_version=4)
    kept = []
    for index, cell in enumerate(notebook.cells):
        source = cell.source
        wanted = (cell.cell_type == "markdown" or "course-setup" in cell.metadata.get("tags", [])
                  or (index < 4 and "import" in source) or "### BEGIN SOLUTION" in source
                  or CHECK_CALL.search(source) or source.startswith("summary("))
        if wanted and "uses-answer" not in cell.metadata.get("tags", []):
            kept.append(cell)
    notebook.cells = kept
    return notebook


def replace_answer(notebook, name: str, source: str) -> None:
    """Replace the cell that defines ``name`` (``def name(`` or ``name =``) with ``source``."""
    pattern = re.compile(rf"^(def {name}\(|{name} = )", re.M)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and pattern.search(cell.source)]
    assert len(cells) == 1, f"{name}: {len(cells)} cells define it"
    cells[0].source = source


def add_code(notebook, source: str, before: str | None = None) -> None:
    """Add a code cell at the end, or before the first cell whose source contains ``before``."""
    cell = nbformat.v4.new_code_cell(source)
    if before is None:
        notebook.cells.append(cell)
        return
    index = next(i for i, c in enumerate(notebook.cells) if before in c.source)
    notebook.cells.insert(index, cell)


def colab_saved(notebook, size: int) -> None:
    """Colab's metadata, execution counts, and figures kept as outputs: ``size`` bytes of PNG data."""
    notebook.nbformat_minor = 0
    notebook.metadata = nbformat.from_dict({
        "colab": {"provenance": [], "gpuType": "T4", "toc_visible": True},
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "language_info": {"name": "python"}, "accelerator": "GPU"})
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    figure = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (size // len(code) // 340 + 1)).decode()
    for count, cell in enumerate(code, start=1):
        cell.execution_count = count
        cell.metadata = nbformat.from_dict({"id": f"cell{count:04d}", "colab": {"base_uri": "https://localhost:8080/",
                                                                                 "height": 420},
                                            "outputId": hashlib.md5(str(count).encode()).hexdigest()[:12]})
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"output of cell {count}\n"),
                        nbformat.v4.new_output("display_data", data={"image/png": figure,
                                                                     "text/plain": "<Figure size 1000x400>"})]
    for cell in notebook.cells:
        cell.pop("id", None)   # nbformat 4.0, as Colab writes it: cell ids only in the metadata


def with_widget_state(notebook) -> None:
    """A progress bar's widget state in the metadata, as Jupyter and Colab keep it, and its output."""
    model_id = "5f1c2e7a9b0d4c3e8a6f1b2d3c4e5f60"
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        model_id: {"model_module": "@jupyter-widgets/controls", "model_name": "FloatProgressModel",
                   "model_module_version": "1.5.0",
                   "state": {"bar_style": "success", "max": 100, "value": 100, "layout": "IPY_MODEL_x"}}}}
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    first.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2, "version_minor": 0},
        "text/plain": "FloatProgress(value=100.0)"})]


@dataclass(frozen=True)
class Variant:
    notebook: str       # the file it is in
    task: str           # the task whose answer it is ("*": the notebook itself, seen in every other task)
    what: str           # the honest variant, in words


VARIANTS: list[Variant] = []
NOTEBOOKS: dict[str, bytes] = {}


def submission(name: str, notebook, *variants: tuple[str, str], v3: bool = False) -> None:
    """Keep ``notebook`` as the submission ``name``, holding ``variants`` ``(task, what)``."""
    if v3:
        NOTEBOOKS[name] = nbformat.writes(nbformat.convert(notebook, 3), version=3).encode()
    else:
        NOTEBOOKS[name] = nbformat.writes(notebook, version=4).encode()
    VARIANTS.extend(Variant(name, task, what) for task, what in variants)


def build_submissions() -> None:
    """Five notebooks: each file-level variant, with answer variants in it."""
    # -- lesson 01: a Colab-saved notebook over 20 MB; widget state; a non-ASCII name and exit()
    notebook = lean_solution("01")
    replace_answer(notebook, "activation_submodel", '''
def activation_submodel(model, layer_names):
    """The outputs of layer_names, each passed through an identity layer that names it."""
    outputs = [keras.layers.Lambda(lambda t: t, name=f"{name}_activations")(model.get_layer(name).output)
               for name in layer_names]
    return keras.Model(inputs=model.inputs, outputs=outputs)
''')
    replace_answer(notebook, "receptive_field", '''
def receptive_field(stack):
    size, jump, start = 1, 1, 0
    for kernel, stride, dilation, pad in stack:
        start -= pad * jump
        size += dilation * (kernel - 1) * jump
        jump *= stride
    return [size, jump, start]        # a list
''')
    replace_answer(notebook, "tile_position", '''
def tile_position(channel, height, width, per_row, gap=1):
    return np.array(divmod(channel, per_row)) * np.array([height + gap, width + gap])   # an array
''')
    replace_answer(notebook, "true_statements", 'true_statements = "a, c, e"')
    colab_saved(notebook, COLAB_BYTES)
    submission("01_colab_saved.ipynb", notebook,
               ("*", "saved by Colab: outputs, execution counts and Colab metadata kept, over 20 MB"),
               ("01.1", "outputs named by identity Lambda layers"), ("01.2", "a list instead of a tuple"),
               ("01.3", "a numpy array instead of a tuple"), ("01.4", "letters in a string with commas"))

    notebook = lean_solution("01")
    replace_answer(notebook, "activation_submodel", '''
class Activations(keras.Model):
    """The activations of the chosen layers, as a model class of its own."""

    def __init__(self, model, layer_names):
        super().__init__(name="activations")
        self.inner = keras.Model(model.inputs, [model.get_layer(name).output for name in layer_names])

    def call(self, images):
        return self.inner(images)


def activation_submodel(model, layer_names):
    return Activations(model, layer_names)
''')
    with_widget_state(notebook)
    submission("01_widgets.ipynb", notebook, ("*", "widget state in the notebook's metadata"),
               ("01.1", "a subclassed keras.Model"))

    notebook = lean_solution("01")
    replace_answer(notebook, "true_statements", 'true_statements = ["e", "c", "a"]')
    add_code(notebook, "exit()")
    submission(NON_ASCII, notebook, ("*", "a non-ASCII file name with spaces, and exit() in the last cell"),
               ("01.4", "a list of letters"))

    # -- lesson 04: quit(), the usual guard, another byte order, coursekit's public helper
    notebook = lean_solution("04")
    replace_answer(notebook, "channel_weights", '''
def channel_weights(gradients):
    return np.asarray(gradients).mean(axis=(1, 2)).astype(">f4")   # big-endian, as read from some files
''')
    replace_answer(notebook, "grad_cam_map", '''
def grad_cam_map(feature_maps, weights):
    positive = np.maximum(np.einsum("nhwk,nk->nhw", feature_maps, weights), 0)
    return positive / (positive.max(axis=(1, 2), keepdims=True) + 1e-5)   # the usual guard
''')
    replace_answer(notebook, "gradcam_layer", '''
def gradcam_layer(model):
    """The last layer that coursekit accepts as a feature map and that is not pooled to 1x1."""
    for layer in reversed(model.layers):
        try:
            models.require_spatial(model, layer.name)
        except ValueError:
            continue
        if tuple(layer.output.shape[1:3]) != (1, 1):
            return layer.name
''')
    add_code(notebook, "quit()")
    submission("04_quit.ipynb", notebook, ("*", "quit() in the last cell"), ("04.1", "a big-endian array"),
               ("04.2", "max + 1e-5 in the denominator"),
               ("04.3", "coursekit's public models.require_spatial in a try/except loop"))

    # -- lesson 07: nbformat 3, a cell that fails before the answers, scipy's own function, 0-d arrays, lists
    notebook = lean_solution("07")
    add_code(notebook, "from google.colab import drive\ndrive.mount('/content/drive')", before="def spearman")
    add_code(notebook, "import tensorflow as tf", before="def spearman")
    replace_answer(notebook, "spearman", '''
def spearman(map_a, map_b):
    from scipy.stats import spearmanr
    value = spearmanr(np.ravel(map_a), np.ravel(map_b)).statistic
    return np.asarray(0.0 if np.isnan(value) else value)   # a 0-d array
''')
    replace_answer(notebook, "deletion_scores", '''
def deletion_scores(score, image, heatmap, steps, baseline=0.0):
    height, width, channels = image.shape
    order = np.argsort(-np.ravel(heatmap), kind="stable")
    replacement = np.broadcast_to(np.asarray(baseline, dtype=image.dtype), image.shape).reshape(-1, channels)
    scores = []
    for t in range(steps + 1):
        copy = image.reshape(-1, channels).copy()
        deleted = order[:round(t * height * width / steps)]
        copy[deleted] = replacement[deleted]
        scores.append(float(score(copy.reshape(1, *image.shape))[0]))
    return scores    # a list
''')
    replace_answer(notebook, "area_under_curve", '''
def area_under_curve(scores):
    scores = np.asarray(scores, dtype="float64")
    return np.array(np.trapezoid(scores, dx=1 / (len(scores) - 1)))   # a 0-d array
''')
    replace_answer(notebook, "guided_relu_gradient", '''
def guided_relu_gradient(unit_inputs, upstream):
    return tf.where((unit_inputs > 0) & (upstream > 0), upstream, tf.zeros_like(upstream))   # a tensor
''')
    replace_answer(notebook, "true_statements", 'true_statements = ("g", "f", "c", "a")')
    submission("07_nbformat3.ipynb", notebook,
               ("*", "saved as nbformat 3, with a cell that fails (Colab's drive) before the answers"),
               ("07.1", "scipy.stats.spearmanr, returned as a 0-d array"), ("07.2", "a list of floats"),
               ("07.3", "numpy's trapezoid, returned as a 0-d array"), ("07.4", "a TensorFlow tensor"),
               ("07.5", "a tuple of letters"), v3=True)


build_submissions()


# ----------------------------------------------------------------------------- reading and sending, without kernels

def test_the_caps_apply_to_what_runs_not_to_the_outputs_thrown_away():
    data = NOTEBOOKS["01_colab_saved.ipynb"]
    assert len(data) > 20_000_000
    notebook = grade.read_submission(data)
    assert not any(cell.get("outputs") for cell in notebook.cells)
    assert len(nbformat.writes(notebook)) < 100_000
    with pytest.raises(grade.InvalidSubmission, match="without the outputs"):
        grade.read_submission(data, max_bytes=5_000)          # code and text alone over the cap
    with pytest.raises(grade.InvalidSubmission, match="cells .* the grader takes at most 5"):
        grade.read_submission(data, max_cells=5)


def test_a_file_is_read_once_hashed_as_submitted_and_kept_without_outputs(tmp_path):
    path = tmp_path / "01_colab_saved.ipynb"
    path.write_bytes(NOTEBOOKS["01_colab_saved.ipynb"])
    found = grade.load_submission(path)
    assert found.problem is None and found.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(found.data) < 100_000 and grade.read_submission(found.data).cells
    assert "larger than 1 MB as a file" in grade.load_submission(path, limit_bytes=1_000_000).problem


def test_a_file_of_many_small_objects_is_refused_before_or_while_it_is_parsed(tmp_path, monkeypatch):
    """A 200 MB file may hold millions of tiny cells or lists (gigabytes once parsed): counted before
    parsing, and the parse of a large file runs in a process of its own, limited in memory and time."""
    cell = '{"cell_type":"code","execution_count":null,"metadata":{},"outputs":[],"source":""}'
    many = tmp_path / "many.ipynb"
    many.write_text('{"nbformat":4,"nbformat_minor":5,"metadata":{},"cells":[' + ",".join([cell] * 50) + "]}")
    assert "more than 20 cells" in notebook_json.read(str(many), 10 ** 6, 20, 10 ** 6)["problem"]
    escaped = tmp_path / "escaped.ipynb"   # the count dodged: the parsed cells are counted too
    escaped.write_text(many.read_text().replace('"cell_type"', '"cell\\u005ftype"'))
    assert "50 cells" in notebook_json.read(str(escaped), 10 ** 6, 20, 10 ** 6)["problem"]
    apart = grade._read_apart(many, 10 ** 6)     # the same answer from the limited process
    assert apart == notebook_json.read(str(many), 10 ** 6, grade.MAX_CELLS, grade.MAX_NOTEBOOK_BYTES)
    assert apart["sha256"] == hashlib.sha256(many.read_bytes()).hexdigest() and "notebook" in apart
    monkeypatch.setattr(notebook_json, "MAX_CONTAINERS", 100)
    nested = tmp_path / "nested.ipynb"
    nested.write_text('{"nbformat":4,"nbformat_minor":5,"metadata":{"x":[' + ",".join(["[]"] * 200) + ']},"cells":[]}')
    assert "JSON lists and objects" in notebook_json.read(str(nested), 10 ** 6, 20, 10 ** 6)["problem"]


def test_nbformat_3_is_converted_and_widget_state_dropped():
    notebook = grade.read_submission(NOTEBOOKS["07_nbformat3.ipynb"])
    assert notebook.nbformat == 4 and any("def spearman" in cell.source for cell in notebook.cells)
    assert "widgets" not in grade.read_submission(NOTEBOOKS["01_widgets.ipynb"]).metadata
    with pytest.raises(grade.InvalidSubmission, match="worksheets"):
        grade.read_submission(json.dumps({"nbformat": 3, "worksheets": "none"}).encode())


def test_the_cells_that_call_exit_or_quit_are_found():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("exit()"), nbformat.v4.new_code_cell("x = 1  # exit()"),
                      nbformat.v4.new_code_cell("%time x\nexit()"), nbformat.v4.new_code_cell("quit"),
                      nbformat.v4.new_code_cell("sys.exit(1)"), nbformat.v4.new_code_cell("if x:\n    quit(True)")]
    assert exits.exit_calls(notebook) == [3, 4, 6]
    assert "cells 3, 4, 6 ignored while grading" in exits.exit_note(notebook)


def test_arrays_cross_the_wire_in_either_byte_order_and_keep_their_dimensions():
    import numpy as np
    for array in (np.arange(6, dtype=">f4").reshape(2, 3), np.array(2.5), np.array(7, dtype=">u2"),
                  np.arange(8, dtype=">i8")[::3], np.asfortranarray(np.arange(6.0).reshape(2, 3))):
        back = wire.decode(wire.loads(wire.dumps(wire.encode_array(array))), {})
        assert back.shape == array.shape and back.dtype == array.dtype.newbyteorder("=")
        assert np.array_equal(back, array) and back.dtype.isnative


# ----------------------------------------------------------------------------- the batch

def record_of(records: dict[str, nbformat.NotebookNode], data: bytes):
    digest = hashlib.sha256(data).hexdigest()
    found = [nb for nb in records.values() if nb.metadata.get("coursekit_grade", {}).get("sha256") == digest]
    return found[0] if len(found) == 1 else None


def check_verdicts(record) -> dict[str, str]:
    """``{task: "✓" or "✗"}`` as check() printed it in the executed notebook."""
    verdicts = {}
    for cell in record.cells:
        if cell.cell_type != "code":
            continue
        for match in CHECK_CALL.finditer(cell.source):
            text = "".join(output.get("text", "") for output in cell.outputs)
            mark = re.search(rf"([✓✗]) {re.escape(match.group('task'))} ", text)
            verdicts[match.group("task")] = mark.group(1) if mark else "no verdict"
    return verdicts


def grade_batch(folder: Path) -> dict:
    submissions = folder / "submissions"
    submissions.mkdir(parents=True)
    for name, data in NOTEBOOKS.items():
        (submissions / name).write_bytes(data)
    out = folder / "grades" / "grades.csv"
    out.parent.mkdir()
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.grade", *sorted(submissions.iterdir()),
                             "--out", out, "--jobs", "2", "--timeout", "300", "--check-timeout", "120"],
                            capture_output=True, text=True, cwd=ROOT, timeout=1500)
    seconds = time.monotonic() - start
    rows = {Path(row["file"]).name: row for row in csv.DictReader(open(out, newline=""))} if out.exists() else {}
    executed = out.with_name("grades-executed")
    records = {p.name: nbformat.read(p, as_version=4) for p in executed.glob("*.ipynb")} if executed.exists() else {}
    results = {}
    for name, data in NOTEBOOKS.items():
        record = record_of(records, data)
        results[name] = {"row": rows.get(name), "verdicts": check_verdicts(record) if record else None,
                         "last_output": "".join(o.get("text", "") for o in record.cells[-2].outputs) if record else ""}
    return {"returncode": result.returncode, "stdout": result.stdout[-3000:], "stderr": result.stderr[-3000:],
            "seconds": seconds, "results": results}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, request):
    """The batch's results, graded once even when pytest-xdist runs these tests in two workers."""
    if not hasattr(request.config, "workerinput"):   # not an xdist worker
        return grade_batch(tmp_path_factory.mktemp("fairness"))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "fairness-batch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / "fairness-batch.json"
        if not saved.exists():
            saved.write_text(json.dumps(grade_batch(shared / "fairness-batch")))
        return json.loads(saved.read_text())


def test_the_batch_grades_every_honest_notebook_and_exits_zero(batch):
    print(f"fairness batch: {len(NOTEBOOKS)} notebooks, {len(VARIANTS)} variants, {batch['seconds']:.0f} s")
    assert batch["returncode"] == 0, batch["stderr"]
    missing = [name for name, result in batch["results"].items() if result["row"] is None]
    assert not missing, (missing, batch["stdout"])
    assert len(VARIANTS) >= 15


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.notebook}-{v.task}")
def test_an_honest_variant_earns_full_points_and_check_agrees(batch, variant):
    result = batch["results"][variant.notebook]
    row = result["row"]
    assert row is not None, f"{variant.notebook} has no row"
    own = {other.task for other in VARIANTS if other.notebook == variant.notebook}   # tested on their own
    tasks = ([task for task in checks.tasks(variant.notebook[:2]) if task.id not in own] if variant.task == "*"
             else [checks.find(variant.task)])
    earned = {task.id: int(row[task.id] or 0) for task in tasks}
    assert earned == {task.id: task.points for task in tasks}, (variant.what, row["status"], row["reason"])
    assert row["status"] in ("ok", "errors"), (row["status"], row["reason"])
    assert result["verdicts"] is not None, "no executed notebook found for it"
    assert {task.id: result["verdicts"].get(task.id) for task in tasks} == {task.id: "✓" for task in tasks}, \
        variant.what


def test_exit_and_quit_are_ignored_and_the_reason_says_so(batch):
    for name in (NON_ASCII, "04_quit.ipynb"):
        result = batch["results"][name]
        assert result["row"]["status"] == "ok", result["row"]
        assert "exit()/quit() in cell" in result["row"]["reason"], result["row"]["reason"]
        assert exits.NOTE.strip() in result["last_output"]     # the kernel said so where it was called


def test_a_cell_that_fails_before_the_answers_is_reported_and_costs_nothing(batch):
    row = batch["results"]["07_nbformat3.ipynb"]["row"]
    assert row["status"] == "errors" and "ModuleNotFoundError" in row["reason"], row
