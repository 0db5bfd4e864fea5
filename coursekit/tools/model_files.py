"""Keras models that reach the grader from a student's kernel: read within bounds, built elsewhere first.

A model an answer returns crosses as the bytes of its ``.keras`` file (a zip archive). Before
Keras sees them in the grader's process:

1. :func:`read_config` reads the archive within bounds: at most :data:`MAX_MODEL_BYTES`, at most
   :data:`MAX_MEMBERS` members (counted from the archive's last record, before the member list
   is parsed), each member's inflated size checked before it is read (a zip member never inflates
   past the size it declares: Python's zipfile stops there and fails the checksum), at most
   :data:`MAX_INFLATED_BYTES` in all and :data:`MAX_CONFIG_BYTES` of configuration;
2. :func:`build_elsewhere` builds the model in a throw-away process (one per batch, restarted
   after any failure) with its own memory limit and a time limit, and refuses one with more than
   :data:`MAX_LAYERS` layers or :data:`MAX_PARAMETERS` parameters.

Only then does the grader load it itself, in Keras' safe mode. A model that fails any of these is
refused with :class:`ModelRefused` (the submission's error, never the grader's).
"""
from __future__ import annotations

import io
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import nullcontext

MAX_MODEL_BYTES = 50_000_000       # the .keras file
MAX_INFLATED_BYTES = 120_000_000   # its members together, inflated
MAX_CONFIG_BYTES = 5_000_000       # config.json and metadata.json, inflated
MAX_MEMBERS = 64
MAX_LAYERS = 1000                  # counting the layers of nested models
MAX_PARAMETERS = 25_000_000        # 100 MB of float32 weights
BUILD_SECONDS = 30.0
BUILDER_MEMORY_MB = 8192           # address space of the process that builds it (TensorFlow reserves ~3 GB)


class ModelRefused(ValueError):
    """A model file the grader does not load; the message says why, for the student."""


def _member_count(data: bytes) -> int:
    """The number of members an archive declares in its end record (``MAX_MEMBERS + 1`` for ZIP64)."""
    tail = data[-(65536 + 22):]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ModelRefused("a Keras model file that is not a zip archive")
    entries, = struct.unpack("<H", tail[at + 10:at + 12])
    return MAX_MEMBERS + 1 if entries == 0xFFFF else entries


def read_config(data: bytes) -> dict:
    """The model configuration in the ``.keras`` file ``data``, read within the module's bounds."""
    if len(data) > MAX_MODEL_BYTES:
        raise ModelRefused(f"a Keras model file larger than {MAX_MODEL_BYTES / 1e6:.0f} MB")
    if _member_count(data) > MAX_MEMBERS:
        raise ModelRefused(f"a Keras model file with more than {MAX_MEMBERS} members")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise ModelRefused(f"a Keras model file with more than {MAX_MEMBERS} members")
            if sum(member.file_size for member in members) > MAX_INFLATED_BYTES:
                raise ModelRefused(f"a Keras model file that inflates to more than {MAX_INFLATED_BYTES / 1e6:.0f} MB")
            sizes = {member.filename: member.file_size for member in members}
            for name in ("config.json", "metadata.json"):
                if sizes.get(name, 0) > MAX_CONFIG_BYTES:
                    raise ModelRefused(f"a Keras model whose {name} inflates to more than "
                                       f"{MAX_CONFIG_BYTES / 1e6:.0f} MB")
            if "config.json" not in sizes:
                raise ModelRefused("a Keras model file without a config.json")
            with archive.open("config.json") as handle:
                text = handle.read(MAX_CONFIG_BYTES + 1)
    except ModelRefused:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise ModelRefused(f"a Keras model file that cannot be read ({type(error).__name__})") from None
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        raise ModelRefused("a Keras model whose config.json is not JSON") from None
    if not isinstance(config, dict):
        raise ModelRefused("a Keras model whose config.json is not a model configuration")
    return config


# ----------------------------------------------------------------------------- the throw-away builder

_WORKER = r'''
import json, os, resource, struct, sys, tempfile
limit = int(sys.argv[1]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
folder = tempfile.mkdtemp(prefix="coursekit-model-")

def count(layer):   # the layer and every layer inside it
    return 1 + sum(count(inner) for inner in (getattr(layer, "layers", None) or []))

stdin, stdout = sys.stdin.buffer, sys.stdout
stdout.write("ready\n"); stdout.flush()
while True:
    header = stdin.read(8)
    if len(header) < 8:
        break
    data = stdin.read(struct.unpack("<Q", header)[0])
    path = os.path.join(folder, "model.keras")
    with open(path, "wb") as handle:
        handle.write(data)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
        layers = count(model) - 1
        reply = {"ok": isinstance(model, keras.Model), "layers": layers, "parameters": int(model.count_params())}
    except BaseException as error:
        reply = {"ok": False, "error": type(error).__name__}
    os.remove(path)
    stdout.write(json.dumps(reply) + "\n"); stdout.flush()
'''


class _Builder:
    """The throw-away process that builds models first, shared by a batch, one model at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _WORKER, str(BUILDER_MEMORY_MB)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        cwd=tempfile.gettempdir())
        if self._read_line(120) != "ready":
            self.stop()
            raise RuntimeError("the grader's model builder did not start")

    def _read_line(self, seconds: float) -> str | None:
        out, deadline, line = self.process.stdout, time.monotonic() + seconds, b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                return None
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                return None
            line += chunk
        return line.decode(errors="replace").strip()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def build(self, data: bytes, waiting=nullcontext) -> dict:
        """``{"ok", "layers", "parameters"}`` of the model in ``data``; ``waiting()`` is entered while
        this waits for the builder (another submission's model, or its start)."""
        with waiting():
            self.lock.acquire()
        try:
            if self.process is None or self.process.poll() is not None:
                with waiting():
                    self._start()
            try:
                self.process.stdin.write(struct.pack("<Q", len(data)) + data)
                self.process.stdin.flush()
            except OSError:
                self.stop()
                return {"ok": False, "error": "the builder stopped"}
            line = self._read_line(BUILD_SECONDS)
            if line is None:   # too slow, or killed for memory: start a fresh one next time
                self.stop()
                return {"ok": False, "error": f"building it took more than {BUILD_SECONDS:g} s or more than "
                                              f"{BUILDER_MEMORY_MB} MB"}
            return json.loads(line)
        finally:
            self.lock.release()


_builder = _Builder()


def build_elsewhere(data: bytes, waiting=nullcontext) -> None:
    """Build the model in ``data`` in the throw-away process; :class:`ModelRefused` if it fails or is too big."""
    found = _builder.build(data, waiting)
    if not found.get("ok"):
        raise ModelRefused(f"a Keras model that does not load ({str(found.get('error', '?'))[:100]})")
    if found.get("layers", 0) > MAX_LAYERS:
        raise ModelRefused(f"a Keras model of {found['layers']} layers (the grader takes at most {MAX_LAYERS})")
    if found.get("parameters", 0) > MAX_PARAMETERS:
        raise ModelRefused(f"a Keras model of {found['parameters']:,} parameters (the grader takes at most "
                           f"{MAX_PARAMETERS:,})")


def stop_builder() -> None:
    _builder.stop()
