"""The instructor's grader, against honest and adversarial submissions.

Adversarial submissions are tiny notebooks written here, graded together in one batch (which also
shows that one bad submission does not stop the others); their bytes are hashed before and after.
"""
import csv
import fcntl
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit import checks
from coursekit.tools import grade, sandbox, submission

ROOT = Path(__file__).resolve().parents[1]
BATCH_TIMEOUT = 20  # no notebook of the batch imports TensorFlow while it runs

TILE_POSITION = """
def tile_position(channel, height, width, per_row, gap=1):
    row, column = divmod(channel, per_row)
    return row * (height + gap), column * (width + gap)
"""
RIGHT_CHOICE = 'true_statements = {"a", "c", "e"}'

SUBMISSIONS = {
    "invalid.ipynb": None,  # not JSON at all
    "loop.ipynb": [RIGHT_CHOICE, "while True:\n    pass", TILE_POSITION],
    "dies.ipynb": [RIGHT_CHOICE, "import os\nos._exit(1)", TILE_POSITION],
    "fake.ipynb": [
        "from coursekit.checks import check",
        "for task in ('01.1', '01.2', '01.3', '01.4'):\n"
        "    print(f'✓ {task} passed (3/3 points): well done.')",
        "def check(task_id, value):\n    print(f'✓ {task_id} passed (3/3 points): well done.')",
        # patch the kernel's own coursekit so that these answers would pass a check that used it
        "import dataclasses, sys, types\n"
        "import numpy as np\n"
        "import coursekit, coursekit.checks as c, coursekit.checks.core as core, coursekit.checks.lesson01\n"
        "core.choice_key = lambda task_id, letters: '6407ac06e7f1e87fa24041d5ff4ba91d2df740ad3051ac5c92b8bc85d82fdfc7'\n"
        "def fake_tiles(fmap, per_row=16, gap=1, normalize=True, gap_value=0.0):\n"
        "    grid = np.zeros((64, 64)); grid[0, 0] = 1.0; return grid\n"
        "features = types.ModuleType('coursekit.features')\n"
        "features.tile_channels = fake_tiles\n"
        "sys.modules['coursekit.features'] = coursekit.features = features\n"
        "for key, task in list(core.TASKS.items()):\n"
        "    core.TASKS[key] = dataclasses.replace(task, run=lambda value: None)\n"
        "c.evaluate = core.evaluate = lambda task, value: core.Outcome(task.id, True, task.points, task.points, 'ok')",
        "true_statements = {'b'}\ntile_position = lambda *args: (0, 0)\nreceptive_field = lambda stack: (1, 1, 0)",
        "check('01.3', tile_position)",
    ],
    "deleter.ipynb": [
        RIGHT_CHOICE,
        "import os, shutil\n"
        "for name in os.listdir('.'):\n"
        "    shutil.rmtree(name) if os.path.isdir(name) else os.remove(name)\n"
        "print(os.getcwd(), os.listdir('.'))",
    ],
    "one_task.ipynb": [TILE_POSITION, "true_statements = {'a', 'b'}", "def receptive_field(stack):\n    return 1, 1, 0"],
}


def write_notebook(path: Path, sources: list[str], lesson: str | None = "01") -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if lesson:
        notebook.metadata["coursekit"] = {"lesson": lesson}
    nbformat.write(notebook, path)


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_grader(*args, timeout=600, wrapper=None):
    command = [sys.executable, "-m", "coursekit.tools.grade", *map(str, args)]
    if wrapper:
        command = [sys.executable, "-c", wrapper, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {Path(row["file"]).name: row for row in csv.DictReader(handle)}


def grade_batch(folder: Path) -> dict:
    """Write the adversarial submissions into ``folder``, grade them in one run, hash before/after."""
    submissions = folder / "submissions"
    submissions.mkdir(parents=True)
    for name, sources in SUBMISSIONS.items():
        if sources is None:
            (submissions / name).write_text('{"cells": [ this is not JSON')
        else:
            write_notebook(submissions / name, sources)
    (submissions / "notes.txt").write_text("the instructor's own file")
    before = hashes(submissions)
    out = folder / "grades" / "grades.csv"
    result = run_grader(*sorted(submissions.glob("*.ipynb")), "--out", out, "--jobs", 2,
                        "--timeout", BATCH_TIMEOUT, "--check-timeout", 120)
    return {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr[-3000:],
            "rows": read_rows(out) if out.exists() else {}, "before": before, "after": hashes(submissions),
            "out": str(out), "folder": str(submissions)}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, request):
    """The batch's results, computed once even when pytest-xdist runs these tests in two workers."""
    if not hasattr(request.config, "workerinput"):   # not an xdist worker (also under -p no:xdist)
        return grade_batch(tmp_path_factory.mktemp("batch"))
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of a session
    with open(shared / "grade-batch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / "grade-batch.json"
        if not saved.exists():
            saved.write_text(json.dumps(grade_batch(shared / "grade-batch")))
        return json.loads(saved.read_text())


def read_record(out, row):
    """The executed copy of a row's submission, named in its record column."""
    return nbformat.read(Path(out).with_name(f"{Path(out).stem}-executed") / row["record"], as_version=4)


def points(row, task_id):
    return int(row[task_id])


def test_batch_grades_every_submission_and_exits_zero(batch):
    assert batch["returncode"] == 0, batch["stderr"]
    assert set(batch["rows"]) == set(SUBMISSIONS)
    assert "Graded 6 submission(s)" in batch["stdout"]
    header = next(csv.reader(open(batch["out"])))
    assert header == ["file", "01.1", "01.2", "01.3", "01.4", "total", "status", "reason", "seconds", "sandbox",
                      "record", "review"]


def test_submissions_are_byte_for_byte_unchanged(batch):
    assert batch["after"] == batch["before"]


def test_invalid_json_is_invalid_with_zero_points(batch):
    row = batch["rows"]["invalid.ipynb"]
    assert row["status"] == "invalid" and row["total"] == "0" and "JSON" in row["reason"]


def test_endless_loop_times_out_keeping_points_already_earned(batch):
    row = batch["rows"]["loop.ipynb"]
    assert row["status"] == "timeout" and "interrupted" in row["reason"]
    assert points(row, "01.4") == 2 and points(row, "01.3") == 0 and row["total"] == "2"
    assert float(row["seconds"]) <= BATCH_TIMEOUT + 30


def test_kernel_death_is_reported_and_what_ran_before_is_graded(batch):
    row = batch["rows"]["dies.ipynb"]
    assert row["status"] == "kernel-died" and "died in cell 2" in row["reason"]
    assert points(row, "01.4") == 2
    assert points(row, "01.3") == 0  # defined after the fatal cell, which is never run again


def test_printing_pass_text_redefining_check_or_patching_coursekit_earns_nothing(batch):
    row = batch["rows"]["fake.ipynb"]
    assert row["total"] == "0", row
    record = read_record(batch["out"], row)
    printed = "".join(o.get("text", "") for cell in record.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "01.3 passed" in printed  # the notebook did claim it passed
    assert record.cells[-1].source.startswith("## Grade: 0 / 10 points")


def test_deleting_files_only_touches_its_own_temporary_folder(batch):
    row = batch["rows"]["deleter.ipynb"]
    assert row["status"] == "ok" and row["total"] == "2"
    record = read_record(batch["out"], row)
    printed = record.cells[1].outputs[0]["text"]
    assert batch["folder"] not in printed and (sandbox.WORKDIR in printed or "coursekit-grade-" in printed)


def test_one_task_solved_earns_exactly_its_points(batch):
    row = batch["rows"]["one_task.ipynb"]
    assert row["status"] == "ok", row["reason"]
    expected = {task.id: (task.points if task.id == "01.3" else 0) for task in checks.tasks("01")}
    assert {task_id: points(row, task_id) for task_id in expected} == expected
    assert int(row["total"]) == checks.find("01.3").points


SOLUTION_TIMEOUT, SOLUTION_CHECK_TIMEOUT = 300, 120   # per notebook: generous for a loaded machine
STARTUP_SECONDS = 300   # the grader's imports, the sandbox's probe (at most 120 s) and the from-scratch views


def submission_bound(lesson: str, timeout: int, check_timeout: int) -> float:
    """The longest one submission may take, as the grader promises (module docstring of
    coursekit.tools.grade): its time and check time, three times over when a from-scratch answer
    is checked again, plus the grace for kernel start, stop and the record."""
    rechecked = any(task.from_scratch for task in checks.tasks(lesson))
    return (3 if rechecked else 1) * (timeout + check_timeout) + grade.GRACE_SECONDS


def batch_bound(notebooks: list[Path], timeout: int, check_timeout: int) -> float:
    """How long a batch may take before the grader has broken its promise: the sum of the
    submissions' bounds (time one waits for another's checks is not counted in its own, so with
    --jobs 2 only the sum is certain), plus its start. A time-out for the test, not a budget: on
    an idle machine the batch takes a small part of it."""
    lessons = [path.name.removeprefix("exercise_")[:2] for path in notebooks]
    return STARTUP_SECONDS + sum(submission_bound(lesson, timeout, check_timeout) for lesson in lessons)


def test_solutions_grade_at_full_marks_and_exercises_at_zero(tmp_path):
    solutions = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    exercise_copies = []
    for path in sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")):
        copy = tmp_path / f"exercise_{path.name}"  # distinct names in the table
        copy.write_bytes(path.read_bytes())
        exercise_copies.append(copy)
    out = tmp_path / "grades.csv"
    notebooks = [*solutions, *exercise_copies]
    result = run_grader(*notebooks, "--out", out, "--jobs", 2, "--timeout", SOLUTION_TIMEOUT,
                        "--check-timeout", SOLUTION_CHECK_TIMEOUT,
                        timeout=batch_bound(notebooks, SOLUTION_TIMEOUT, SOLUTION_CHECK_TIMEOUT))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_rows(out)
    for path in solutions:
        row, possible = rows[path.name], sum(t.points for t in checks.tasks(path.name[:2]))
        grade_cell = read_record(out, row).cells[-1].source
        assert (row["status"], int(row["total"])) == ("ok", possible), grade_cell  # its feedback says why
    for path in exercise_copies:
        row = rows[path.name]
        assert row["status"] == "errors" and row["total"] == "0", row  # unsolved cells raise; no crash
        # exactly the cells tagged raises-exception raised: the tags that let nbval run exercises/
        # (nbval accepts an error in a tagged cell but does not require one) are not too broad
        record = read_record(out, row)
        code = [cell for cell in record.cells if cell.cell_type == "code"]
        raised = [i for i, cell in enumerate(code) if any(o.output_type == "error" for o in cell.outputs)]
        tagged = [i for i, cell in enumerate(code) if "raises-exception" in cell.metadata.get("tags", [])]
        assert raised == tagged, path.name


# VmHWM: this process's peak resident memory (unlike ru_maxrss it does not inherit the parent's)
PEAK_MEMORY = ("import sys\nfrom coursekit.tools.grade import main\nstatus = main(sys.argv[1:])\n"
               "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
               "print('PEAK_KB', peak)\nsys.exit(status)")


def grader_peak_kb(notebook: Path, out: Path) -> int:
    result = run_grader(notebook, "--out", out, "--timeout", 120, wrapper=PEAK_MEMORY)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split("PEAK_KB")[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc (Linux)")
def test_100_mb_of_output_keeps_grader_memory_bounded_and_the_record_truncated(tmp_path):
    quiet, loud = tmp_path / "quiet.ipynb", tmp_path / "loud.ipynb"
    write_notebook(quiet, [RIGHT_CHOICE, "print('hello')"])
    write_notebook(loud, [RIGHT_CHOICE,
                          "for _ in range(50):\n    print('x' * 1_000_000)",   # 50 MB in many writes
                          "print('y' * 50_000_000)"])                          # 50 MB in one
    baseline = grader_peak_kb(quiet, tmp_path / "quiet.csv")
    peak = grader_peak_kb(loud, tmp_path / "loud.csv")
    print(f"grader peak memory: {baseline / 1000:.0f} MB quiet, {peak / 1000:.0f} MB for 100 MB of output")
    assert peak - baseline < 40_000, f"grader grew by {(peak - baseline) / 1000:.0f} MB for 100 MB of output"
    row = read_rows(tmp_path / "loud.csv")["loud.ipynb"]
    assert row["status"] == "ok" and row["total"] == "2" and "output truncated" in row["reason"]
    record = read_record(tmp_path / "loud.csv", row)
    kept = sum(len(o.get("text", "")) for cell in record.cells if cell.cell_type == "code" for o in cell.outputs)
    assert kept <= grade.OUTPUT_LIMIT + 1000
    assert "[output truncated" in nbformat.writes(record)


def test_grader_failure_is_the_only_nonzero_exit(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{")
    assert grade.main([str(bad), "--out", str(tmp_path / "g.csv"), "--no-executed"]) == 0  # a bad submission
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert grade.main([str(bad), "--out", str(blocker / "grades.csv"), "--no-executed"]) == 1
    assert "grader failed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        grade.main([str(bad), "--out", str(tmp_path / "g.csv"), "--jobs", "0"])
    assert usage.value.code == 2 and "--jobs" in capsys.readouterr().err


def test_csv_is_replaced_atomically_and_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "grades.csv"
    out.write_text("old")
    rows = [grade.Grade("a.ipynb", "01", {"01.1": 3, "01.2": 0}, "ok", "", 1.0),
            grade.Grade("b.ipynb", None, {}, "invalid", "no code cells", 0.0)]
    grade.write_csv(rows, out)
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]
    table = list(csv.reader(open(out)))
    assert table[0] == ["file", "01.1", "01.2", "total", "status", "reason", "seconds", "sandbox", "record", "review"]
    assert table[1][:4] == ["a.ipynb", "3", "0", "3"] and table[2][1:5] == ["", "", "0", "invalid"]


def test_lesson_is_read_from_metadata_then_check_calls_then_file_name():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell('check("03.1", x)\ncheck("03.2", y)')]
    assert grade.lesson_of(notebook, Path("alice.ipynb")) == "03"
    notebook.metadata["coursekit"] = {"lesson": "02"}
    assert grade.lesson_of(notebook, Path("alice.ipynb")) == "02"
    assert grade.lesson_of(notebook, Path("alice.ipynb"), forced="05") == "05"
    assert grade.lesson_of(nbformat.v4.new_notebook(), Path("04_saliency (1).ipynb")) == "04"
    assert grade.lesson_of(nbformat.v4.new_notebook(), Path("homework.ipynb")) is None


def test_grader_side_output_cap_keeps_the_first_characters_only():
    client = submission.CappedClient(nbformat.v4.new_notebook(), output_limit=100)
    client.clear_before_next_output = False  # set by nbclient when a cell starts
    outs = []
    for index in range(5):
        message = {"msg_type": "stream", "header": {"msg_type": "stream"}, "parent_header": {"msg_id": "m"},
                   "metadata": {}, "content": {"name": "stdout", "text": str(index) * 40}}
        client.output(outs, message, None, 0)
    assert "".join(o["text"] for o in outs) == "0" * 40 + "1" * 40 + "2" * 20
    assert client.truncated
