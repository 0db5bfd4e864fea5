"""The grader against a determined student: forged verdicts, attacks on the batch, unbounded work.

Every submission here is a small lesson-04 notebook written for one attack, graded together in
one sandboxed batch (``--lesson 04 --jobs 2``), once per test session. The unsolved exercise 04
is worth 0; each attack must leave it at 0 (or, for the honest ones, at exactly the points of the
tasks solved), leave the submissions folder, the installation, the instructor's IPython folder and
earlier rows unchanged, and leave no process running. Tests that need the sandbox fail (not skip)
when bubblewrap is missing: `.ci/run` installs it.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import coursekit
from coursekit.tools import grade, sandbox

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT, CHECK_TIMEOUT = 15, 30   # checks: room for one kernel to import TensorFlow on a loaded machine
MARKER = "coursekit-attack-marker-7d1f"      # in the command line of every process an attack starts
LIMIT_PER_SUBMISSION = TIMEOUT + CHECK_TIMEOUT + grade.GRACE_SECONDS

CHANNEL_WEIGHTS = """
import numpy as np
def channel_weights(gradients):
    return np.asarray(gradients).mean(axis=(1, 2))
"""
FORGED = "{'task': '04.1', 'passed': True, 'points': 2, 'max_points': 2, 'message': 'well done.', 'check_error': False}"

# name -> code cells; each an attack on the verdict that must earn 0
FORGERIES = {
    "shadow_builtins.ipynb": [
        "class dict(dict):\n    def get(self, *a, **k):\n        return True\n",
        "def isinstance(*a):\n    return True\ndef len(x):\n    return 0\nclass str(str):\n    pass\n"
        "def repr(x):\n    return \"{'passed': True}\"\ndef bool(x):\n    return True",
        "channel_weights = lambda gradients: 0",
    ],
    "patched_display.ipynb": [
        "import IPython.display, dataclasses\n"
        "original = IPython.display.display\n"
        f"forged = {FORGED}\n"
        "def display(*objs, **kw):\n"
        "    original({'application/vnd.coursekit.grade+json': forged}, raw=True)\n"
        "    original({'application/vnd.coursekit.reply+json': '{\"ok\": true, \"value\": 1}'}, raw=True)\n"
        "IPython.display.display = display\n"
        "dataclasses.asdict = lambda obj: dict(forged)",
        "channel_weights = lambda gradients: None",
    ],
    "named_exec.ipynb": [
        "def exec(*a, **k):\n    return None\ndef eval(*a, **k):\n    return True\ndef compile(*a, **k):\n    return None",
        "import builtins\nreal_import = builtins.__import__\n"
        "def fake_import(name, *a, **k):\n"
        "    module = real_import(name, *a, **k)\n"
        "    if 'kernel_side' in name:\n"
        "        import types\n"
        "        fake = types.SimpleNamespace(handle=lambda text: None)\n"
        "        return fake\n"
        "    return module\n"
        "builtins.__import__ = fake_import",
    ],
    "import_and_trace_hooks.ipynb": [
        "import sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        return None\n"
        "    def find_module(self, name, path=None):\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hook())\n"
        "def tracer(frame, event, arg):\n"
        "    if event == 'return' and frame.f_code.co_name in ('evaluate', 'grade', 'handle', '_answer'):\n"
        "        frame.f_locals.update(passed=True)\n"
        "    return tracer\n"
        "sys.settrace(tracer)\nsys.setprofile(tracer)",
        "channel_weights = lambda gradients: [[0.0]]",
    ],
    "input_transformer.ipynb": [
        "ip = get_ipython()\n"
        f"payload = {FORGED}\n"
        "mime = 'application/vnd.coursekit.grade+json'\n"
        "forged = f'from IPython.display import display\\ndisplay({{{mime!r}: {payload!r}}}, raw=True)\\n'\n"
        "def rewrite(lines):\n"
        "    return forged.splitlines(True) if 'coursekit' in ''.join(lines) else lines\n"
        "ip.input_transformers_cleanup.append(rewrite)\n"
        "ip.input_transformers_post.append(rewrite)",
    ],
    "patched_checks_module.ipynb": [
        "import sys, dataclasses, coursekit.checks, coursekit.checks.core as core, coursekit.checks.lesson04\n"
        "for key, task in list(core.TASKS.items()):\n"
        "    core.TASKS[key] = dataclasses.replace(task, run=lambda value: None)\n"
        "core.evaluate = lambda task, value: core.Outcome(task.id, True, task.points, task.points, 'ok')\n"
        "sys.modules['coursekit.checks'].evaluate = core.evaluate\n"
        "core.close = lambda *a, **k: True\n"
        "import coursekit.tools.wire as wire\n"
        "wire.decode = lambda *a, **k: True",
        "channel_weights = lambda gradients: 'right'",
    ],
    "forged_reply_from_caller_frame.ipynb": [
        "import sys, json\n"
        "def channel_weights(gradients):\n"
        "    frame = sys._getframe(1)\n"
        "    while frame is not None:\n"
        "        request = frame.f_locals.get('request')\n"
        "        if isinstance(request, dict) and 'id' in request:\n"
        "            kernel = get_ipython().kernel\n"
        "            forged = {'id': request['id'], 'ok': True, 'value': True, 'passed': True}\n"
        "            content = {'data': {'application/vnd.coursekit.reply+json': json.dumps(forged),\n"
        f"                                'application/vnd.coursekit.grade+json': {FORGED}}}, 'metadata': {{}}}}\n"
        "            kernel.session.send(kernel.iopub_socket, 'display_data', content, parent=kernel.get_parent('shell'))\n"
        "        frame = frame.f_back\n"
        "    return 0",
    ],
    "always_equal.ipynb": [
        "class Anything:\n"
        "    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n"
        "    def __array__(self, dtype=None, copy=None): raise TypeError('no')\n"
        "    shape = property(lambda self: (1,))\n"
        "def channel_weights(gradients):\n    return Anything()\n"
        "true_statements = Anything()",
    ],
    "payload_flood.ipynb": [   # 600 MB of would-be replies during the check: exempt from the kernel's cap
        "from IPython.display import display\n"
        "def channel_weights(gradients):\n"
        "    for _ in range(60):\n"
        "        display({'application/vnd.coursekit.reply+json': 'x' * 10_000_000}, raw=True)\n"
        "    return 0",
    ],
    "stack_walk_for_reference.ipynb": [
        "import inspect, numpy as np\n"
        "def channel_weights(gradients):\n"
        "    for info in inspect.stack():\n"
        "        for name in ('expected', 'reference', 'right'):\n"
        "            if name in info.frame.f_locals:\n"
        "                return info.frame.f_locals[name]\n"
        "    return np.zeros((len(gradients), gradients.shape[-1]))",
    ],
}

STARTUP = f"""
import os
folder = os.path.expanduser('~/.ipython/profile_default/startup')
os.makedirs(folder, exist_ok=True)
open(os.path.join(folder, '00-{MARKER}.py'), 'w').write({CHANNEL_WEIGHTS!r})
os.makedirs(os.path.expanduser('~/.keras'), exist_ok=True)
open(os.path.expanduser('~/.keras/keras.json'), 'w').write('{{"image_data_format": "channels_first"}}')
"""


def attack_cells(submissions: Path, out: Path) -> dict[str, list[str]]:
    """Attacks on the batch and the instructor; they know every path, as a student could guess them."""
    classmate, notes = submissions / "honest_dict.ipynb", submissions / "notes.txt"
    core = Path(coursekit.__file__).parent / "checks" / "core.py"
    daemon = (f"import time, sys\nwhile True:\n    try:\n        open({str(out)!r}, 'w').write('REWRITTEN BY A DAEMON')\n"
              f"    except OSError:\n        pass\n    time.sleep(0.2)  # {MARKER}")
    hog = f"while True: pass  # {MARKER}"
    return {
        "planted_startup.ipynb": [STARTUP],
        "after_startup.ipynb": ["x = 1"],   # graded after the planter: must earn 0 (no channel_weights)
        "classmates.ipynb": [
            "import os, glob\nseen = []\n"
            "for pid in os.listdir('/proc'):\n"
            "    try:\n        seen.append(open(f'/proc/{pid}/cmdline', 'rb').read())\n    except OSError:\n        pass\n"
            "print(len(seen), 'processes visible;', b'.ipynb' in b''.join(seen))\n"
            f"print(glob.glob({str(submissions)!r} + '/*'), glob.glob({str(ROOT / 'solutions')!r} + '/*'))",
            f"original = open({str(classmate)!r}, 'rb').read()\n"
            f"open({str(classmate)!r}, 'wb').write(b'{{}}')\nopen({str(classmate)!r}, 'wb').write(original)",
            f"os.remove({str(notes)!r})",
            f"open({str(core)!r}, 'a').write('\\nevaluate = lambda *a: None\\n')",
            "print(sorted(os.environ))",
        ],
        "daemon.ipynb": ["import subprocess, sys\n"
                         f"subprocess.Popen([sys.executable, '-c', {daemon!r}], start_new_session=True)\n"
                         f"subprocess.Popen(['sh', '-c', 'nohup {sys.executable} -c \"{hog}\" >/dev/null 2>&1 &'])\n"
                         "import time; time.sleep(1)"],
        "cpu_hogs.ipynb": ["import subprocess, sys\n"
                           f"for _ in range(4):\n    subprocess.Popen([sys.executable, '-c', {hog!r}], start_new_session=True)",
                           CHANNEL_WEIGHTS],
        "honest_after_hogs.ipynb": [CHANNEL_WEIGHTS],
        "sigint_storm.ipynb": [
            "import os, signal, threading, time\n"
            "def storm():\n"
            "    for _ in range(100):\n"
            "        for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:\n"
            "            if pid != os.getpid():\n"
            "                try:\n                    os.kill(pid, signal.SIGINT)\n                except OSError:\n"
            "                    pass\n"
            "        time.sleep(0.1)\n"
            "threading.Thread(target=storm, daemon=True).start()\n"
            "os.kill(os.getppid(), signal.SIGINT)",
            CHANNEL_WEIGHTS],
        "sigstop.ipynb": ["import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nos.kill(os.getpid(), signal.SIGSTOP)"],
        "calls_coursekit.ipynb": [CHANNEL_WEIGHTS, "import coursekit.models as helpers\n"
                                                   "gradcam_layer = lambda model: helpers.last_spatial_layer(model)"],
        "honest_dict.ipynb": ["dict = {'a': 1}\nlist = [1, 2]\nstr = 'text'\nset = None\n", CHANNEL_WEIGHTS],
        "own_timeout_name.ipynb": ["class Timeout(Exception):\n    pass\nclass CoursekitGraderTimeout(Exception):\n    pass",
                                   "raise Timeout('the notebook ran out of time')", CHANNEL_WEIGHTS],
        "errors_after_output.ipynb": ["for _ in range(7):\n    print('x' * 1_000_000)", "1 / 0", CHANNEL_WEIGHTS],
        "bad_payload.ipynb": ["from IPython.display import display\n"
                              "display({'application/vnd.coursekit.grade+json': ['not', 'a', 'dict']}, raw=True)\n"
                              "display({'application/json': 5}, raw=True)", CHANNEL_WEIGHTS],
    }


def write_notebook(path: Path, sources: list[str], lesson="04") -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if lesson is not None:
        notebook.metadata["coursekit"] = {"lesson": lesson}
    nbformat.write(notebook, path)


def folder_hashes(folder: Path) -> dict[str, str]:
    return {os.fsdecode(p.name): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def marked_processes() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if MARKER in line and str(os.getpid()) != pid:
            found.append(f"{pid}: {line[:120]}")
    return found


def huge_notebook(path: Path, cells: int) -> None:
    """A notebook of ``cells`` empty code cells, written without building it in memory as objects."""
    cell = b'{"cell_type":"code","execution_count":null,"metadata":{},"outputs":[],"source":""}'
    with open(path, "wb") as handle:
        handle.write(b'{"nbformat":4,"nbformat_minor":5,"metadata":{"coursekit":{"lesson":"04"}},"cells":[')
        handle.write(b",".join([cell] * cells))
        handle.write(b"]}")


def grade_attacks(folder: Path) -> dict:
    submissions = folder / "submissions"
    submissions.mkdir(parents=True)
    out = folder / "grades" / "grades.csv"
    for name, cells in FORGERIES.items():
        write_notebook(submissions / name, cells)
    for name, cells in attack_cells(submissions, out).items():
        write_notebook(submissions / name, cells)
    write_notebook(submissions / "zz_lesson01_solution.ipynb", [
        'true_statements = {"a", "c", "e"}',
        "def tile_position(channel, height, width, per_row, gap=1):\n"
        "    row, column = divmod(channel, per_row)\n    return row * (height + gap), column * (width + gap)"], lesson="01")
    write_notebook(submissions / "metadata_not_a_dict.ipynb", [CHANNEL_WEIGHTS], lesson=None)
    raw = json.loads((submissions / "metadata_not_a_dict.ipynb").read_text())
    raw["metadata"]["coursekit"] = ["04"]
    (submissions / "metadata_not_a_dict.ipynb").write_text(json.dumps(raw))
    write_notebook(submissions / ("x" * 250), [CHANNEL_WEIGHTS])
    write_notebook(Path(os.fsdecode(bytes(submissions / "caf") + b"\xe9.ipynb")), [CHANNEL_WEIGHTS])
    huge_notebook(submissions / "million_cells.ipynb", 1_700_000)
    (submissions / "notes.txt").write_text("the instructor's own note")
    install = folder_hashes(Path(coursekit.__file__).parent)
    ipython = Path.home() / ".ipython" / "profile_default" / "startup"
    startup_before = sorted(os.listdir(ipython)) if ipython.is_dir() else []
    keras_json = Path.home() / ".keras" / "keras.json"
    keras_before = keras_json.read_text() if keras_json.exists() else None
    before = folder_hashes(submissions)
    order = sorted(p for p in submissions.iterdir() if p.suffix != ".txt")
    # the planter runs before the notebook that would profit from its startup file
    order.remove(submissions / "after_startup.ipynb")
    order.insert(order.index(submissions / "planted_startup.ipynb") + 1, submissions / "after_startup.ipynb")
    command = [sys.executable, "-c", PEAK, *map(str, order), "--out", str(out), "--lesson", "04", "--jobs", "2",
               "--timeout", str(TIMEOUT), "--check-timeout", str(CHECK_TIMEOUT)]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, cwd=ROOT, timeout=900)
    seconds = time.monotonic() - start
    time.sleep(2)   # a daemon that survived would rewrite the CSV by now
    with open(out, newline="", encoding="utf-8") as handle:
        rows = {Path(row["file"]).name: row for row in csv.DictReader(handle)}
    return {"returncode": result.returncode, "stdout": result.stdout.decode(errors="replace"),
            "stderr": result.stderr.decode(errors="replace")[-3000:], "rows": rows, "seconds": seconds,
            "count": len(order), "before": before, "after": folder_hashes(submissions),
            "install_before": install,
            "install_after": folder_hashes(Path(coursekit.__file__).parent),
            "startup_before": startup_before,
            "startup_after": sorted(os.listdir(ipython)) if ipython.is_dir() else [],
            "left_running": marked_processes(), "keras_before": keras_before,
            "keras_after": keras_json.read_text() if keras_json.exists() else None,
            "out": str(out), "csv": out.read_text(encoding="utf-8")}


PEAK = ("import sys\nfrom coursekit.tools.grade import main\nstatus = main(sys.argv[1:])\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('PEAK_KB', peak)\nsys.exit(status)")


@pytest.fixture(scope="module")
def attacks(tmp_path_factory, worker_id):
    """The batch's results, computed once even when pytest-xdist runs these tests in two workers."""
    if sandbox.unavailable():
        pytest.fail(f"these tests need the sandbox: {sandbox.unavailable()} (apt-get install bubblewrap)")
    if worker_id == "master":
        return grade_attacks(tmp_path_factory.mktemp("attacks"))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "grade-attacks.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / "grade-attacks.json"
        if not saved.exists():
            saved.write_text(json.dumps(grade_attacks(shared / "grade-attacks")))
        return json.loads(saved.read_text())


def row(attacks, name):
    return attacks["rows"][name]


def test_the_batch_finishes_every_row_in_its_time_and_exits_zero(attacks):
    assert attacks["returncode"] == 0, attacks["stderr"]
    assert len(attacks["rows"]) == attacks["count"], sorted(attacks["rows"])
    for name, found in attacks["rows"].items():
        assert float(found["seconds"]) <= LIMIT_PER_SUBMISSION, (name, found["seconds"])
        assert found["sandbox"] == "bwrap", name
    assert "Sandbox: bubblewrap" in attacks["stdout"]


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_verdicts_earn_nothing(attacks, name):
    found = row(attacks, name)
    assert found["total"] == "0", found
    assert found["04.1"] == "0"


def test_an_honest_solution_naming_variables_like_builtins_gets_its_points(attacks):
    found = row(attacks, "honest_dict.ipynb")
    assert (found["status"], found["04.1"], found["total"]) == ("ok", "2", "2"), found


def test_nothing_leaks_from_one_submission_to_the_next_or_to_the_instructor(attacks):
    assert row(attacks, "after_startup.ipynb")["total"] == "0"
    assert attacks["startup_after"] == attacks["startup_before"]
    assert attacks["keras_after"] == attacks["keras_before"]
    assert row(attacks, "planted_startup.ipynb")["status"] == "ok"


def test_classmates_files_installation_and_environment_are_out_of_reach(attacks):
    assert attacks["after"] == attacks["before"]
    assert attacks["install_after"] == attacks["install_before"]
    found = row(attacks, "classmates.ipynb")
    assert found["status"] == "errors" and "cell 2" in found["reason"], found
    record = nbformat.read(Path(attacks["out"]).with_name("grades-executed") / "classmates.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for cell in record.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "False" in printed and "[] []" in printed     # no submission, nor the solutions, in view
    assert "HOME" in printed and "USER" not in printed and "COURSEKIT_PROFILE" in printed


def test_no_process_outlives_its_submission_and_the_csv_is_the_graders(attacks):
    assert attacks["left_running"] == []
    assert attacks["csv"].startswith("file,") and "REWRITTEN" not in attacks["csv"]
    assert row(attacks, "daemon.ipynb")["status"] == "ok"


def test_cpu_hogs_signal_storms_and_sigstop_harm_only_their_own_submission(attacks):
    assert row(attacks, "cpu_hogs.ipynb")["04.1"] == "2"
    assert row(attacks, "honest_after_hogs.ipynb")["04.1"] == "2"
    assert row(attacks, "sigint_storm.ipynb")["04.1"] == "2"
    stopped = row(attacks, "sigstop.ipynb")
    assert stopped["status"] == "timeout" and stopped["total"] == "0", stopped


def test_statuses_come_from_the_kernel_and_the_grader_not_from_names_or_output(attacks):
    named = row(attacks, "own_timeout_name.ipynb")
    assert named["status"] == "errors" and "Timeout" in named["reason"] and named["04.1"] == "2", named
    late = row(attacks, "errors_after_output.ipynb")
    assert late["status"] == "errors" and "ZeroDivisionError" in late["reason"], late
    assert "output truncated" in late["reason"] and late["04.1"] == "2"
    payload = row(attacks, "bad_payload.ipynb")
    assert payload["status"] == "ok" and payload["04.1"] == "2", payload


def test_odd_names_metadata_and_a_huge_notebook_get_a_row_each(attacks):
    names = attacks["rows"]
    assert row(attacks, "x" * 250)["04.1"] == "2"
    odd = [name for name in names if name.startswith("caf")]
    assert len(odd) == 1 and names[odd[0]]["04.1"] == "2", odd
    assert row(attacks, "metadata_not_a_dict.ipynb")["04.1"] == "2"
    huge = row(attacks, "million_cells.ipynb")
    assert huge["status"] == "invalid" and "MB" in huge["reason"] and float(huge["seconds"]) < 5, huge


def test_a_from_scratch_task_answered_with_coursekits_own_function_earns_nothing(attacks):
    found = row(attacks, "calls_coursekit.ipynb")
    assert (found["04.1"], found["04.3"], found["total"]) == ("2", "0", "2"), found
    record = nbformat.read(Path(attacks["out"]).with_name("grades-executed") / "calls_coursekit.ipynb", as_version=4)
    assert "calls coursekit's own `coursekit.models.last_spatial_layer`" in record.cells[-1].source


def test_the_lesson_comes_from_the_instructor(attacks):
    other = row(attacks, "zz_lesson01_solution.ipynb")
    assert other["status"] == "invalid" and other["total"] == "0" and "lesson mismatch" in other["reason"], other


def test_grader_memory_stays_bounded(attacks):
    peak_mb = int(attacks["stdout"].split("PEAK_KB")[-1]) / 1000
    # TensorFlow and coursekit take the grader to about 0.85 GB; keeping the 600 MB flood would pass 1.4 GB
    assert peak_mb < 1200, f"the grader peaked at {peak_mb:.0f} MB"


def test_the_instructors_ctrl_c_stops_the_batch_and_keeps_the_rows(tmp_path):
    if sandbox.unavailable():
        pytest.fail(f"this test needs the sandbox: {sandbox.unavailable()}")
    first, second, third = tmp_path / "a.ipynb", tmp_path / "b.ipynb", tmp_path / "c.ipynb"
    write_notebook(first, [CHANNEL_WEIGHTS])
    write_notebook(second, [f"while True:\n    pass  # {MARKER}"])
    write_notebook(third, [CHANNEL_WEIGHTS])
    out = tmp_path / "grades.csv"
    process = subprocess.Popen([sys.executable, "-m", "coursekit.tools.grade", first, second, third, "--out", out,
                                "--lesson", "04", "--timeout", "120"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.exists() and "a.ipynb" in out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)   # the second one is running
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 1, stderr[-2000:]
    rows = {Path(r["file"]).name: r for r in csv.DictReader(open(out, newline=""))}
    assert rows["a.ipynb"]["total"] == "2" and rows["b.ipynb"]["status"] == "interrupted"
    assert "c.ipynb" not in rows and "Interrupted" in stderr
    time.sleep(1)
    assert marked_processes() == []
