"""The grader's side of a submission's kernel: answers as stand-ins, checks run in the grader.

Every task's check (``coursekit/checks/lessonNN.py``) runs here, in the grader's process, exactly
as ``check()`` runs it in a student's notebook; only the student's answer is a stand-in. A
function answer is a :class:`RemoteFunction`: calling it sends the arguments (numbers, strings,
numpy arrays, TensorFlow tensors, lists and dicts of them, Keras models as ``.keras`` files, the
check's own functions as call-backs) to the kernel, which calls the student's function there
(:mod:`coursekit.tools.kernel_side`) and sends back plain data only, read by
:func:`coursekit.tools.wire.decode`. A value answer is fetched as plain data. The cases, the
reference and the comparison stay in this process, where the student's code cannot reach them.

What a stand-in keeps of the student's call: changes it made to array arguments (copied back),
returning an argument itself (the grader's own object is returned), and for a TensorFlow result
computed from tensor arguments, its gradient (the gradient of the result's sum, computed in the
kernel). A Keras model the answer returns is loaded here from its ``.keras`` file, in Keras' safe
mode, when every layer in it is one of Keras' own; any other model (a subclass, ``Lambda`` layers)
stays in the kernel and is called there like a function (:mod:`coursekit.checks.model_rule`).
"""
from __future__ import annotations

import json
import keyword
import re
import threading
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np

from ..checks.core import MISSING, CheckBug, Hint, UsedForbidden, evaluate, forbidden_now
from ..checks.model_rule import foreign_classes
from . import wire
from .kernel_side import CALLBACK_PROMPT, EXCHANGE, REPLY_MIME

MAX_MESSAGE_BYTES = 256_000_000       # one message from the kernel; a larger one cuts the connection
MAX_MODEL_BYTES = 50_000_000
INTERRUPT_GRACE = 3.0                 # seconds a kernel has to stop after an interrupt
CHECK_LOCK = threading.RLock()        # Keras is not made for building models in several threads


class CheckTimeout(BaseException):
    """The checks of a submission ran out of time (a BaseException: no check may catch it)."""


class KernelGone(BaseException):
    """The kernel died or stopped answering while being checked."""


class StudentError(Exception):
    """An exception raised by the student's code in the kernel; its class is named like the student's."""


class ForeignObject:
    """Stands for an object of the student's that is not plain data: only its type name crosses."""

    def __repr__(self) -> str:
        return f"<a {type(self).__name__} from the notebook>"


def _safe_name(name, fallback: str) -> str:
    name = str(name)[:60]
    return name if name.isidentifier() and not keyword.iskeyword(name) else fallback


def _named(base: type, name, fallback: str) -> type:
    return type(_safe_name(name, fallback), (base,), {"__module__": "notebook"})


class KernelLink:
    """Requests to one submission's kernel, from a grader thread, until ``deadline`` (monotonic)."""

    def __init__(self, connection: dict, workdir: Path, seconds: float, interrupt, alive):
        """``seconds`` for all checks, counted from :func:`grade_tasks`' start; ``interrupt`` and
        ``alive`` are thread-safe functions of the kernel's manager."""
        import zmq
        from jupyter_client import BlockingKernelClient
        self.context = zmq.Context()
        self.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.client = BlockingKernelClient(context=self.context)
        self.client.load_connection_info(connection)
        self.client.start_channels()
        self.exchange = Path(workdir) / EXCHANGE
        self.exchange.mkdir(exist_ok=True)
        self.seconds, self.deadline = seconds, time.monotonic() + seconds
        self.interrupt, self.alive = interrupt, alive
        self.stopped = False
        self.callbacks: dict[int, object] = {}
        # id(model) -> (model, file). Holding the model keeps its id from being reused by a later
        # model of the same check, which the kernel would otherwise be given the old file for.
        self.saved_models: dict[int, tuple[object, str]] = {}

    def stop(self) -> None:
        """Stop at once (the instructor's Ctrl-C): the request in progress ends with CheckTimeout."""
        self.stopped = True

    def close(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.context.destroy(linger=0)

    # ------------------------------------------------------------------ one request

    def request(self, body: dict) -> dict:
        """Send ``body`` to :func:`kernel_side.handle`; its reply (a dict), or CheckTimeout / KernelGone."""
        body = {**body, "id": uuid.uuid4().hex, "exchange": EXCHANGE}
        code = f"__import__('coursekit.tools.kernel_side', fromlist=['handle']).handle({wire.dumps(body)!r})"
        msg_id = self.client.execute(code, silent=False, store_history=False, allow_stdin=True, stop_on_error=False)
        with _released(CHECK_LOCK):  # another submission's checks may use Keras meanwhile
            return self._wait(msg_id, body["id"])

    def _wait(self, msg_id: str, request_id: str) -> dict:
        import zmq
        poller = zmq.Poller()
        iopub, stdin = self.client.iopub_channel, self.client.stdin_channel
        poller.register(iopub.socket, zmq.POLLIN)
        poller.register(stdin.socket, zmq.POLLIN)
        reply, interrupted_at, quiet_since = None, None, time.monotonic()
        while True:
            now = time.monotonic()
            if self.stopped:
                raise CheckTimeout()
            if now >= self.deadline and interrupted_at is None:
                self.interrupt()
                interrupted_at = now
            if interrupted_at is not None and now >= interrupted_at + INTERRUPT_GRACE:
                raise CheckTimeout()
            events = dict(poller.poll(200))
            if not events:
                if now - quiet_since > 2 and not self.alive():
                    raise KernelGone()
                continue
            quiet_since = now
            if stdin.socket in events:
                message = stdin.get_msg(timeout=0)
                content = message.get("content")
                prompt = content.get("prompt", "") if isinstance(content, dict) else ""
                if isinstance(prompt, str) and prompt.startswith(CALLBACK_PROMPT):
                    with CHECK_LOCK:
                        answer = self._callback(prompt)
                else:
                    answer = ""
                self.client.input(answer)
            if iopub.socket in events:
                message = iopub.get_msg(timeout=0)
                parent, kind, content = message.get("parent_header"), message.get("msg_type"), message.get("content")
                if not isinstance(parent, dict) or parent.get("msg_id") != msg_id or not isinstance(content, dict):
                    continue   # someone else's message, or one the kernel's code made up
                data = content.get("data")
                if kind == "display_data" and isinstance(data, dict) and isinstance(data.get(REPLY_MIME), str):
                    try:
                        candidate = wire.loads(data[REPLY_MIME])
                    except wire.WireError as error:
                        candidate = {"ok": False, "unreadable": str(error)}
                    if isinstance(candidate, dict) and candidate.get("id") == request_id:
                        reply = candidate
                    elif not isinstance(candidate, dict):
                        reply = {"ok": False, "unreadable": "a reply that is not a dict"}
                elif kind == "status" and content.get("execution_state") == "idle":
                    if interrupted_at is not None:
                        raise CheckTimeout()
                    return reply if reply is not None else {"ok": False, "unreadable": "no reply"}

    # ------------------------------------------------------------------ answers

    def fetch(self, name: str):
        """The notebook's object called ``name``: plain data, a stand-in, or MISSING."""
        reply = self.request({"op": "fetch", "name": name})
        if reply.get("missing") is True:
            return MISSING
        if "unreadable" in reply:
            raise Hint(f"the grader could not read your `{name}` ({str(reply['unreadable'])[:200]}).")
        if reply.get("ok") is not True:
            raise Hint(f"reading your `{name}` raised {_safe_name(reply.get('ename'), 'an error')}.")
        try:
            return self.decode(reply.get("value"), [])
        except wire.WireError as error:
            raise Hint(f"the grader could not read your `{name}`: {error}.") from None

    def decode(self, tree, args: list):
        hooks = {
            "keras_model": self._load_model,
            "keras_layer": self._layer,
            "function": self._function,
            "object": lambda t: _named(ForeignObject, t.get("type"), "ForeignObject")(),
            "argument": lambda t: _argument(args, t),
        }
        return wire.decode(tree, hooks)

    def _load_model(self, tree: dict):
        name = str(tree.get("file", ""))
        path = self.exchange / name
        if not re.fullmatch(r"[\w.-]+\.keras", name) or path.is_symlink() or not path.is_file():
            raise wire.WireError("a Keras model whose file is missing")
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise wire.WireError(f"a Keras model larger than {MAX_MODEL_BYTES / 1e6:.0f} MB")
        data = path.read_bytes()
        copy = self.exchange.parent / f".grader-{uuid.uuid4().hex}.keras"
        try:
            import io
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                config = json.loads(archive.read("config.json"))
            foreign = _foreign_classes(config)
            if foreign:
                raise wire.WireError(f"a Keras model with layers the grader does not load ({', '.join(foreign[:3])}): "
                                     "build it from Keras' own layers")
            import keras
            copy.write_bytes(data)
            return keras.models.load_model(copy, compile=False, safe_mode=True)
        except wire.WireError:
            raise
        except Exception as error:  # a broken or hostile file: the answer cannot be read
            raise wire.WireError(f"a Keras model that does not load ({type(error).__name__})") from None
        finally:
            copy.unlink(missing_ok=True)

    def _function(self, tree: dict):
        """A stand-in for the student's function, or for a model the grader does not build
        (:mod:`coursekit.checks.model_rule`); its class is named like the student's object."""
        stand_in = _named(RemoteFunction, tree.get("type"), "function")(self, {"handle": _int(tree.get("handle"))},
                                                                        tree.get("type"))
        stand_in.remote_model = tree.get("model") is True
        return stand_in

    @staticmethod
    def _layer(tree: dict):
        import keras
        return _named(keras.layers.Layer, tree.get("type"), "Layer")(name=_safe_name(tree.get("name"), None))

    # ------------------------------------------------------------------ arguments and call-backs

    def encode(self, value):
        """An argument of the grader's in the wire format (models saved, functions registered)."""
        module = type(value).__module__ or ""
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            number = float(value)
            return number if np.isfinite(number) else {"$": "float", "value": str(number)}
        if isinstance(value, np.ndarray):
            return wire.encode_array(value)
        if module.startswith("tensorflow") and hasattr(value, "numpy"):
            return wire.encode_array(np.asarray(value), tensor=True)
        if isinstance(value, dict):
            return {"$": "dict", "items": [[str(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, (list, tuple, set, frozenset)):
            tag = "list" if isinstance(value, list) else "tuple" if isinstance(value, tuple) else "set"
            return {"$": tag, "items": [self.encode(item) for item in value]}
        if module.startswith("keras"):
            import keras
            if isinstance(value, keras.Model):
                if id(value) not in self.saved_models:
                    name = f"grader-{len(self.saved_models)}-{uuid.uuid4().hex[:8]}.keras"
                    try:
                        value.save(self.exchange / name)
                    except Exception as error:  # a layer Keras cannot save: the check must build another model
                        raise CheckBug(f"the grader cannot send the model {value.name!r} to the kernel "
                                       f"({type(error).__name__}: {str(error).strip()[:120]}); build the check's "
                                       "models from layers Keras can save") from None
                    self.saved_models[id(value)] = (value, name)
                return {"$": "keras_model", "file": self.saved_models[id(value)][1]}
        if callable(value):
            number = len(self.callbacks)
            self.callbacks[number] = value
            return {"$": "callback", "id": number}
        raise TypeError(f"the grader cannot send a {type(value).__name__} to the kernel")

    def _callback(self, prompt: str) -> str:
        """Run one of the check's functions on plain data the kernel sent; the reply as text."""
        try:
            request = wire.loads(prompt[len(CALLBACK_PROMPT):])
            function = self.callbacks[_int(request.get("id"))]
            args = [_as_tensor_if(wire.decode(item, {}), item) for item in request.get("args", [])]
            if request.get("op") == "vjp":
                import tensorflow as tf
                upstream = tf.constant(wire.decode_array(request["upstream"]))
                watched = [i for i, arg in enumerate(args) if tf.is_tensor(arg)]
                with tf.GradientTape() as tape:
                    for i in watched:
                        tape.watch(args[i])
                    value = function(*args)
                found = tape.gradient(value, [args[i] for i in watched], output_gradients=upstream)
                return wire.dumps({"ok": True, "gradients": [None if g is None else wire.encode_array(np.asarray(g))
                                                             for g in found]})
            value = function(*args)
            return wire.dumps({"ok": True, "value": self.encode(value)})
        except Exception as error:  # noqa: BLE001 - the kernel waits for an answer whatever happens
            return wire.dumps({"ok": False, "ename": type(error).__name__, "message": str(error)[:500]})


class _released:
    """``with _released(lock):`` lets go of ``lock`` (held by this thread, if at all) for the block."""

    def __init__(self, lock):
        self.lock, self.held = lock, False

    def __enter__(self):
        try:
            self.lock.release()
            self.held = True
        except RuntimeError:  # not held: nothing to let go of
            self.held = False

    def __exit__(self, *exc):
        if self.held:
            self.lock.acquire()
        return False


def _as_tensor_if(value, tree):
    if isinstance(tree, dict) and tree.get("tensor"):
        import tensorflow as tf
        return tf.constant(value)
    return value


def _int(value) -> int:
    if type(value) is not int:
        raise wire.WireError("a handle that is not a number")
    return value


def _argument(args: list, tree: dict):
    index = tree.get("index")
    if type(index) is not int or not 0 <= index < len(args):
        raise wire.WireError("a reference to an argument that does not exist")
    return args[index]


_foreign_classes = foreign_classes   # the rule shared with check() in the notebook: coursekit.checks.model_rule


class RemoteFunction:
    """The student's function, called in the kernel on the grader's arguments; see the module docstring."""

    remote_call = True   # core.call leaves the from-scratch watch to the kernel
    remote_model = False  # True: it stands for a Keras model the grader does not build (checks.model_rule)

    def __init__(self, link: KernelLink, target: dict, type_name=None):
        self._link, self._target, self._type = link, target, type_name
        self.__name__ = "answer"

    def __repr__(self) -> str:
        return "<the notebook's function>"

    def __call__(self, *args, **kwargs):
        link = self._link
        try:
            body = {"op": "call", "target": self._target, "args": [link.encode(a) for a in args],
                    "kwargs": {str(k): link.encode(v) for k, v in kwargs.items()}, "forbidden": list(forbidden_now())}
        except TypeError as error:  # the check passed something that cannot cross: a bug in the check
            raise CheckBug(str(error)) from None
        reply = link.request(body)
        if "unreadable" in reply:
            raise Hint(f"the grader could not read what your function returned ({str(reply['unreadable'])[:200]}).")
        if reply.get("ok") is not True:
            name = reply.get("ename")
            message = str(reply.get("evalue", ""))[:300]
            if name == "NotImplementedError":
                raise NotImplementedError(message)
            raise _named(StudentError, name, "Exception")(message)
        used = reply.get("used")
        if isinstance(used, list) and used and all(isinstance(name, str) for name in used):
            raise UsedForbidden([name[:100] for name in used[:5]])
        try:
            value = link.decode(reply.get("value"), list(args))
            _copy_back(args, reply.get("changed"))
            return _with_gradient(value, args, reply.get("gradients"))
        except wire.WireError as error:
            raise Hint(f"the grader could not read what your function returned: {error}.") from None


def _copy_back(args: tuple, changed) -> None:
    """Changes the student's function made to array arguments, made to the grader's arrays too."""
    if not changed:
        return
    if not isinstance(changed, dict):
        raise wire.WireError("changed arguments in an unknown form")
    for key, tree in changed.items():
        index = int(key) if str(key).isdigit() else -1
        if not 0 <= index < len(args) or not isinstance(args[index], np.ndarray):
            raise wire.WireError("a changed argument that was not an array")
        new = wire.decode_array(tree)
        if new.shape == args[index].shape and args[index].flags.writeable:
            np.copyto(args[index], new.astype(args[index].dtype, copy=False), casting="unsafe")


def _with_gradient(value, args: tuple, gradients):
    """A tensor result, linked to the grader's tensor arguments by the gradient the kernel computed."""
    if not gradients or not isinstance(value, np.ndarray):
        return value
    import tensorflow as tf
    if not isinstance(gradients, dict):
        raise wire.WireError("gradients in an unknown form")
    positions = sorted(int(k) for k in gradients if str(k).isdigit() and int(k) < len(args) and tf.is_tensor(args[int(k)]))
    found = [gradients[str(i)] for i in positions]
    arrays = [None if g is None else wire.decode_array(g) for g in found]
    for i, array in zip(positions, arrays):
        if array is not None and array.shape != tuple(args[i].shape):
            raise wire.WireError("a gradient of the wrong shape")

    @tf.custom_gradient
    def linked(*tensors):
        def gradient(upstream):  # the kernel's gradient of the sum: exact for tape.gradient(value)
            return [None if a is None else tf.constant(a, dtype=t.dtype) for a, t in zip(arrays, tensors)]
        return tf.constant(value), gradient

    return linked(*[args[i] for i in positions])


def grade_tasks(link: KernelLink, tasks: list) -> dict[str, dict]:
    """Each task's outcome as ``{"passed", "message", "check_error"}``; checks stop at the link's deadline."""
    outcomes = {}
    with CHECK_LOCK:
        link.deadline = time.monotonic() + link.seconds
        for task in tasks:
            try:
                try:
                    value = link.fetch(task.answer)
                except Hint as hint:
                    outcomes[task.id] = {"passed": False, "message": str(hint), "check_error": False}
                    continue
                outcome = evaluate(task, value)
                outcomes[task.id] = {"passed": outcome.passed, "message": outcome.message,
                                     "check_error": outcome.check_error}
            except CheckTimeout:
                outcomes[task.id] = _not_checked("checking it took too long")
                for later in tasks[len(outcomes):]:
                    outcomes.setdefault(later.id, _not_checked("the checks ran out of time"))
                break
            except Exception as error:  # noqa: BLE001 - a reply the grader could not make sense of
                outcomes[task.id] = _not_checked(f"the kernel's reply could not be read ({type(error).__name__})")
            except KernelGone:
                outcomes[task.id] = _not_checked("the kernel died")
                for later in tasks:
                    outcomes.setdefault(later.id, _not_checked("the kernel died"))
                break
    return outcomes


def _not_checked(why: str) -> dict:
    return {"passed": False, "message": f"not checked: {why}", "check_error": False}
