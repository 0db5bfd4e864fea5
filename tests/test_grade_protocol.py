"""The pieces of the grading protocol, without kernels: the plain-data format, the from-scratch
watch, the sandbox's command line. (The whole path, kernels included: test_grade*.py.)"""
from __future__ import annotations

import base64
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


def test_the_sandbox_command_isolates_and_limits_the_kernel(tmp_path):
    hidden = tmp_path / "submissions"
    argv = sandbox.command(["python", "-m", "ipykernel_launcher"], tmp_path / "work", tmp_path / "sockets",
                           [hidden], sandbox.Limits(1024, 30))
    text = " ".join(argv)
    assert argv[:3] == ["prlimit", f"--as={1024 * 1024 * 1024}", "--cpu=30"]
    for option in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--tmpfs /tmp"):
        assert option in text
    if sandbox.can_size_tmpfs():   # bubblewrap 0.8 and later: /tmp is memory, and limited
        assert f"--size {sandbox.TMP_MB * 1024 * 1024} --tmpfs /tmp" in text
    assert f"--bind {tmp_path / 'work'} {tmp_path / 'work'}" in text
    assert "--bind / " not in text and "--ro-bind / /" not in text    # no view of the whole disk
    project = Path(__file__).resolve().parents[1]                     # its solutions/ stay out of view
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("--ro-bind", "--bind")]
    assert str(project) not in binds and str(project / "coursekit") in binds
    assert argv[-3:] == ["python", "-m", "ipykernel_launcher"]
    variables = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--setenv"}
    assert variables <= set(sandbox.PASSED_VARIABLES) | {"HOME", "TMPDIR", "IPYTHONDIR", "MPLCONFIGDIR",
                                                         "PYDEVD_DISABLE_FILE_VALIDATION", "PATH",
                                                         "COURSEKIT_OFFLINE_CACHE", "COURSEKIT_TEXTURE_SHAPE_DIR",
                                                         "KERAS_HOME", "LANG",
                                                         "PYTHONPATH"}


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
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("COURSEKIT_OFFLINE_CACHE", raising=False)
    argv = sandbox.command(["python"], tmp_path / "work", tmp_path / "sockets", [], sandbox.Limits())
    at = argv.index(str(tmp_path / ".keras"))
    assert argv[at - 1] == "--ro-bind" and argv[at + 1] == f"{sandbox.HOME}/.keras"
    assert argv[argv.index("KERAS_HOME") + 1] == f"{sandbox.HOME}/.keras"


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
