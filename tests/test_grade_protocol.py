"""The pieces of the grading protocol, without kernels: the plain-data format, the from-scratch
watch, the sandbox's command line. (The whole path, kernels included: test_grade*.py.)"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from coursekit.checks import core
from coursekit.tools import sandbox, wire


def test_wire_round_trips_plain_data_and_refuses_everything_else():
    value = {"a": [1, 2.5, None, True, "x"], "b": (np.arange(6, dtype="int16").reshape(2, 3),), "c": {"p", "q"}}
    tree = {"$": "dict", "items": [
        ["a", {"$": "list", "items": [1, 2.5, None, True, "x"]}],
        ["b", {"$": "tuple", "items": [wire.encode_array(value["b"][0])]}],
        ["c", {"$": "set", "items": ["p", "q"]}]]}
    back = wire.decode(wire.loads(wire.dumps(tree)), {})
    assert back["a"] == value["a"] and back["c"] == value["c"]
    assert back["b"][0].dtype == np.int16 and np.array_equal(back["b"][0], value["b"][0])
    for bad, why in [({"$": "array", "dtype": "object", "shape": [1], "data": ""}, "dtype"),
                     ({"$": "array", "dtype": "float64", "shape": [1000], "data": base64.b64encode(b"1234").decode()},
                      "shorter"),
                     ({"$": "pickle", "data": "gASVAAAAAAAAAAB9lC4="}, "unknown kind"),
                     ([1, 2], "unexpected list"),
                     ({"$": "dict", "items": [[1, 2]]}, "not a \\(string key")]:
        with pytest.raises(wire.WireError, match=why):
            wire.decode(bad, {})
    deep = 0
    for _ in range(wire.MAX_DEPTH + 5):
        deep = {"$": "list", "items": [deep]}
    with pytest.raises(wire.WireError, match="deep"):
        wire.decode(deep, {})


def test_objects_that_are_not_data_cross_only_as_their_hook_says():
    seen = []
    back = wire.decode({"$": "object", "type": "Anything"}, {"object": lambda tree: seen.append(tree) or "stand-in"})
    assert back == "stand-in" and seen == [{"$": "object", "type": "Anything"}]


def _with_task(from_scratch):
    from coursekit import metrics

    def run(spearman):
        a, b = np.arange(12.0).reshape(3, 4), np.arange(12.0)[::-1].reshape(3, 4)
        got = core.call(spearman, a, b, what="spearman(a, b)")
        if abs(float(got) - float(metrics.rank_correlation(a, b)[0])) > 1e-9:
            raise core.Hint("wrong")
    return core.Task("99.1", 3, "spearman", "test", run, from_scratch)


def test_a_from_scratch_task_catches_coursekits_function_however_imported_and_only_there():
    from coursekit import metrics
    from coursekit.metrics import rank_correlation as renamed

    def own(a, b):
        from scipy.stats import spearmanr
        return spearmanr(a.ravel(), b.ravel()).statistic

    strict = _with_task(("metrics.rank_correlation",))
    for answer in (lambda a, b: metrics.rank_correlation(a, b)[0], lambda a, b: renamed(a, b)[0]):
        outcome = core.evaluate(strict, answer)
        assert not outcome.passed and "coursekit.metrics.rank_correlation" in outcome.message
    assert core.evaluate(strict, own).passed                         # written by hand: full points
    assert core.evaluate(_with_task(()), lambda a, b: renamed(a, b)[0]).passed   # not a from-scratch task
    assert core.forbidden_now() == () and sys.getprofile() is None   # nothing left behind


def _spec(box, argv):
    """The launcher's spec in a sandbox's command: bubblewrap's options, its command, its cgroups."""
    command = box.command(argv)
    assert command[:4] == [sys.executable, "-I", "-S", str(sandbox.LAUNCHER)]
    return json.loads(command[-1])


def test_the_sandbox_command_isolates_and_limits_the_kernel(tmp_path):
    (tmp_path / "exchange").mkdir()
    box = sandbox.Sandbox(sandbox.Limits(1024, 30, 64), tmp_path, tmp_path / "exchange", hidden=(tmp_path / "subs",))
    try:
        spec = _spec(box, ["python", "-m", "ipykernel_launcher"])
    finally:
        box.close()
    args = [arg for arg in spec["args"] if isinstance(arg, str)]
    text = " ".join(args)
    inner = spec["command"][spec["command"].index(shutil.which("prlimit")):]
    assert inner[:3] == [shutil.which("prlimit"), f"--as={1024 * 1024 * 1024}", "--cpu=30"]
    assert inner[-3:] == ["python", "-m", "ipykernel_launcher"]
    assert ("--nproc=64" in inner) == (sandbox.process_limit() == "rlimit")
    assert bool(spec["cgroups"]) == (sandbox.process_limit() == "cgroup")
    for option in ("--die-with-parent", "--new-session", "--clearenv", "--tmpfs /tmp", "--symlink /tmp /var/tmp",
                   "--remount-ro /", f"--chdir {sandbox.WORKDIR}", f"{tmp_path / 'exchange'} {sandbox.EXCHANGE}"):
        assert option in text, option
    assert f"--ro-bind {tmp_path / 'exchange'}" in text and f"--bind {box.sockets} {box.sockets}" in text
    if sandbox.can_size_tmpfs():   # bubblewrap 0.8 and later: /tmp and /dev/shm are memory, and limited
        assert f"--size {sandbox.TMP_MB * 1024 * 1024} --tmpfs /tmp" in text
        assert f"--size {sandbox.SHM_MB * 1024 * 1024} --tmpfs /dev/shm" in text
    assert "--bind / " not in text and "--ro-bind / /" not in text    # no view of the whole disk
    project = Path(__file__).resolve().parents[1]                     # its solutions/ stay out of view
    binds = [args[i + 1] for i, arg in enumerate(args) if arg in ("--ro-bind", "--bind")]
    assert str(project) not in binds and str(project / "coursekit") in binds
    assert "/opt" not in binds and str(Path.cwd()) not in binds
    variables = {args[i + 1] for i, arg in enumerate(args) if arg == "--setenv"}
    assert variables <= set(sandbox.PASSED_VARIABLES) | {"HOME", "TMPDIR", "IPYTHONDIR", "MPLCONFIGDIR",
                                                         "PYDEVD_DISABLE_FILE_VALIDATION", "PATH",
                                                         "COURSEKIT_OFFLINE_CACHE", "COURSEKIT_TEXTURE_SHAPE_DIR",
                                                         "KERAS_HOME", "LANG", "MALLOC_ARENA_MAX",
                                                         "PYTHONPATH"}
    # glibc's malloc arenas (64 MB of address space each, up to 8 per core) capped: the per-process
    # address-space limit then does not depend on how many cores the grading machine has
    arenas = [args[i + 2] for i, arg in enumerate(args) if arg == "--setenv" and args[i + 1] == "MALLOC_ARENA_MAX"]
    assert arenas == [sandbox.MALLOC_ARENAS]


def test_only_the_installation_is_bound_not_other_folders_on_sys_path(tmp_path, monkeypatch):
    """Under ``python -m`` the grader's working folder is on sys.path: it held the instructor's roster."""
    (tmp_path / "roster.csv").write_text("kim,lee")
    monkeypatch.setattr(sys, "path", [str(tmp_path), "/opt", *sys.path])
    folders = sandbox.installation_folders()
    assert all(not tmp_path.is_relative_to(folder) and not folder.is_relative_to(tmp_path) for folder in folders)
    assert Path("/opt") not in folders and Path(sys.prefix).resolve() in folders


def test_without_bubblewrap_the_grader_says_so(monkeypatch):
    real_which = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    sandbox.unavailable.cache_clear()
    try:
        assert "bubblewrap (bwrap) is not installed" in sandbox.unavailable()
    finally:
        sandbox.unavailable.cache_clear()


def test_an_unsandboxed_run_says_so_in_the_summary_and_every_row(tmp_path, capsys):
    import csv

    import nbformat

    from coursekit.tools import grade
    notebooks = []
    for name in ("a.ipynb", "b.ipynb"):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell("true_statements = {'a', 'c', 'e'}")]
        notebooks.append(tmp_path / name)
        nbformat.write(notebook, notebooks[-1])
    out = tmp_path / "grades.csv"
    assert grade.main([*map(str, notebooks), "--out", str(out), "--lesson", "01", "--no-sandbox", "--quiet",
                       "--timeout", "60"]) == 0
    assert "NOT SANDBOXED" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out, newline="")))
    assert len(rows) == 2 and all(row["sandbox"].startswith("no sandbox") for row in rows)
    assert all(row["01.4"] == "2" for row in rows)


def test_a_check_that_passes_what_cannot_cross_is_a_check_error_not_the_students():
    from coursekit.tools import remote

    link = remote.KernelLink.__new__(remote.KernelLink)   # no kernel: encoding fails before any request
    link.callbacks, link.saved_models = {}, {}
    answer = remote.RemoteFunction(link, {"name": "answer"})

    def run(value):
        core.call(value, object(), what="answer(x)")
    outcome = core.evaluate(core.Task("99.2", 2, "answer", "test", run), answer)
    assert not outcome.passed and outcome.check_error and "cannot send a object" in outcome.message


def test_each_model_a_check_sends_reaches_the_kernel_as_its_own_file(tmp_path):
    """A check builds a model per case and drops the last one. Files were keyed by id(model), and a
    later model can get a dropped one's id: the kernel was then given the earlier model's file
    (check 08.2 failed a right answer so, about one grading in 25). The link now holds every model
    it sent until it closes, so no id it knows can be reused."""
    import gc
    import weakref

    import keras

    from coursekit.tools import remote
    link = remote.KernelLink.__new__(remote.KernelLink)   # no kernel: encoding only
    link.callbacks, link.saved_models, link.exchange = {}, {}, tmp_path
    link.private = tmp_path / "private"
    link.private.mkdir()
    link.exchange_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    sent, dropped = {}, []
    for case in range(6):
        inputs = keras.Input((4, 4, 3))
        backbone = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs), name=f"backbone_{case}")
        outer_inputs = keras.Input((4, 4, 3))
        model = keras.Model(outer_inputs, keras.layers.GlobalAveragePooling2D()(backbone(outer_inputs)),
                            name=f"case_{case}")
        sent[model.name] = link.encode(model)["file"]
        assert link.encode(model)["file"] == sent[model.name]   # the same model is saved once
        dropped.append(weakref.ref(model))
        del model, backbone
        gc.collect()
    assert all(reference() is not None for reference in dropped)
    assert len(set(sent.values())) == len(sent)
    for name, file in sent.items():
        assert keras.saving.load_model(tmp_path / file).name == name


def test_without_an_offline_cache_the_instructors_keras_cache_is_seen_read_only(tmp_path, monkeypatch):
    (tmp_path / ".keras" / "models").mkdir(parents=True)
    (tmp_path / "exchange").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("COURSEKIT_OFFLINE_CACHE", raising=False)
    box = sandbox.Sandbox(sandbox.Limits(), tmp_path, tmp_path / "exchange")
    try:
        args = _spec(box, ["python"])["args"]
    finally:
        box.close()
    at = args.index(str(tmp_path / ".keras"))
    assert args[at - 1] == "--ro-bind" and args[at + 1] == sandbox.INSTRUCTOR_KERAS
    # coursekit copies it into a writable KERAS_HOME (Keras ignores a cache it cannot write to)
    assert args[args.index("COURSEKIT_OFFLINE_CACHE") + 1] == sandbox.INSTRUCTOR_KERAS
    assert "KERAS_HOME" not in args


@pytest.mark.parametrize("outer_is_sequential", [False, True])
def test_a_model_sent_to_the_kernel_keeps_its_nested_sequentials_layer_outputs_on_the_path(tmp_path, outer_is_sequential):
    """The kernel loads the grader's model from a .keras file; Keras' own loading rebuilds a Sequential
    once per layer, which left ``layer.output`` a dead end (check 08.2 then failed the model answer)."""
    import keras
    import tensorflow as tf

    from coursekit.tools import kernel_side
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="first"),
                              keras.layers.Conv2D(2, 3, name="second")], name="backbone")
    head = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]
    if outer_is_sequential:
        model = keras.Sequential([keras.Input((8, 8, 3)), inner, *head])
    else:
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, head[1](head[0](inner(inputs))))
    model.save(tmp_path / "model.keras")
    original_from_config = keras.Sequential.from_config
    loaded = kernel_side._load_model(tmp_path / "model.keras")
    assert keras.Sequential.from_config == original_from_config   # the student's Keras is left as it was
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(loaded(images), model(images), atol=1e-6)
    backbone = loaded.get_layer("backbone")
    both = keras.Model(backbone.inputs, [backbone.get_layer("first").output, backbone.outputs[0]])
    with tf.GradientTape() as tape:
        maps, features = both(images)
        score = tf.reduce_sum(features)
    assert tape.gradient(score, maps) is not None


# ----------------------------------------------------------------------------- the grader's channel

def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_model_file_is_read_within_bounds_before_anything_inflates_it():
    """A 1.5 MB .keras file whose config.json inflates to 1.5 GB took the grader to 3.4 GB: each
    member's size is now checked before it is read, and the refusal costs no memory."""
    import tracemalloc

    from zip_bomb import zip_bomb

    from coursekit.tools import model_files
    bomb = zip_bomb(1_500_000_000)
    assert len(bomb) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(model_files.ModelRefused, match="inflates to more than"):
            model_files.read_config(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"refusing the bomb took {peak / 1e6:.0f} MB"
    many = _zip({f"assets/{i}": b"" for i in range(model_files.MAX_MEMBERS + 1)} | {"config.json": b"{}"})
    with pytest.raises(model_files.ModelRefused, match="members"):
        model_files.read_config(many)
    with pytest.raises(model_files.ModelRefused, match="not a zip"):
        model_files.read_config(b"PK not really")
    assert model_files.read_config(_zip({"config.json": b'{"class_name": "Sequential"}'})) == {"class_name": "Sequential"}


def test_a_model_is_built_in_a_throw_away_process_that_refuses_too_many_parameters(tmp_path):
    import keras

    from coursekit.tools import model_files
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    small.save(tmp_path / "small.keras")
    big = keras.Sequential([keras.Input((6000,)), keras.layers.Dense(5000)])   # 30 million parameters
    big.build()
    big.save(tmp_path / "big.keras")
    try:
        model_files.build_elsewhere((tmp_path / "small.keras").read_bytes())
        with pytest.raises(model_files.ModelRefused, match="30,005,000 parameters"):
            model_files.build_elsewhere((tmp_path / "big.keras").read_bytes())
        with pytest.raises(model_files.ModelRefused, match="does not load"):
            model_files.build_elsewhere(_zip({"config.json": b'{"class_name": "Nothing"}'}))
    finally:
        model_files.stop_builder()


def test_time_spent_waiting_for_another_submissions_checks_is_not_counted():
    """With --jobs 2 a correct answer beside a notebook that kept the grader busy lost its points: the
    wait for the shared Keras lock counted against its check time. The link's clock now stops."""
    import threading
    import time

    from coursekit.tools import remote
    link = remote.KernelLink.__new__(remote.KernelLink)   # no kernel: only the clock
    link.clock, link.deadline = remote.Clock(), time.monotonic() + 5
    holding, release = threading.Event(), threading.Event()

    def neighbour():
        with remote.CHECK_LOCK:
            holding.set()
            release.wait(10)

    other = threading.Thread(target=neighbour)
    other.start()
    holding.wait(10)
    before = link.deadline
    threading.Timer(1.0, release.set).start()
    with link.shared():
        pass
    other.join()
    assert link.deadline - before >= 0.9 and link.clock.paused >= 0.9
    with remote._released(remote.CHECK_LOCK, link):   # not held: nothing to let go of, nothing to wait for
        pass
    assert link.clock.paused < 2


# ----------------------------------------------------------------------------- from-scratch tasks

def test_the_from_scratch_view_replaces_the_function_by_a_stub_of_as_many_lines(tmp_path):
    from coursekit import _inputs, checks
    from coursekit.tools import scratch
    strict = [task for task in checks.tasks("04") if task.from_scratch]
    view = scratch.view(strict, tmp_path)
    replaced = dict((original, copy) for copy, original in view.files)
    source = Path(_inputs.__file__).resolve()
    stubbed = replaced[source].read_text()
    assert len(stubbed.splitlines()) == len(source.read_text().splitlines())
    assert "reversed(list(layer_paths(model).items()))" in source.read_text()
    assert "reversed(list(layer_paths(model).items()))" not in stubbed     # its body is gone
    namespace = {"__name__": "coursekit._inputs", "__package__": "coursekit"}
    exec(compile(stubbed, str(source), "exec"), namespace)  # noqa: S102 - our own file, to call the stub
    with pytest.raises(ValueError, match="write it yourself"):
        namespace["last_spatial_layer"](None)
    assert namespace["require_spatial"] is not None and namespace["layer_paths"] is not None  # the rest stays


def test_the_from_scratch_watch_counts_the_students_calls_not_those_inside_coursekits_helpers():
    """Task 04.3 answered with the public require_spatial in a try/except earned 0: require_spatial's
    error message calls last_spatial_layer. Only the student's own calls count now."""
    import keras

    from coursekit import _inputs, models
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Flatten(name="flat")(x))

    def by_trying(net):
        for layer in reversed(net.layers):
            try:
                _inputs.require_spatial(net, layer.name)
                return layer.name
            except ValueError:
                continue

    strict = ("models.last_spatial_layer",)
    with core.CallWatch(strict) as watch:
        assert by_trying(model) == "conv"
    assert watch.used == []
    with core.CallWatch(strict) as watch:
        models.last_spatial_layer(model)
    assert watch.used == ["coursekit.models.last_spatial_layer"]


def test_the_cells_to_run_again_end_with_the_answers_last_definition():
    import nbformat

    from coursekit.tools import scratch
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in
                      ["%matplotlib inline\nimport numpy as np", "def gradcam_layer(model):\n    return 'a'",
                       "gradcam_layer = lambda model: 'b'", "print(gradcam_layer(None))"]]
    assert scratch.cells_needed(notebook, {"gradcam_layer"}) == 3
    assert scratch.cells_needed(notebook, {"missing"}) is None


def test_the_re_check_runs_first_what_a_cell_defines_and_nothing_it_computes():
    from coursekit.tools import scratch
    cell = ("%matplotlib inline\nimport numpy as np\nfrom coursekit import models\nLAYERS = ('conv', 2)\n"
            "alias = np.mean\nnet = models.pretrained('mobilenet_v2')\nprint(net)\n"
            "def gradcam_layer(model):\n    return model.layers[-1].name\nfinder = lambda m: gradcam_layer(m)\n"
            "try:\n    import cv2\nexcept ImportError:\n    cv2 = None\nfor i in range(3):\n    print(i)")
    kept = scratch.definitions_only(cell)
    for line in ("import numpy as np", "from coursekit import models", "LAYERS = ('conv', 2)", "alias = np.mean",
                 "def gradcam_layer(model):", "finder = lambda m: gradcam_layer(m)", "import cv2"):
        assert line in kept, line
    for gone in ("pretrained", "print", "matplotlib", "range"):
        assert gone not in kept, gone
    assert scratch.definitions_only("x = (") == ""


def test_the_review_names_each_reach_for_a_forbidden_function_or_around_a_check():
    import nbformat

    from coursekit import checks
    from coursekit.tools import scratch
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in [
        "import inspect, sys, threading, os",
        "src = inspect.getsource(models.last_spatial_layer)", "sys.setprofile(None)", "threading.Thread(target=f)",
        "pid = os.fork()", "f = types.FunctionType(g.__code__, {})", "exec(src, ns)",
        "from coursekit._inputs import layer_paths, _is_container", "x = 1",
        'if "google.colab" in sys.modules:\n    pass', 'if "a" in sys.modules: sys.modules["coursekit.models"] = fake']]
    found = "\n".join(scratch.review(notebook, checks.tasks("04")))
    for what in ("names a function it must write", "reads or copies code", "profiler", "threads or other processes",
                 "code built at run time", "private helpers"):
        assert what in found, what
    assert "code cell 9" not in found and "code cell 10" not in found and "code cell 11: code built at run time" in found
    assert scratch.review(notebook, checks.tasks("01")) == []    # a lesson without from-scratch tasks


def test_the_review_finds_no_way_around_a_check_in_the_courses_own_solutions_and_exercises():
    """Every honest notebook of lessons 04, 07 and 09 was listed for 'code built at run time': its
    setup cell asks whether ``"google.colab" in sys.modules``."""
    import nbformat

    from coursekit import checks
    from coursekit.tools import scratch
    root = Path(__file__).resolve().parents[1]
    for path in sorted([*root.glob("solutions/[0-9][0-9]_*.ipynb"), *root.glob("exercises/[0-9][0-9]_*.ipynb")]):
        found = scratch.review(nbformat.read(path, as_version=4), checks.tasks(path.name[:2]))
        # lesson 07's given cells compare the student's function with coursekit's: they name it
        assert all("names a function it must write" in entry for entry in found), (path.name, found)


# ----------------------------------------------------------------------------- multiple choice

def test_a_key_file_is_made_from_the_keys_coursekit_holds_and_agrees_with_the_solutions(tmp_path):
    from coursekit import checks
    from coursekit.tools import keys
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "keys.json"
    made = keys.make(out, checks.lessons(), None)
    assert json.loads(out.read_text())["keys"] == made and (out.stat().st_mode & 0o077) == 0
    for task_id, letters in made.items():
        assert keys.letters_from_solutions(task_id, root / "solutions") == letters, task_id
    with pytest.raises(ValueError, match="inside the course"):
        keys.make(root / "keys.json", ["04"], None)


def test_keys_stripped_from_a_copy_of_the_course_leave_check_saying_recorded(tmp_path):
    from coursekit.checks import core as checks_core
    from coursekit.tools import keys
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "course"
    shutil.copytree(root / "coursekit" / "checks", copy / "coursekit" / "checks")
    changed = keys.strip(copy)
    assert changed and all("key=None" in path.read_text() for path in changed)
    assert not any(re.search(r"key=\"[0-9a-f]{64}\"", path.read_text()) for path in changed)
    task_id = "99.4"
    try:
        checks_core.choice_task(task_id, points=2, answer="true_statements", title="test", options="abcd",
                                key=None, hint="not yet")
        outcome = checks_core.evaluate(checks_core.TASKS[task_id], {"a", "c"})
        assert outcome.recorded and not outcome.passed and "well-formed and recorded" in outcome.message
        assert outcome.text().startswith("• 99.4 recorded") and "right" not in outcome.text().split(":")[0]
        assert not checks_core.evaluate(checks_core.TASKS[task_id], {"z"}).recorded   # not well-formed: a hint
        graded = checks_core.grade_choice(checks_core.TASKS[task_id], ["c", "a"], {"a", "c"})
        assert graded.passed and not checks_core.grade_choice(checks_core.TASKS[task_id], {"a"}, {"a", "c"}).passed
    finally:
        checks_core.TASKS.pop(task_id, None)
        checks_core.CHOICES.pop(task_id, None)


def test_the_grader_marks_multiple_choice_against_the_key_file_when_given(tmp_path, capsys):
    import csv

    import nbformat

    from coursekit.tools import grade
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("true_statements = {'a', 'c', 'e'}")]   # right by coursekit's key
    path = tmp_path / "a.ipynb"
    nbformat.write(notebook, path)
    key_file = tmp_path / "keys" / "keys.json"
    key_file.parent.mkdir()
    key_file.write_text(json.dumps({"format": grade.KEYS_FORMAT, "keys": {"01.4": ["b"]}}))

    def graded(*extra) -> str:
        out = tmp_path / "grades.csv"
        assert grade.main([str(path), "--out", str(out), "--lesson", "01", "--no-sandbox", "--quiet",
                           "--no-executed", "--timeout", "60", *extra]) == 0
        return next(csv.DictReader(open(out, newline="")))["01.4"]

    assert graded() == "2"                               # today's behaviour: coursekit's own key
    assert graded("--keys", str(key_file)) == "0"        # the instructor's key file decides
    assert "key file (1 key(s))" in capsys.readouterr().out
    original, choice = core.TASKS.pop("01.4"), core.CHOICES["01.4"]
    try:   # the course published without its keys (python -m coursekit.tools.keys strip)
        core.choice_task("01.4", points=original.points, answer=original.answer, title=original.title,
                         options=choice.options, key=None, hint=choice.hint)
        assert graded() == "0" and "not marked" in capsys.readouterr().out
        key_file.write_text(json.dumps({"format": grade.KEYS_FORMAT, "keys": {"01.4": ["a", "c", "e"]}}))
        assert graded("--keys", str(key_file)) == "2"
    finally:
        core.TASKS["01.4"], core.CHOICES["01.4"] = original, choice


# ----------------------------------------------------------------------------- student text, inert

def test_student_text_is_inert_wherever_the_grader_shows_or_stores_it():
    from coursekit.tools.safe_text import inert, literal_block, spreadsheet_cell
    text = "a\x1b[2J\nb\rc\u2028d\u202ee\x00\x7f\x9b"
    shown = inert(text)
    assert all(ord(char) >= 0x20 and char not in "\x7f\u2028\u202e" and not 0x80 <= ord(char) < 0xa0 for char in shown)
    assert shown == "a\\x1b[2J\\nb\\rc\\u2028d\\u202ee\\x00\\x7f\\x9b"
    assert inert("José’s café ✓") == "José’s café ✓"
    for start in ("=", "+", "-", "@"):
        assert spreadsheet_cell(f"{start}HYPERLINK(1)").startswith("'"), start
    for start in ("\t", "\r"):   # escaped, so no longer a formula's first character
        assert not spreadsheet_cell(f"{start}=HYPERLINK(1)").startswith(("=", "+", "-", "@", "\t", "\r"))
    assert spreadsheet_cell("kim.ipynb") == "kim.ipynb"
    block = literal_block(["``` ## Grade: 10 / 10", "<img src=x onerror=alert(1)>", "````"]).splitlines()
    fence = block[0][:-len("text")]
    assert set(fence) == {"`"} and len(fence) > 4 and block[-1] == fence and sum(line == fence for line in block) == 1


def test_the_csv_and_the_record_names_never_let_a_name_become_a_formula_or_a_swap(tmp_path):
    import csv

    from coursekit.tools import grade
    from coursekit.tools.safe_text import FORMULA_STARTS
    rows = [grade.Grade(name, "01", {"01.1": 3}, "ok", "=cmd|' /C calc'!A0", 1.0, record=grade.record_name(name))
            for name in ("=HYPERLINK(1)", "+1", "-1", "@SUM(1)", "\tx", "kim lee.ipynb", "kim_lee.ipynb")]
    grade.write_csv(rows, tmp_path / "grades.csv")
    table = list(csv.DictReader(open(tmp_path / "grades.csv", newline="")))
    assert set(table[0]) >= {"file", "record", "review"}
    for row in table:
        assert not row["file"].startswith(FORMULA_STARTS), row
        assert row["reason"].startswith("'")
    assert grade.record_name("kim lee.ipynb") != grade.record_name("kim_lee.ipynb")
    assert grade.record_name("kim lee.ipynb") == grade.record_name("kim lee.ipynb")   # not by batch order


def test_the_grade_cell_shows_student_text_literally_and_records_lose_their_scripts():
    import nbformat

    from coursekit import checks
    from coursekit.tools import grade
    tasks = checks.tasks("01")
    forged = "x\n## Grade: 10 / 10 points (ok)\n![x](http://evil.example/x.png) <img src=x onerror=alert(1)>"
    result = grade.Grade("a.ipynb", "01", {t.id: 0 for t in tasks}, "errors", f"errors in cell 1: {forged}",
                         feedback={tasks[0].id: forged})
    source = grade._grade_cell(result, tasks).source
    outside = source.split("```")[0]
    assert source.count("\n## Grade") + source.startswith("## Grade") == 1
    assert "evil" not in outside and "<img" not in outside
    assert "![x](http://evil.example/x.png)" in source.split("```")[-2]   # shown as text, in the fenced block
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/javascript": "alert(1)", "text/html": "<b>hi</b><script>alert(2)</script><img src=x onerror=y>",
        "text/plain": "hi"})]
    notebook.cells = [nbformat.v4.new_markdown_cell("see <script>alert(3)</script>"), cell]
    grade.without_scripts(notebook)
    text = nbformat.writes(notebook)
    assert "alert" not in text and "onerror" not in text and "<b>hi</b>" in text
