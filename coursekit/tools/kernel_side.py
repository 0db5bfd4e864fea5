"""The kernel's side of grading: call a student's answer on the grader's inputs, send back plain data.

The grader (:mod:`coursekit.tools.remote`) asks a submission's kernel, one hidden execution per
request, to :func:`handle` a request: fetch the object a notebook defined under a name, or call
one (an answer, or a function an answer returned) on arguments it sends. The reply is plain data
(:mod:`coursekit.tools.wire`), published as one display message of type :data:`REPLY_MIME`.

Nothing here decides anything: it runs among the student's code, which can change or replace it.
The grader checks and converts every reply and compares it with its own reference, so a forged
reply can only make the student's answer look like another answer.

Functions the grader passes as arguments (a score function, an objective) are called back in the
grader through the kernel's input channel (:data:`CALLBACK_PROMPT`); when called on TensorFlow
tensors under a ``GradientTape`` they stay differentiable, the gradient coming from the grader too.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..checks.model_rule import grader_can_build
from . import wire

REPLY_MIME = "application/vnd.coursekit.reply+json"
CALLBACK_PROMPT = "\x00coursekit-callback\x00"
EXCHANGE = ".coursekit-exchange"   # folder, in the submission's working folder, for model files

_handles: dict[int, object] = {}
_models: dict[str, object] = {}


def handle(request_text: str) -> None:
    """Answer one request (JSON text: ``{"id", "op": "fetch" | "call", ...}``); publish the reply."""
    request = wire.loads(request_text)
    reply = {"id": request.get("id")}
    try:
        reply.update(_answer(request))
    except KeyboardInterrupt:
        reply.update(ok=False, ename="KeyboardInterrupt", evalue="interrupted by the grader")
    except BaseException as error:  # noqa: BLE001 - anything the student's code raises is the answer
        reply.update(ok=False, ename=type(error).__name__, evalue=_short(error))
    try:
        text = wire.dumps(reply)
    except Exception as error:  # noqa: BLE001 - the reply could not be written
        text = wire.dumps({"id": request.get("id"), "ok": False, "ename": "GraderEncodingError",
                           "evalue": _short(error)})
    _publish(text)


def _short(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ raises
        text = ""
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _publish(text: str) -> None:
    shell = _shell()
    kernel = getattr(shell, "kernel", None)
    content = {"data": {REPLY_MIME: text}, "metadata": {}, "transient": {}}
    kernel.session.send(kernel.iopub_socket, "display_data", content, parent=kernel.get_parent("shell"),
                        ident=b"display_data")


def _shell():
    from IPython import get_ipython
    return get_ipython()


def _answer(request: dict) -> dict:
    op = request.get("op")
    folder = Path(request.get("exchange") or EXCHANGE)
    if op == "fetch":
        namespace = _shell().user_ns
        name = request["name"]
        if name not in namespace:
            return {"ok": True, "missing": True}
        return {"ok": True, "value": encode(namespace[name], folder)}
    if op == "call":
        target = request["target"]
        if "handle" in target:
            function = _handles[int(target["handle"])]
        else:
            function = _shell().user_ns[target["name"]]
        args = [_decode(item, folder) for item in request.get("args", [])]
        kwargs = {key: _decode(item, folder) for key, item in request.get("kwargs", {}).items()}
        forbidden = [str(name) for name in request.get("forbidden", [])]
        return _call(function, args, kwargs, folder, forbidden)
    raise ValueError(f"unknown request {op!r}")


def _call(function, args: list, kwargs: dict, folder: Path, forbidden: list[str]) -> dict:
    """Call ``function``; its result, changed array arguments, gradients, and forbidden calls made."""
    from contextlib import nullcontext

    from ..checks.core import CallWatch
    with CallWatch(forbidden) if forbidden else nullcontext() as watch:
        reply = _call_watched(function, args, kwargs, folder)
    if forbidden and watch.used:
        reply["used"] = watch.used
    return reply


def _call_watched(function, args: list, kwargs: dict, folder: Path) -> dict:
    before = {i: arg.copy() for i, arg in enumerate(args) if isinstance(arg, np.ndarray)}
    tensors = [i for i, arg in enumerate(args) if _is_tensor(arg)]
    gradients = None
    if tensors:
        import tensorflow as tf
        with tf.GradientTape(persistent=True) as tape:
            for i in tensors:
                tape.watch(args[i])
            result = function(*args, **kwargs)
        if _is_tensor(result) and result.dtype.is_floating:
            try:
                found = tape.gradient(result, [args[i] for i in tensors])  # of the sum of result
                gradients = [None if g is None else wire.encode_array(np.asarray(g)) for g in found]
            except Exception:  # noqa: BLE001 - not differentiable: the grader sees no gradient
                gradients = [None] * len(tensors)
        del tape
    else:
        result = function(*args, **kwargs)
    same = next((i for i, arg in enumerate(args) if arg is result and not isinstance(arg, (bool, int, float, str))),
                None)
    reply = {"ok": True, "value": {"$": "argument", "index": same} if same is not None else encode(result, folder)}
    changed = {str(i): wire.encode_array(args[i]) for i, old in before.items()
               if args[i].shape != old.shape or not np.array_equal(args[i], old, equal_nan=True)}
    if changed:
        reply["changed"] = changed
    if gradients is not None:
        reply["gradients"] = dict(zip(map(str, tensors), gradients))
    return reply


def _is_tensor(value) -> bool:
    module = type(value).__module__ or ""
    return module.startswith(("tensorflow", "tf_keras")) and hasattr(value, "dtype") and hasattr(value, "shape")


def encode(value, folder: Path, depth: int = 0):
    """``value`` in the wire format; models go to ``folder`` as files, functions become handles."""
    if depth > wire.MAX_DEPTH:
        raise ValueError("the answer is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) else value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if np.isfinite(number) else {"$": "float", "value": str(number)}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"$": "list", "items": [encode(item, folder, depth + 1) for item in value.tolist()]}
        return wire.encode_array(value)
    if _is_tensor(value):
        return wire.encode_array(np.asarray(value), tensor=True)
    if isinstance(value, dict):
        return {"$": "dict", "items": [[str(key), encode(item, folder, depth + 1)] for key, item in value.items()]}
    if isinstance(value, (list, tuple, set, frozenset)):
        tag = "list" if isinstance(value, list) else "tuple" if isinstance(value, tuple) else "set"
        return {"$": tag, "items": [encode(item, folder, depth + 1) for item in value]}
    kind = _keras_kind(value)
    if kind == "model" and not grader_can_build(value):
        kind = "called here"   # a subclass, or Lambda layers: the grader calls it here (checks.model_rule)
    if kind == "model":
        folder.mkdir(parents=True, exist_ok=True)
        name = f"answer-{os.getpid()}-{len(_handles)}-{id(value)}.keras"
        value.save(folder / name)
        _handles[len(_handles)] = value
        return {"$": "keras_model", "file": name}
    if kind == "layer":
        return {"$": "keras_layer", "name": str(getattr(value, "name", "")), "type": type(value).__name__}
    if callable(value):
        number = len(_handles)
        _handles[number] = value
        tree = {"$": "function", "handle": number, "type": type(value).__name__}
        return {**tree, "model": True} if kind == "called here" else tree
    return {"$": "object", "type": type(value).__name__}


def _keras_kind(value) -> str | None:
    modules = [getattr(klass, "__module__", "") or "" for klass in type(value).__mro__]  # subclasses too
    if not any(module.startswith(("keras", "tf_keras", "tensorflow")) for module in modules):
        return None
    import keras
    if isinstance(value, keras.Model):
        return "model"
    if isinstance(value, keras.layers.Layer):
        return "layer"
    return None


def _decode(tree, folder: Path):
    """An argument from the grader: plain data, a model file to load, or a function to call back."""
    if isinstance(tree, dict):
        tag = tree.get("$")
        if tag == "array":
            array = wire.decode_array(tree)
            if tree.get("tensor"):
                import tensorflow as tf
                return tf.constant(array)
            return array
        if tag == "keras_model":
            return _load_model(folder / tree["file"])
        if tag == "callback":
            return _callback(int(tree["id"]), folder)
        if tag in ("list", "tuple", "set"):
            items = [_decode(item, folder) for item in tree["items"]]
            return {"list": list, "tuple": tuple, "set": set}[tag](items)
        if tag == "dict":
            return {key: _decode(item, folder) for key, item in tree["items"]}
        if tag == "float":
            return float(tree["value"])
    return tree


def _load_model(path: Path):
    key = str(path)
    if key not in _models:
        import keras

        from ..models import sequential_built_once  # the grader's model is built once: so is this copy
        with sequential_built_once():
            _models[key] = keras.models.load_model(path, compile=False, safe_mode=False)
    return _models[key]


def _ask_grader(request: dict):
    """Send ``request`` to the grader through the input channel; its reply, decoded."""
    kernel = getattr(_shell(), "kernel", None)
    text = kernel.raw_input(CALLBACK_PROMPT + wire.dumps(request))
    reply = wire.loads(text)
    if not reply.get("ok"):
        kind = {"ValueError": ValueError, "TypeError": TypeError}.get(reply.get("ename"), RuntimeError)
        raise kind(reply.get("message", "the grader's function failed"))
    return reply


def _callback(number: int, folder: Path):
    """A stand-in for the grader's function ``number``, differentiable on TensorFlow tensors."""
    def call_grader(*args):
        positions = [i for i, arg in enumerate(args) if _is_tensor(arg)]
        encoded = [encode(arg, folder) for arg in args]
        if not positions:
            return _value(_ask_grader({"op": "call", "id": number, "args": encoded}))
        import tensorflow as tf

        @tf.custom_gradient
        def differentiable(*tensors):
            value = _value(_ask_grader({"op": "call", "id": number, "args": encoded}))

            def gradient(upstream):
                reply = _ask_grader({"op": "vjp", "id": number, "args": encoded,
                                     "upstream": wire.encode_array(np.asarray(upstream))})
                found = reply.get("gradients", [])
                return [None if g is None else tf.constant(wire.decode_array(g)) for g in found]
            return tf.constant(value), gradient

        return differentiable(*[args[i] for i in positions])

    call_grader.__name__ = f"grader_function_{number}"
    return call_grader


def _value(reply: dict):
    tree = reply.get("value")
    if isinstance(tree, dict) and tree.get("$") == "array":
        return wire.decode_array(tree)
    return _decode(tree, Path(EXCHANGE))


# ----------------------------------------------------------------------------- output cap

NOTE = "\n[... more output dropped by the grader ...]\n"
_CAPPED = frozenset({"stream", "display_data", "execute_result", "update_display_data", "error"})


def cap_output(limit: int) -> None:
    """Send at most ``limit`` characters of output from this kernel (replies to the grader excepted).

    A courtesy to the grader's memory, installed before the notebook runs; the grader does not
    rely on it (it also drops output past its limit and over-large messages).
    """
    import sys
    shell = _shell()
    owners = (getattr(shell, "kernel", None), sys.stdout, sys.stderr,
              getattr(shell, "display_pub", None), getattr(shell, "displayhook", None))
    sessions = {id(s): s for s in (getattr(o, "session", None) for o in owners) if s is not None}
    left = [limit]

    def wrap(send):
        def capped_send(stream, msg_or_type, content=None, *args, **kwargs):
            if isinstance(msg_or_type, dict):
                msg_type, body = msg_or_type.get("msg_type"), msg_or_type.get("content")
            else:
                msg_type, body = msg_or_type, content
            data = body.get("data") if isinstance(body, dict) else None
            if msg_type in _CAPPED and isinstance(body, dict) and not (isinstance(data, dict) and REPLY_MIME in data):
                if left[0] < 0:
                    return None
                needed = _size(body)
                if needed > left[0]:
                    _shrink(msg_type, body, left[0])
                    left[0] = -1
                else:
                    left[0] -= needed
            return send(stream, msg_or_type, content, *args, **kwargs)
        return capped_send

    for session in sessions.values():
        session.send = wrap(session.send)


def _size(body: dict) -> int:
    if "text" in body:
        return len(str(body["text"]))
    if isinstance(body.get("data"), dict):
        return sum(len(v) if isinstance(v, str) else len(repr(v)) for v in body["data"].values())
    return len(str(body.get("evalue", ""))) + sum(len(str(line)) for line in body.get("traceback", []) or [])


def _shrink(msg_type: str, body: dict, left: int) -> None:
    if msg_type == "stream":
        body["text"] = str(body["text"])[:max(left, 0)] + NOTE
    elif msg_type == "error":
        body["evalue"], body["traceback"] = str(body.get("evalue", ""))[:1000], [NOTE]
    else:
        body["data"], body["metadata"] = {"text/plain": NOTE}, {}
