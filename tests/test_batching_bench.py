"""bench/notebook_times.py's report: what the README's memory table is made of (no kernel is run)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GB = 2 ** 30


def notebook_times():
    spec = importlib.util.spec_from_file_location("notebook_times", ROOT / "bench" / "notebook_times.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def cost(bench, profile: str, peak_gb: float, gpu_gb: float | None = None):
    cells = [bench.CellCost(1, "import sys", 2.0, int(0.5 * GB)),
             bench.CellCost(2, "heavy = work()", 9.0, int(peak_gb * GB), None if gpu_gb is None else int(gpu_gb * GB))]
    return bench.NotebookCost(profile, "notebooks/03_saliency.ipynb", 30.0, int(peak_gb * GB), 20.0, 5 * GB, cells)


def test_the_table_names_the_heaviest_cell_and_marks_a_lesson_over_its_budget():
    bench = notebook_times()
    rows = bench.markdown_rows([cost(bench, "smoke", 2.5), cost(bench, "quick", 6.5)]).splitlines()
    assert "peak GPU memory" not in rows[0]                 # no GPU was seen: no column for it
    smoke, quick = rows[2], rows[3]
    assert "| 2.5 GB |" in smoke and "over budget" not in smoke and "2: `heavy = work()`" in smoke
    assert "6.5 GB (over budget)" in quick                  # quick's budget is 6 GB
    assert "| 5.0 GB |" in smoke                            # the address space (VmPeak)


def test_a_gpu_peak_gets_its_column_and_a_json_run_reads_back(tmp_path):
    bench = notebook_times()
    measured = [cost(bench, "full", 4.0, gpu_gb=3.2)]
    saved = tmp_path / "full.json"
    saved.write_text(json.dumps([dataclasses.asdict(c) for c in measured]))
    loaded = bench.load(saved)
    assert loaded == measured
    rows = bench.markdown_rows(loaded).splitlines()
    assert "peak GPU memory" in rows[0] and "| 3.2 GB |" in rows[2]


def test_few_iterations_cuts_only_the_loops_and_its_rows_show_no_time(monkeypatch):
    """--few-iterations: the cell the kernel runs first cuts the training and ascent loops of the
    profile it runs in and keeps every size that sets memory; its rows carry no wall time (it is not
    the profile's) but are held to the profile's memory budget."""
    import dataclasses as dc

    from coursekit import env
    bench = notebook_times()
    monkeypatch.setenv("COURSEKIT_PROFILE", "full")
    monkeypatch.setattr(env, "PROFILES", dict(env.PROFILES))
    before = env.profile()
    exec(bench.FEW_ITERATIONS_CELL, {})
    after = env.profile()
    changed = {f.name for f in dc.fields(before) if getattr(before, f.name) != getattr(after, f.name)}
    assert changed == set(bench.FEW_ITERATIONS) - {k for k, v in bench.FEW_ITERATIONS.items() if getattr(before, k) == v}
    assert changed and all(getattr(after, name) <= getattr(before, name) for name in changed)
    for kept in ("explain_images", "ig_steps", "smoothgrad_samples", "curve_steps", "n_filters", "pattern_size",
                 "batch_memory_mb", "concept_set_size", "concept_runs", "finetune_per_class", "cue_conflict_images"):
        assert kept not in bench.FEW_ITERATIONS and getattr(after, kept) == getattr(before, kept)
    rows = bench.markdown_rows([cost(bench, "full (few iterations)", 11.0)]).splitlines()
    assert "loops cut" in rows[2] and "30 s" not in rows[2]
    assert "11.0 GB (over budget)" in rows[2]               # full's 10 GB
