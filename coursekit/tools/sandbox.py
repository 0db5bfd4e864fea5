"""One bubblewrap sandbox per submission's kernel (Linux), and the kernel manager that starts it.

Inside the sandbox a kernel sees: the system folders (``/usr``, ``/etc``, ``/lib``...) and the
Python installation that runs the grader (its prefix and every folder on ``sys.path``), all
read-only (of a project that holds coursekit, only coursekit's own folder); a private ``/tmp``
that holds its HOME, IPython folder and Keras cache (a private copy of ``COURSEKIT_OFFLINE_CACHE``
where that is set, else the instructor's ``~/.keras`` read-only: there is no network to download
from); and, writable, only the submission's own working folder and the folder of its connection
sockets. No network (``--unshare-all``), its own process namespace (every process it starts is
killed with it, ``--die-with-parent``), a new session (no terminal to type into), an environment
of :data:`PASSED_VARIABLES` only, per process an address-space limit and a CPU-time limit, and a
size limit on ``/tmp`` where this bubblewrap can set one (:class:`Limits`). The submissions, the
grade table and the executed notebooks are not in its view.

Without bubblewrap, or where it cannot create namespaces (macOS, some containers),
:func:`unavailable` says why and the grader runs kernels as the instructor's own processes.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import AsyncKernelManager

SYSTEM_FOLDERS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
PASSED_VARIABLES = ("COURSEKIT_PROFILE", "COURSEKIT_REQUIRE_PRETRAINED", "COURSEKIT_RANDOM_WEIGHTS",
                    "TF_CPP_MIN_LOG_LEVEL", "LANG", "LC_ALL")
MEMORY_MB = 10240      # address space per process: TensorFlow alone reserves about 2.5 GB, and
                       # Integrated Gradients on MobileNetV2 (lesson 03) needs more than 6 GB
HOME = "/tmp/home"
TMP_MB = 1024


@dataclass(frozen=True)
class Limits:
    memory_mb: int = MEMORY_MB      # RLIMIT_AS of every process in the sandbox
    cpu_seconds: int = 900          # RLIMIT_CPU of every process in the sandbox
    tmp_mb: int = TMP_MB            # size of the sandbox's /tmp (memory), where bwrap can limit it


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """None when sandboxes can be made here; otherwise why not, in a few words."""
    if not sys.platform.startswith("linux"):
        return f"no sandbox on {sys.platform} (bubblewrap is Linux only)"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "no sandbox: bubblewrap (bwrap) is not installed"
    if shutil.which("prlimit") is None:
        return "no sandbox: prlimit (util-linux) is not installed"
    try:
        test = subprocess.run([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
                               "--", "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no sandbox: bwrap does not run ({type(error).__name__})"
    if test.returncode != 0:
        return "no sandbox: bwrap cannot create namespaces here (" + (test.stderr.strip()[:120] or "?") + ")"
    return None


def coursekit_folder() -> Path:
    import coursekit
    return Path(coursekit.__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def can_size_tmpfs() -> bool:
    """Whether this bwrap limits a tmpfs' size (``--size``, bubblewrap 0.8 and later)."""
    try:
        test = subprocess.run([shutil.which("bwrap") or "bwrap", "--unshare-all", "--ro-bind", "/", "/",
                               "--size", "1048576", "--tmpfs", "/tmp", "--", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return test.returncode == 0


def installation_folders() -> list[Path]:
    """The folders the kernel's Python needs: the prefixes and every existing folder on sys.path."""
    package = coursekit_folder()
    found = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), package]
    # not the current folder, nor a project folder above coursekit (its solutions/ must stay out of view)
    found += [Path(entry) for entry in sys.path if entry and Path(entry).is_dir()
              and not package.is_relative_to(Path(entry).resolve())]
    folders = []
    for folder in sorted({path.resolve() for path in found}, key=lambda p: len(p.parts)):
        if folder == Path("/") or any(folder.is_relative_to(kept) for kept in folders):
            continue
        if any(folder.is_relative_to(system) for system in SYSTEM_FOLDERS):
            continue
        folders.append(folder)
    return folders


def command(argv: list[str], workdir: Path, sockets: Path, hidden: list[Path], limits: Limits) -> list[str]:
    """``argv`` wrapped in prlimit and bwrap, as described in the module docstring."""
    args = ["prlimit", f"--as={limits.memory_mb * 1024 * 1024}", f"--cpu={limits.cpu_seconds}", "--",
            shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for folder in SYSTEM_FOLDERS:
        path = Path(folder)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), folder]
        elif path.is_dir():
            args += ["--ro-bind", folder, folder]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if can_size_tmpfs():
        args += ["--size", str(limits.tmp_mb * 1024 * 1024)]
    args += ["--tmpfs", "/tmp", "--dir", HOME, "--dir", "/var/tmp"]
    bound = installation_folders()
    cache = os.environ.get("COURSEKIT_OFFLINE_CACHE", "").strip()
    if cache and Path(cache).is_dir():
        bound.append(Path(cache).resolve())
    stimuli = os.environ.get("COURSEKIT_TEXTURE_SHAPE_DIR", "").strip()   # lesson 09's offline stimuli, read-only
    if stimuli and Path(stimuli).is_dir():
        bound.append(Path(stimuli).resolve())
    for folder in bound:
        args += ["--ro-bind", str(folder), str(folder)]
    for path in hidden:  # the submissions and the grader's outputs, where they lie inside a bound folder
        path = path.resolve()
        if any(path.is_relative_to(folder) for folder in bound):
            args += ["--tmpfs", str(path)]
    keras_cache = Path.home() / ".keras"
    if not (cache and Path(cache).is_dir()) and keras_cache.is_dir():
        # no network in here: the instructor's downloaded weights, read-only (nothing can be planted in them)
        args += ["--ro-bind", str(keras_cache.resolve()), f"{HOME}/.keras"]
    args += ["--bind", str(workdir), str(workdir), "--bind", str(sockets), str(sockets), "--chdir", str(workdir)]
    environment = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
    environment.update(PYTHONPATH=str(coursekit_folder().parent), HOME=HOME, TMPDIR="/tmp", IPYTHONDIR=f"{HOME}/.ipython",
                       MPLCONFIGDIR=f"{HOME}/.config/matplotlib", PYDEVD_DISABLE_FILE_VALIDATION="1",
                       PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin")
    if cache and Path(cache).is_dir():
        environment["COURSEKIT_OFFLINE_CACHE"] = str(Path(cache).resolve())
    else:
        environment["KERAS_HOME"] = f"{HOME}/.keras"   # the instructor's cache, read-only, or an empty folder
    if stimuli and Path(stimuli).is_dir():
        environment["COURSEKIT_TEXTURE_SHAPE_DIR"] = str(Path(stimuli).resolve())
    environment.setdefault("LANG", "C.UTF-8")
    for name, value in sorted(environment.items()):
        args += ["--setenv", name, value]
    return [*args, "--", *argv]


class GraderKernelManager(AsyncKernelManager):
    """A kernel manager whose clients drop over-large messages and whose kernel may be sandboxed.

    Set :attr:`sandbox` to ``(workdir, sockets, hidden, limits)`` before starting the kernel to
    run it in :func:`command`'s sandbox, connected through Unix sockets in ``sockets``.
    """

    sandbox: tuple | None = None
    max_message_bytes: int = 256_000_000

    def format_kernel_cmd(self, extra_arguments=None):
        argv = super().format_kernel_cmd(extra_arguments)
        if self.sandbox is None:
            return argv
        workdir, sockets, hidden, limits = self.sandbox
        return command(argv, workdir, sockets, hidden, limits)

    def client(self, **kwargs):
        import zmq
        import zmq.asyncio
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        return super().client(context=context, **kwargs)


def kernel_manager(workdir: Path, sockets: Path | None, hidden: list[Path], limits: Limits | None) -> GraderKernelManager:
    """A manager for one submission's kernel: sandboxed when ``sockets`` and ``limits`` are given."""
    manager = GraderKernelManager(kernel_name="python3")
    if sockets is not None and limits is not None:
        manager.transport = "ipc"
        manager.ip = str(sockets / "kernel")
        manager.connection_file = str(sockets / "kernel.json")
        manager.sandbox = (workdir, sockets, hidden, limits)
        manager.kernel_spec.interrupt_mode = "message"  # a signal would stop at bwrap's new session
    return manager
