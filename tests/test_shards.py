"""A batch graded in parts (grade --shard K/N) and joined (grade merge): the split and the merge's
refusals on made-up tables, then one small batch of lesson 01 graded whole and in 3 parts."""
import csv
import json
import random
from pathlib import Path

import nbformat
import pytest

from coursekit.tools import grade, shards

TILE_POSITION = """
def tile_position(channel, height, width, per_row, gap=1):
    row, column = divmod(channel, per_row)
    return row * (height + gap), column * (width + gap)
"""


# ----------------------------------------------------------------------------- the split, no kernels

@pytest.mark.parametrize("text, expected", [("1/3", (1, 3)), ("3/3", (3, 3)), (" 2 / 5 ", (2, 5)), ("1/1", (1, 1))])
def test_a_spec_is_part_k_of_n(text, expected):
    assert shards.parse_spec(text) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "1/0", "0/0", "a/b", "-1/3", "1/3/5", ""])
def test_a_bad_spec_is_refused_naming_it(text, capsys, tmp_path):
    with pytest.raises(shards.ShardError, match="--shard"):
        shards.parse_spec(text)
    with pytest.raises(SystemExit) as usage:
        grade.main([str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "g.csv"), f"--shard={text}"])
    error = capsys.readouterr().err
    assert usage.value.code == 2 and "--shard" in error and "K/N" in error and not (tmp_path / "g.csv").exists()


def random_files(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"student_{i:03d}.ipynb"
        path.write_bytes(rng.randbytes(rng.randrange(1, 200)))
        paths.append(path)
    return paths


def test_the_split_is_a_partition_by_the_bytes_alone(tmp_path):
    paths = random_files(tmp_path / "a", 60)
    entries = shards.batch_entries(paths, 3)
    parts = [[e["file"] for e in entries if e["part"] == k] for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(map(str, paths))           # every file in exactly one part
    assert all(len(part) >= 10 for part in parts), [len(p) for p in parts]  # 60 hashes are not all alike
    # renamed, moved and given in another order: each file's part follows its bytes
    part_of_bytes = {path.read_bytes(): e["part"] for path, e in zip(paths, entries)}
    moved = []
    for i, path in enumerate(reversed(paths)):
        copy = tmp_path / "b" / f"renamed_{i}.ipynb"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        moved.append(copy)
    random.Random(1).shuffle(moved)
    assert {p.read_bytes(): e["part"] for p, e in zip(moved, shards.batch_entries(moved, 3))} == part_of_bytes
    assert shards.batch_entries([tmp_path / "absent.ipynb"], 3)[0]["part"] == 1   # unreadable: part 1


# ----------------------------------------------------------------------------- the merge, made-up tables

FIXED = ["total", "status", "reason", "seconds", "sandbox"]


def write_part(folder: Path, paths: list[Path], part: int, parts: int, rows: dict[str, dict],
               options: dict | None = None, name: str | None = None) -> Path:
    """A part's table as the grader writes it (its rows: file name -> cells) and its manifest."""
    entries = shards.batch_entries(paths, parts)
    mine = [e["file"] for e in entries if e["part"] == part]
    tasks = sorted({c for f in mine for c in rows[f] if c[:1].isdigit()}, key=shards.task_order)
    table = folder / (name or f"part-{part}.csv")
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *tasks, *FIXED])
        for f in mine:
            writer.writerow([f, *(rows[f].get(t, "") for t in tasks), *(rows[f].get(c, "") for c in FIXED)])
    manifest = {"format": shards.MANIFEST_FORMAT, "part": part, "parts": parts,
                "options": shards.grading_options(options or {"lesson": None}), "batch": entries}
    shards.manifest_path(table).write_text(json.dumps(manifest))
    return table


def made_up_batch(tmp_path: Path):
    """Six files of three parts, two of them lesson 01 (some tasks), one lesson 02, one invalid."""
    paths = random_files(tmp_path / "subs", 6, seed=3)[::-1]   # in an order that is not the names'
    rows = {}
    for i, path in enumerate(paths):
        name = str(path)
        if i % 3 == 0:
            rows[name] = {"01.1": "3", "01.2": "0", "01.10": "2", "total": "5", "status": "ok"}
        elif i % 3 == 1:
            rows[name] = {"02.1": "4", "total": "4", "status": "errors", "reason": "errors in cell 2, \"x\""}
        else:
            rows[name] = {"total": "0", "status": "invalid", "reason": "not a valid notebook"}
        rows[name].update(seconds=f"{i}.0", sandbox="bwrap")
    return paths, rows


def test_merge_is_the_one_run_table(tmp_path):
    paths, rows = made_up_batch(tmp_path)
    assert {e["part"] for e in shards.batch_entries(paths, 3)} == {1, 2, 3}
    tables = [write_part(tmp_path, paths, k, 3, rows) for k in (3, 1, 2)]
    merged = shards.merge(tables)
    # one run: every task column of the batch, in the grader's order (01.10 after 01.2), rows as given
    one_run = [["file", "01.1", "01.2", "01.10", "02.1", *FIXED]]
    one_run += [[str(p), *(rows[str(p)].get(c, "") for c in one_run[0][1:])] for p in paths]
    assert merged == one_run
    out = tmp_path / "all.csv"
    assert shards.main([*map(str, tables), "--out", str(out)]) == 0
    assert list(csv.reader(open(out, newline=""))) == one_run


def refusal(tables, capsys) -> str:
    assert shards.main([*map(str, tables), "--out", str(tables[0].parent / "merged.csv")]) == 2
    assert not (tables[0].parent / "merged.csv").exists()
    return capsys.readouterr().err


def test_merge_refuses_overlaps_gaps_and_foreign_tables(tmp_path, capsys):
    paths, rows = made_up_batch(tmp_path)
    one, two, three = (write_part(tmp_path, paths, k, 3, rows) for k in (1, 2, 3))
    assert "same table is given twice" in refusal([one, two, three, two], capsys)
    again = write_part(tmp_path, paths, 2, 3, rows, name="again.csv")
    assert "are the same part: their rows overlap" in refusal([one, two, three, again], capsys)
    assert "part(s) 3 of 3 missing" in refusal([one, two], capsys)
    assert "no such file" in refusal([one, two, tmp_path / "part-4.csv"], capsys)
    halves = write_part(tmp_path, paths, 1, 2, rows, name="half.csv")
    assert "split into a different number of parts" in refusal([one, two, three, halves], capsys)
    other_lesson = write_part(tmp_path, paths, 3, 3, rows, {"lesson": "02"}, name="l02.csv")
    assert "lesson: None and '02'" in refusal([one, two, other_lesson], capsys)


def test_merge_refuses_changed_files_interrupted_parts_and_other_columns(tmp_path, capsys):
    paths, rows = made_up_batch(tmp_path)
    one, two, three = (write_part(tmp_path, paths, k, 3, rows) for k in (1, 2, 3))
    shards.manifest_path(three).rename(tmp_path / "kept.json")
    assert "part-3.csv.shard.json is missing" in refusal([one, two, three], capsys)
    (tmp_path / "kept.json").rename(shards.manifest_path(three))
    # a student's file replaced between two parts' runs: the batches differ
    changed = json.loads(shards.manifest_path(two).read_text())
    changed["batch"][0]["sha256"] = "0" * 64
    shards.manifest_path(two).write_text(json.dumps(changed))
    assert "other bytes" in refusal([one, two, three], capsys)
    two = write_part(tmp_path, paths, 2, 3, rows)
    # a part whose run stopped early: a row missing, or a row marked interrupted
    lines = one.read_text().splitlines(keepends=True)
    one.write_text("".join(lines[:-1]))
    assert "grade that part again" in refusal([one, two, three], capsys)
    for path in paths:
        rows[str(path)]["status"] = "interrupted"
    one = write_part(tmp_path, paths, 1, 3, rows)
    assert "interrupted" in refusal([one, two, three], capsys)
    # a part graded by a grader with other columns, or other tasks for the same lesson
    for path in paths:
        rows[str(path)]["status"] = "ok"
    one = write_part(tmp_path, paths, 1, 3, rows)
    two.write_text(two.read_text().replace("sandbox", "machine", 1))
    assert "different graders" in refusal([one, two, three], capsys)
    two = write_part(tmp_path, paths, 2, 3, rows)
    lesson01 = {e["part"] for e in shards.batch_entries(paths, 3) if "01.1" in rows[e["file"]]}
    assert len(lesson01) == 2, lesson01     # two parts grade lesson 01: a grader with a task less writes one
    fewer = {f: {c: v for c, v in cells.items() if c != "01.10"} for f, cells in rows.items()}
    parts = [write_part(tmp_path, paths, k, 3, fewer if k == min(lesson01) else rows) for k in (1, 2, 3)]
    assert "lesson 01's task columns differ" in refusal(parts, capsys)
    # graded as lesson 01, yet a table holds lesson 02's tasks
    parts = [write_part(tmp_path, paths, k, 3, rows, {"lesson": "01"}) for k in (1, 2, 3)]
    assert "graded as lesson 01 but the tables hold lesson(s) 02's" in refusal(parts, capsys)


# ----------------------------------------------------------------------------- one real batch

def write_notebook(path: Path, sources: list[str], lesson: str = "01") -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["coursekit"] = {"lesson": lesson}
    nbformat.write(notebook, path)


def tiny_batch(folder: Path) -> list[Path]:
    """Three quick lesson 01 notebooks (different points) and two invalid files, in all 3 parts."""
    folder.mkdir()
    answers = {"right.ipynb": [TILE_POSITION, 'true_statements = {"a", "c", "e"}'],
               "wrong.ipynb": ["def tile_position(*args):\n    return 0, 0", "true_statements = {'b'}"],
               "half.ipynb": [TILE_POSITION]}
    for variant in range(200):   # a comment changes the bytes, hence the parts, not the grade
        paths = []
        for name, sources in answers.items():
            write_notebook(folder / name, [*sources, f"# {variant}"])
            paths.append(folder / name)
        (folder / "broken.ipynb").write_text('{"cells": [ not JSON')
        write_notebook(folder / "lesson02.ipynb", ["x = 1"], lesson="02")
        paths += [folder / "broken.ipynb", folder / "lesson02.ipynb"]
        parts = [e["part"] for e in shards.batch_entries(paths, 3)]
        if set(parts[:3]) == {1, 2, 3}:       # each part runs one kernel
            return paths[::-1]                # given in an order that is not the names'
    raise AssertionError("no variant puts the three notebooks in three parts")


def test_three_parts_merged_are_the_table_of_one_run(tmp_path, capsys):
    paths = tiny_batch(tmp_path / "subs")
    options = ["--lesson", "01", "--timeout", "60", "--check-timeout", "120", "--no-executed", "--quiet"]
    assert grade.main([*map(str, paths), "--out", str(tmp_path / "one.csv"), *options]) == 0
    tables = [tmp_path / f"part-{k}.csv" for k in (1, 2, 3)]
    for k, table in zip((2, 3, 1), tables[::-1]):   # the parts in any order
        assert grade.main([*map(str, paths), "--out", str(table), "--shard", f"{k}/3", *options]) == 0
    capsys.readouterr()
    assert grade.main(["merge", *map(str, tables), "--out", str(tmp_path / "all.csv")]) == 0
    one = list(csv.reader(open(tmp_path / "one.csv", newline="")))
    merged = list(csv.reader(open(tmp_path / "all.csv", newline="")))
    seconds = one[0].index("seconds")
    without_seconds = [[cell for i, cell in enumerate(row) if i != seconds] for row in one]
    assert [[c for i, c in enumerate(row) if i != seconds] for row in merged] == without_seconds
    assert [row[0] for row in one[1:]] == list(map(str, paths))
    totals = {Path(row[0]).name: int(row[one[0].index("total")]) for row in one[1:]}
    assert totals["right.ipynb"] > totals["half.ipynb"] > totals["wrong.ipynb"] == 0   # the parts did grade
    assert totals["broken.ipynb"] == totals["lesson02.ipynb"] == 0
