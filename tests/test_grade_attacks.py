"""The grader against a determined student: forged verdicts, attacks on the batch, unbounded work.

Every submission here is a small lesson-04 notebook written for one attack, graded together in
one sandboxed batch (``--lesson 04 --jobs 2``), once per test session, the way an instructor runs
it: from a folder of their own that holds a roster and an answer key, writing to
``results/grades.csv`` before ``results/`` exists. The unsolved exercise 04 is worth 0; each attack
must leave it at 0 (or, for the honest ones, at exactly the points of the tasks solved), leave the
submissions folder, the installation, the instructor's files and IPython folder and earlier rows
unchanged, and leave no process running. The sandbox's limits are tried apart, in one sandbox with
small limits and no kernel; the neighbour's time with the shared lock held by the test. Tests that
need the sandbox fail (not skip) when bubblewrap is missing: `.ci/run` installs it.
"""
from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from zip_bomb import zip_bomb

import coursekit
from coursekit.tools import grade, sandbox

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT, CHECK_TIMEOUT = 15, 60   # checks: room for a kernel to import TensorFlow on a loaded machine
MARKER = "coursekit-attack-marker-7d1f"      # in the command line of every process an attack starts
LIMIT_PER_SUBMISSION = 3 * (TIMEOUT + CHECK_TIMEOUT) + grade.GRACE_SECONDS   # a from-scratch re-check included
STARTUP_SECONDS = 300   # the grader's imports, the sandbox's probe (at most 120 s) and the from-scratch views

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

# task 04.3 (write last_spatial_layer yourself): each evasion gets coursekit's answer in a way the
# in-kernel watch missed; in the fresh kernel the grader checks it again in, the function is not there.
# (coursekit is imported inside the functions: TensorFlow loads while checking, not in the cells' time)
SCRATCH_EVASIONS = {
    "scratch_profiler_off.ipynb": "import sys\n"
                                  "def gradcam_layer(model):\n    from coursekit import models\n"
                                  "    sys.setprofile(None)\n    return models.last_spatial_layer(model)",
    "scratch_thread.ipynb": "import threading\n"
                            "def gradcam_layer(model):\n    from coursekit import models\n    found = []\n"
                            "    worker = threading.Thread(target=lambda: found.append(models.last_spatial_layer(model)))\n"
                            "    worker.start()\n    worker.join()\n    return found[0]",
    "scratch_fork.ipynb": "import os\n"
                          "def gradcam_layer(model):\n    from coursekit import models\n"
                          "    read, write = os.pipe()\n    pid = os.fork()\n"
                          "    if pid == 0:\n        try:\n"
                          "            os.write(write, models.last_spatial_layer(model).encode())\n"
                          "        finally:\n            os._exit(0)\n"
                          "    os.close(write)\n    name = os.read(read, 1000).decode()\n    os.waitpid(pid, 0)\n"
                          "    return name",
    "scratch_code_copy.ipynb": "import types\n"
                               "def gradcam_layer(model):\n    from coursekit import models\n"
                               "    original = models.last_spatial_layer\n"
                               "    code = original.__code__.replace(co_name='copied')\n"
                               "    return types.FunctionType(code, original.__globals__)(model)",
    "scratch_source_again.ipynb": "import inspect, textwrap\n"
                                  "def gradcam_layer(model):\n    from coursekit import _inputs\n"
                                  "    namespace = dict(vars(_inputs))\n"
                                  "    exec(textwrap.dedent(inspect.getsource(_inputs.last_spatial_layer)), namespace)\n"
                                  "    return namespace['last_spatial_layer'](model)",
    "scratch_patched_watch.ipynb": "import coursekit.checks.core as core\n"
                                   "core.CallWatch.__enter__ = lambda self: self\n"
                                   "core.CallWatch.__exit__ = lambda self, *exc: False\n"
                                   "def gradcam_layer(model):\n    from coursekit import models\n"
                                   "    return models.last_spatial_layer(model)",
    "scratch_private_helpers.ipynb": "def gradcam_layer(model):\n    from coursekit import _inputs\n"
                                     "    for path, layer in reversed(list(_inputs.layer_paths(model).items())):\n"
                                     "        if _inputs._is_container(layer):\n            continue\n"
                                     "        if _inputs.output_rank(layer) == 4 and tuple(layer.output.shape[1:3]) != (1, 1):\n"
                                     "            return _inputs.short_name(model, path)",
}
# the public require_spatial in a try/except: its error message calls last_spatial_layer inside coursekit
REQUIRE_SPATIAL = ("def gradcam_layer(model):\n    from coursekit import models\n"
                   "    for layer in reversed(model.layers):\n"
                   "        try:\n            found = models.require_spatial(model, layer.name)\n"
                   "        except ValueError:\n            continue\n"
                   "        if tuple(found.output.shape[1:3]) != (1, 1):\n            return layer.name")
# a .keras file of 1.5 MB whose config.json inflates to 1.5 GB (zip_bomb.py), sent as an answer's model
INFLATED_MODEL = """
import base64
import coursekit.tools.kernel_side as kernel_side
BOMB = {bomb!r}
real_encode = kernel_side.encode
def encode(value, folder, depth=0):
    if isinstance(value, str) and value == 'a model':
        return {{'$': 'keras_model', 'data': BOMB}}
    return real_encode(value, folder, depth)
kernel_side.encode = encode
channel_weights = lambda gradients: 'a model'
"""
FORGED_GRADE = "\n## Grade: 10 / 10 points (ok)\n![seen](https://example.com/x.png) <img src=x onerror=alert(1)> [here](https://example.com)"
TEXT_NAME = "evil\nGraded 40 submission(s): 40 ok\x1b[2J\x1b]52;c;ZXZpbA==\x07.ipynb"   # a forged line, escapes


STARTUP = f"""
import os
folder = os.path.expanduser('~/.ipython/profile_default/startup')
os.makedirs(folder, exist_ok=True)
open(os.path.join(folder, '00-{MARKER}.py'), 'w').write({CHANNEL_WEIGHTS!r})
os.makedirs(os.path.expanduser('~/.keras'), exist_ok=True)
open(os.path.expanduser('~/.keras/keras.json'), 'w').write('{{"image_data_format": "channels_first"}}')
"""


def attack_cells(submissions: Path, out: Path, instructor: Path, planted: Path) -> dict[str, list[str]]:
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
            "try:\n    os.kill(os.getppid(), signal.SIGINT)\nexcept OSError:\n    pass   # its parent is not its user's",
            CHANNEL_WEIGHTS],
        "sigstop.ipynb": ["import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGSTOP)\nexcept OSError:\n    pass\n"
                          "os.kill(os.getpid(), signal.SIGSTOP)"],
        "calls_coursekit.ipynb": [CHANNEL_WEIGHTS, "gradcam_layer = lambda model: __import__('coursekit.models', "
                                                   "fromlist=['x']).last_spatial_layer(model)"],
        "honest_dict.ipynb": ["dict = {'a': 1}\nlist = [1, 2]\nstr = 'text'\nset = None\n", CHANNEL_WEIGHTS],
        "own_timeout_name.ipynb": ["class Timeout(Exception):\n    pass\nclass CoursekitGraderTimeout(Exception):\n    pass",
                                   "raise Timeout('the notebook ran out of time')", CHANNEL_WEIGHTS],
        "errors_after_output.ipynb": ["for _ in range(7):\n    print('x' * 1_000_000)", "1 / 0", CHANNEL_WEIGHTS],
        "exchange_links.ipynb": [
            "import os\nseen = {}\n"
            f"for name in ('.coursekit-exchange', 'exchange'):\n    os.symlink({str(planted)!r}, name)\n"
            "open('grader-exchange', 'w').write('not a folder')\n"
            "for action, call in [('rename', lambda: os.rename('/run/coursekit/exchange', '/tmp/mine')),\n"
            "                     ('write', lambda: open('/run/coursekit/exchange/planted.keras', 'w')),\n"
            f"                     ('link', lambda: os.symlink({str(planted)!r}, '/run/coursekit/exchange/x.keras'))]:\n"
            "    try:\n        call()\n        seen[action] = 'done'\n"
            "    except OSError as error:\n        seen[action] = type(error).__name__\n"
            "print('exchange:', seen)", REQUIRE_SPATIAL],
        "inflated_model.ipynb": [INFLATED_MODEL.format(bomb=base64.b64encode(zip_bomb(1_500_000_000)).decode())],
        "instructor_files.ipynb": [
            "import os\nfound = {}\n"
            f"for path in ({str(instructor / 'roster.csv')!r}, {str(instructor / 'answers.txt')!r}):\n"
            "    try:\n        open(path).read()\n        found[path] = 'READ'\n"
            "    except OSError as error:\n        found[path] = type(error).__name__\n"
            "print('instructor files:', sorted(found.values()))\n"
            "print('opt:', os.path.exists('/opt') and sorted(os.listdir('/opt')))\n"
            "print('uid:', os.getuid(), os.geteuid())\n"
            "try:\n    open('/etc/shadow').read()\n    print('shadow: READ')\n"
            "except OSError as error:\n    print('shadow:', type(error).__name__)\n"
            "seen = open('/proc/1/cmdline', 'rb').read().decode() + open('/proc/self/mountinfo').read()\n"
            f"print('host paths:', [p for p in ({str(submissions)!r}, {str(instructor)!r}) if p in seen])",
            CHANNEL_WEIGHTS],
        "markdown_in_feedback.ipynb": [f"raise RuntimeError({FORGED_GRADE!r})",
                                       f"def channel_weights(gradients):\n    raise RuntimeError({FORGED_GRADE!r})"],
        "kim lee.ipynb": [CHANNEL_WEIGHTS],
        "kim_lee.ipynb": ["x = 1"],
        TEXT_NAME: [CHANNEL_WEIGHTS],
        # one evasion through the whole grader; each of them in a sandbox of the re-check below
        "scratch_thread.ipynb": [SCRATCH_EVASIONS["scratch_thread.ipynb"]],
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
    submissions, instructor, planted = folder / "submissions", folder / "instructor", folder / "planted"
    for made in (submissions, instructor, planted):
        made.mkdir(parents=True)
    (instructor / "roster.csv").write_text("kim,lee\n")
    (instructor / "answers.txt").write_text("04.4: the instructor's key\n")
    out = instructor / "results" / "grades.csv"       # results/ does not exist yet
    for name, cells in FORGERIES.items():
        write_notebook(submissions / name, cells)
    for name, cells in attack_cells(submissions, out, instructor, planted).items():
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
    keras_json = Path.home() / ".keras" / "keras.json"
    keras_before = keras_json.read_text() if keras_json.exists() else None
    before = folder_hashes(submissions)
    order = sorted(p for p in submissions.iterdir() if p.suffix != ".txt")
    # the planter runs before the notebook that would profit from its startup file
    order.remove(submissions / "after_startup.ipynb")
    order.insert(order.index(submissions / "planted_startup.ipynb") + 1, submissions / "after_startup.ipynb")
    # run as an instructor would: from their own folder (on sys.path under python -c), out in results/
    command = [sys.executable, "-c", PEAK, *map(str, order), "--out", "results/grades.csv", "--lesson", "04",
               "--jobs", "2", "--timeout", str(TIMEOUT), "--check-timeout", str(CHECK_TIMEOUT)]
    start = time.monotonic()
    # the test's time-out is the grader's own promise for the batch (each row within its limit, time
    # spent waiting for the other job's checks not counted in it): never reached unless it is broken
    result = subprocess.run(command, capture_output=True, cwd=instructor,
                            timeout=STARTUP_SECONDS + len(order) * LIMIT_PER_SUBMISSION,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.monotonic() - start
    time.sleep(2)   # a daemon that survived would rewrite the CSV by now
    with open(out, newline="", encoding="utf-8") as handle:
        rows = {Path(row["file"]).name: row for row in csv.DictReader(handle)}
    return {"returncode": result.returncode, "stdout": result.stdout.decode(errors="replace"),
            "stderr": result.stderr.decode(errors="replace")[-3000:], "rows": rows, "seconds": seconds,
            "count": len(order), "before": before, "after": folder_hashes(submissions),
            "install_before": install,
            "install_after": folder_hashes(Path(coursekit.__file__).parent),
            "planted_startup": [name for name in (os.listdir(ipython) if ipython.is_dir() else []) if MARKER in name],
            "planted": sorted(os.listdir(planted)), "instructor": sorted(os.listdir(instructor)),
            "submissions": str(submissions),
            "left_running": marked_processes(), "keras_before": keras_before,
            "keras_after": keras_json.read_text() if keras_json.exists() else None,
            "out": str(out), "csv": out.read_text(encoding="utf-8")}


PEAK = ("import os, sys\nsys.path.insert(0, os.getcwd())   # as python -m puts it there\n"
        "from coursekit.tools.grade import main\nstatus = main(sys.argv[1:])\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('PEAK_KB', peak)\nsys.exit(status)")


@pytest.fixture(scope="module")
def attacks(tmp_path_factory, request):
    """The batch's results, computed once even when pytest-xdist runs these tests in two workers."""
    return once(tmp_path_factory, request, "grade-attacks", grade_attacks)


def once(tmp_path_factory, request, name: str, compute):
    """``compute(folder)`` (plain data), run by one worker of a session and read by the others."""
    if sandbox.unavailable():
        pytest.fail(f"these tests need the sandbox: {sandbox.unavailable()} (apt-get install bubblewrap)")
    if not hasattr(request.config, "workerinput"):   # not an xdist worker (also under -p no:xdist)
        return compute(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / f"{name}.json"
        if not saved.exists():
            saved.write_text(json.dumps(compute(shared / name)))
        return json.loads(saved.read_text())


def row(attacks, name):
    return attacks["rows"][name]


def record(attacks, name):
    """The executed copy of submission ``name``, as the CSV's record column names it."""
    found = row(attacks, name)["record"]
    assert found, name
    return nbformat.read(Path(attacks["out"]).with_name("grades-executed") / found, as_version=4)


def printed(notebook) -> str:
    return "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


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
    assert attacks["planted_startup"] == []   # (the folder itself may not exist: a fresh machine)
    assert attacks["keras_after"] == attacks["keras_before"]
    assert row(attacks, "planted_startup.ipynb")["status"] == "ok"


def test_classmates_files_installation_and_environment_are_out_of_reach(attacks):
    assert attacks["after"] == attacks["before"]
    assert attacks["install_after"] == attacks["install_before"]
    found = row(attacks, "classmates.ipynb")
    assert found["status"] == "errors" and "cell 2" in found["reason"], found
    text = printed(record(attacks, "classmates.ipynb"))
    assert "False" in text and "[] []" in text     # no submission, nor the solutions, in view
    assert "HOME" in text and "USER" not in text and "COURSEKIT_PROFILE" in text


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
    feedback = record(attacks, "calls_coursekit.ipynb").cells[-1].source
    assert "calls coursekit's own `coursekit.models.last_spatial_layer`" in feedback


def test_the_lesson_comes_from_the_instructor(attacks):
    other = row(attacks, "zz_lesson01_solution.ipynb")
    assert other["status"] == "invalid" and other["total"] == "0" and "lesson mismatch" in other["reason"], other


def test_grader_memory_stays_bounded(attacks):
    """With the 600 MB reply flood and the .keras file that inflates to 1.5 GB (3.4 GB peak before)."""
    peak_mb = int(attacks["stdout"].split("PEAK_KB")[-1]) / 1000
    # TensorFlow and coursekit take the grader to about 0.85 GB; keeping the 600 MB flood would pass 1.4 GB
    assert peak_mb < 1200, f"the grader peaked at {peak_mb:.0f} MB"
    inflated = row(attacks, "inflated_model.ipynb")
    assert inflated["04.1"] == "0" and inflated["status"] == "ok", inflated
    assert "inflates to more than" in record(attacks, "inflated_model.ipynb").cells[-1].source


def test_the_grader_owns_its_exchange_and_the_notebook_cannot_redirect_it(attacks):
    """The exchange lay in the student's folder: a link there sent the grader's model files wherever
    it pointed, and a plain file in its place made the row a grader-error."""
    found = row(attacks, "exchange_links.ipynb")
    assert found["status"] == "ok" and found["04.3"] == "3", found   # the grader's models still arrive
    assert attacks["planted"] == []
    text = printed(record(attacks, "exchange_links.ipynb"))
    assert "'rename': 'OSError'" in text and "'write': 'OSError'" in text and "'link': 'OSError'" in text, text
    assert all(r["status"] != "grader-error" for r in attacks["rows"].values())


def test_the_sandbox_sees_no_instructor_file_no_opt_no_host_path_and_is_not_root(attacks):
    """Run from the instructor's folder (on sys.path under python -c), a notebook read the roster and
    the answer key there; /opt was bound whole; /proc listed the host's paths; as root it kept uid 0."""
    text = printed(record(attacks, "instructor_files.ipynb"))
    assert "instructor files: ['FileNotFoundError', 'FileNotFoundError']" in text, text
    assert "opt: False" in text and "host paths: []" in text, text
    uid = int(re.search(r"uid: (\d+) (\d+)", text).group(2))
    assert uid != 0 and "shadow: PermissionError" in text, text
    if os.geteuid() == 0:
        assert f"uid: {uid} {uid}" in text and uid == sandbox.sandbox_user()[0]
    assert attacks["instructor"] == ["answers.txt", "results", "roster.csv"]   # results/ made, nothing else


def test_a_way_around_the_from_scratch_watch_earns_nothing_through_the_grader(attacks):
    found = row(attacks, "scratch_thread.ipynb")
    assert found["04.3"] == "0" and "threads or other processes" in found["review"], found
    assert "does not exist" in record(attacks, "scratch_thread.ipynb").cells[-1].source


def test_a_from_scratch_answer_may_use_coursekits_public_helpers(attacks):
    """04.3 answered with the public require_spatial in a try/except got 0: its message calls
    last_spatial_layer inside coursekit. (The notebook that tries to redirect the exchange answers so.)"""
    honest = row(attacks, "exchange_links.ipynb")
    assert honest["04.3"] == "3" and honest["review"] == "", honest
    assert "checked again" not in record(attacks, "exchange_links.ipynb").cells[-1].source


def test_student_text_reaches_the_terminal_the_csv_and_the_grade_cell_inert(attacks):
    assert "\x1b" not in attacks["stdout"] and "\x07" not in attacks["stdout"]
    lines = attacks["stdout"].splitlines()
    assert not any(line.startswith("Graded 40") for line in lines)       # no forged line
    assert all(not line.startswith("[") or re.match(r"\[\d+/\d+\] ", line) for line in lines)
    assert "\x1b" not in attacks["csv"] and "\x07" not in attacks["csv"]
    name = next(n for n in attacks["rows"] if n.startswith("evil"))
    assert "\\nGraded 40" in name and "\\x1b[2J" in name and row(attacks, name)["04.1"] == "2"
    cell = record(attacks, "markdown_in_feedback.ipynb").cells[-1].source
    fence = re.search(r"^(`{3,})text$", cell, flags=re.M).group(1)
    markdown = cell.split(fence)[0]                    # what a renderer reads as Markdown
    assert markdown.count("## Grade") == 1 and "example.com" not in markdown and "<img" not in markdown
    assert "example.com" in cell.split(fence)[1]        # the student's text, shown as text


def test_two_names_made_plain_alike_keep_records_of_their_own(attacks):
    """kim lee.ipynb and kim_lee.ipynb got each other's executed notebooks."""
    spaced, underscored = row(attacks, "kim lee.ipynb"), row(attacks, "kim_lee.ipynb")
    assert spaced["record"] != underscored["record"]
    for name in ("kim lee.ipynb", "kim_lee.ipynb"):
        data = (Path(attacks["submissions"]) / name).read_bytes()
        assert record(attacks, name).metadata["coursekit_grade"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert (spaced["04.1"], underscored["04.1"]) == ("2", "0")


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


# ----------------------------------------------------------------------------- a sandbox's limits

LIMITS = sandbox.Limits(memory_mb=1200, cpu_seconds=60, processes=64, tmp_mb=64, shm_mb=16)
FILLER = r'''
import json, os, subprocess, sys, time
found = {}

def fill(folder):
    path, written = os.path.join(folder, "filler"), 0
    try:
        with open(path, "wb") as handle:
            for _ in range(400):
                handle.write(b"x" * 1_000_000)
                handle.flush()
                written += 1
    except OSError:
        pass
    os.remove(path)
    return written

found["work"], found["var_tmp"], found["dev_shm"] = fill("."), fill("/var/tmp"), fill("/dev/shm")
children = []
try:
    for _ in range(200):
        children.append(subprocess.Popen(["sleep", "60"]))
except OSError:
    pass
found["processes"] = len(children)
for child in children:
    child.kill()
    child.wait()
# three processes of 500 MB each: each within its address space, together over the sandbox's 1200 MB
hog = "import time\nblock = bytearray(500_000_000)\nfor i in range(0, len(block), 4096):\n    block[i] = 1\ntime.sleep(6)"
hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(3)]
found["hogs"] = sorted(hog.wait() for hog in hogs)
print(json.dumps(found), flush=True)
'''


def run_in_sandbox(folder: Path, script: str, limits: sandbox.Limits = LIMITS) -> subprocess.CompletedProcess:
    exchange = folder / "exchange"
    exchange.mkdir(exist_ok=True)
    box = sandbox.Sandbox(limits, folder, exchange)
    try:
        return subprocess.run(box.command([sys.executable, "-c", script]), capture_output=True, text=True, timeout=300)
    finally:
        box.close()


@pytest.fixture(scope="module")
def filled(tmp_path_factory, request):
    def compute(folder: Path) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        result = run_in_sandbox(folder, FILLER)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert lines, result.stderr[-2000:]
        return json.loads(lines[-1])
    return once(tmp_path_factory, request, "grade-limits", compute)


def test_the_working_folder_and_var_tmp_share_the_sandboxs_limited_tmp(filled):
    """3 GB went to the working folder, 1.5 GB to /var/tmp, outside /tmp's limit."""
    megabytes = LIMITS.tmp_mb * 2 ** 20 / 1e6     # written a million bytes at a time
    assert 0 < filled["work"] <= megabytes and 0 < filled["var_tmp"] <= megabytes, filled


def test_dev_shm_is_limited(filled):
    assert 0 < filled["dev_shm"] <= LIMITS.shm_mb * 2 ** 20 / 1e6, filled


def test_a_sandbox_cannot_start_more_than_its_processes(filled):
    """400 processes started."""
    assert filled["processes"] < LIMITS.processes, filled


def test_a_sandboxs_processes_together_stay_within_its_memory(filled):
    """Three processes of 1.2 GB each ran beside each other: each was within its address space."""
    assert filled["hogs"].count(0) < 3, filled       # at least one was stopped (killed, or out of memory)


def test_without_a_cgroup_the_graders_watch_kills_a_sandbox_over_its_memory(tmp_path, monkeypatch):
    import asyncio
    monkeypatch.setattr(sandbox, "cgroups", lambda: "no cgroups in this test")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    box = sandbox.Sandbox(LIMITS, tmp_path, exchange)
    hog = ("import subprocess, sys, time\n"
           "code = 'b = bytearray(500_000_000)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nimport time; time.sleep(30)'\n"
           "hogs = [subprocess.Popen([sys.executable, '-c', code]) for _ in range(3)]\n"
           "time.sleep(30)")

    async def run():
        process = await asyncio.create_subprocess_exec(*box.command([sys.executable, "-c", hog]))
        watch = asyncio.create_task(sandbox.watch_memory(box, process.pid))
        try:
            return await asyncio.wait_for(process.wait(), 60)
        finally:
            watch.cancel()

    try:
        start = time.monotonic()
        returncode = asyncio.run(run())
    finally:
        box.close()
    assert box.out_of_memory() and returncode != 0 and time.monotonic() - start < 25
    assert "watched by the grader" in sandbox.describe(LIMITS)


# ----------------------------------------------------------------------------- the from-scratch re-check's sandbox

EVASION_RUNNER = r'''
import json, sys
import keras
inputs = keras.Input((16, 16, 3))
x = keras.layers.Conv2D(3, 3, padding="same", name="conv_a")(inputs)
x = keras.layers.MaxPooling2D(2, name="pool_b")(x)
x = keras.layers.Conv2D(4, 3, padding="same", name="conv_c")(x)
x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap_d")(x)
model = keras.Model(inputs, keras.layers.Dense(2, name="dense_e")(keras.layers.Flatten(name="flat")(x)))
found = {}
for name, source in json.loads(sys.argv[1]).items():
    namespace = {"__name__": "__main__"}
    try:
        exec(source, namespace)
        found[name] = namespace["gradcam_layer"](model)
    except BaseException as error:
        found[name] = type(error).__name__
print("EVASIONS", json.dumps(found), flush=True)
'''


@pytest.fixture(scope="module")
def evasions(tmp_path_factory, request):
    """Each evasion's answer to a model whose right answer is conv_c, in a sandbox as the re-check's
    kernel sees coursekit, and in one with coursekit as it is (which shows each evasion works)."""
    return once(tmp_path_factory, request, "grade-evasions", run_evasions)


def run_evasions(folder: Path) -> dict:
    from coursekit import checks
    from coursekit.tools import scratch
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o711)
    view = scratch.view([task for task in checks.tasks("04") if task.from_scratch], folder / "view")
    found = {}
    for kind, seen in (("re-check", view), ("plain", None)):
        exchange = folder / f"exchange-{kind}"
        exchange.mkdir()
        box = sandbox.Sandbox(sandbox.Limits(cpu_seconds=300), folder, exchange, view=seen)
        try:
            result = subprocess.run(box.command([sys.executable, "-c", EVASION_RUNNER, json.dumps(SCRATCH_EVASIONS)]),
                                    capture_output=True, text=True, timeout=600)
        finally:
            box.close()
        lines = [line for line in result.stdout.splitlines() if line.startswith("EVASIONS ")]
        assert lines, result.stderr[-3000:]
        found[kind] = json.loads(lines[-1][len("EVASIONS "):])
    return found


@pytest.mark.parametrize("name", sorted(set(SCRATCH_EVASIONS) - {"scratch_private_helpers.ipynb"}))
def test_each_way_around_the_from_scratch_watch_finds_nothing_to_call_in_the_re_check(evasions, name):
    """Turning the profiler off, a thread, a forked child, a copied code object, the source run again
    and a patched watch each earned full points: the watch ran in the student's process."""
    assert evasions["plain"][name] == "conv_c", evasions["plain"]     # with coursekit as it is, it works
    assert evasions["re-check"][name] != "conv_c", evasions["re-check"]
    import nbformat

    from coursekit import checks
    from coursekit.tools import scratch
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(SCRATCH_EVASIONS[name])]
    assert len(scratch.review(notebook, checks.tasks("04"))) >= 2   # and a human is told where to look


def test_an_answer_rebuilt_from_coursekits_private_helpers_is_left_to_a_human(evasions):
    import nbformat

    from coursekit import checks
    from coursekit.tools import scratch
    assert evasions["re-check"]["scratch_private_helpers.ipynb"] == "conv_c"    # what a kernel cannot tell
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(SCRATCH_EVASIONS["scratch_private_helpers.ipynb"])]
    assert any("coursekit's private helpers" in found for found in scratch.review(notebook, checks.tasks("04")))


# ----------------------------------------------------------------------------- time, and a sandbox that cannot start

def test_time_spent_waiting_for_a_neighbours_grader_side_work_is_not_counted(tmp_path):
    """With --jobs 2 a correct solution beside a notebook that kept the grader busy got 5/10. Here the
    neighbour's grader-side work is a thread holding the shared lock 3 s at a time whenever it is
    free; the checks of a right answer, with 6 s to run, wait for it at each of their requests."""
    import threading

    from coursekit.tools import remote
    if sandbox.unavailable():
        pytest.fail(f"this test needs the sandbox: {sandbox.unavailable()}")
    honest = tmp_path / "honest.ipynb"
    write_notebook(honest, [CHANNEL_WEIGHTS])
    out = tmp_path / "grades.csv"
    stop = threading.Event()

    def neighbour():
        while not stop.is_set():
            with remote.CHECK_LOCK:
                stop.wait(3)
            time.sleep(0.001)   # lets the waiting checks in, then waits its turn again

    thread = threading.Thread(target=neighbour, daemon=True)
    thread.start()
    try:
        assert grade.main([str(honest), "--out", str(out), "--lesson", "04", "--no-executed", "--quiet",
                           "--timeout", "60", "--check-timeout", "6"]) == 0
    finally:
        stop.set()
        thread.join()
    found = next(csv.DictReader(open(out, newline="")))
    assert found["04.1"] == "2", found     # 0 on the grader that counted the waits


def test_a_sandbox_that_cannot_start_is_one_clear_error_for_the_batch(tmp_path, monkeypatch, capsys):
    if sandbox.unavailable():
        pytest.fail(f"this test needs the sandbox: {sandbox.unavailable()}")
    notebooks = []
    for name in ("a.ipynb", "b.ipynb"):
        notebooks.append(tmp_path / name)
        write_notebook(notebooks[-1], [CHANNEL_WEIGHTS])
    monkeypatch.setattr(sandbox, "installation_folders", lambda: [tmp_path / "no-such-installation"])
    out = tmp_path / "results" / "grades.csv"
    assert grade.main([*map(str, notebooks), "--out", str(out), "--lesson", "04", "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error.count("The sandbox cannot start") == 1 and "no-such-installation" in error, error
    assert not out.exists() and out.parent.is_dir()    # no row graded; the output folder made first
