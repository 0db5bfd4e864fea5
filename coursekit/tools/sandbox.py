"""One bubblewrap sandbox per submission's kernel (Linux), and the kernel manager that starts it.

What a kernel sees, all read-only: the system folders (``/usr``, ``/etc``, ``/lib``...; not
``/opt``, ``/home``, ``/srv`` or ``/var``) and the Python installation that runs the grader (its
prefixes, standard library, site-packages and coursekit's own folder: not the other folders on
``sys.path``, such as the grader's working folder under ``python -m``), the Keras cache
(``COURSEKIT_OFFLINE_CACHE``, else the instructor's ``~/.keras``: coursekit copies it into the
sandbox's ``/tmp`` when imported, since Keras needs a writable cache), lesson 09's offline
stimuli (``COURSEKIT_TEXTURE_SHAPE_DIR``, when set) and the grader's exchange folder
(:data:`EXCHANGE`: the models a check sends). Writable: one memory file system of
``tmp_mb`` for ``/tmp``, ``/var/tmp``, its HOME and its working folder :data:`WORKDIR` (which holds
a copy of the notebook), ``/dev/shm`` of ``shm_mb``, and the folder of its connection sockets.
Everything else is read-only.

No network, its own process, IPC and UTS namespaces, a new session, an environment of
:data:`PASSED_VARIABLES` only, no-new-privileges (setuid programs do not raise it), and an
unprivileged user: the grader's own, in a user namespace of its own in which no other can be
made (bubblewrap 0.8 and later); or, when the grader runs as root, ``nobody`` (bubblewrap then runs
as root to reach the installation wherever it lies, and the sandbox's first process drops to
``nobody``, giving up every capability). Its processes together get at most ``memory_mb`` of
memory and ``processes`` processes and threads: a cgroup does it where the machine lets the grader
make one (:func:`cgroups`); elsewhere the process limit is each process's RLIMIT_NPROC (counted
per user namespace on Linux 5.14 and later; as root, over all of nobody's processes; none for a
grader that is not root on older kernels: :func:`process_limit`) and the memory limit the
grader's own watch (:func:`watch_memory`), which kills a sandbox whose processes
together use more. Every process also gets ``memory_mb`` of address space and ``cpu_seconds`` of
CPU time. :func:`describe` says which of these apply here.

bubblewrap is started by :mod:`coursekit.tools.sandbox_launch`, which joins the cgroup and passes
bubblewrap's options through a pipe, so that ``/proc`` in the sandbox shows none of the host's
paths beyond those it was given.

Without bubblewrap, or where it cannot create namespaces (macOS, some containers),
:func:`unavailable` says why and the grader runs kernels as the instructor's own processes.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import platform
import pwd
import re
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client import AsyncKernelManager

SYSTEM_FOLDERS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PASSED_VARIABLES = ("COURSEKIT_PROFILE", "COURSEKIT_REQUIRE_PRETRAINED", "COURSEKIT_RANDOM_WEIGHTS",
                    "TF_CPP_MIN_LOG_LEVEL", "LANG", "LC_ALL")
MEMORY_MB = 6144       # per sandbox and per process. The heaviest notebook in the smoke profile (the
                       # grader's default) peaks at 4.2 GB of address space (solution 08; bench/
                       # notebook_times.py --folders notebooks solutions): the rest is room for a less
                       # frugal answer (solution 03 with every path point under one tape: 4.9 GB)
MALLOC_ARENAS = "2"    # MALLOC_ARENA_MAX in the sandbox: glibc reserves 64 MB of address space per
                       # arena, up to 8 per core, so without it the address space grows with the cores
PROCESSES = 512        # processes and threads per sandbox: TensorFlow starts a few dozen threads
TMP_MB = 1024          # /tmp, /var/tmp, HOME and the working folder together
SHM_MB = 64            # /dev/shm (Docker's default)
HOME = "/tmp/home"
WORKDIR = "/tmp/work"
EXCHANGE = "/run/coursekit/exchange"   # the grader's models, read-only
INSTRUCTOR_KERAS = "/run/coursekit/keras"   # the instructor's ~/.keras, read-only, without an offline cache
LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
WATCH_SECONDS = 0.5


@dataclass(frozen=True)
class Limits:
    memory_mb: int = MEMORY_MB      # the sandbox's processes together, and each one's address space
    cpu_seconds: int = 900          # RLIMIT_CPU of every process in the sandbox
    processes: int = PROCESSES      # processes and threads in the sandbox
    tmp_mb: int = TMP_MB            # /tmp with /var/tmp, HOME and the working folder
    shm_mb: int = SHM_MB            # /dev/shm


# ----------------------------------------------------------------------------- what this machine allows

def sandbox_user() -> tuple[int, int] | None:
    """``(uid, gid)`` the sandbox runs as when the grader is root (``nobody``); None: the grader's own."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _namespaces() -> list[str]:
    """bubblewrap's namespace options: as root, no user namespace (the sandbox's first process drops
    to nobody itself); otherwise a user namespace in which no other can be made, where bwrap can."""
    if sandbox_user():
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    found = ["--unshare-all", "--unshare-user"]
    return found + (["--disable-userns"] if "--disable-userns" in bwrap_options() else [])


def _as_sandbox_user(command: list[str], own: list[str]) -> list[str]:
    """``command`` run as :func:`sandbox_user` (when the grader is root), ``own`` given to that user first."""
    user = sandbox_user()
    if not user:
        return command
    spec = json.dumps({"user": list(user), "own": own})
    return [sys.executable, "-I", "-S", str(LAUNCHER), "--inside", spec, "--", *command]


@functools.lru_cache(maxsize=1)
def bwrap_options() -> frozenset[str]:
    """The options this bubblewrap knows (``--size`` and ``--disable-userns`` came in 0.8)."""
    try:
        text = subprocess.run([shutil.which("bwrap") or "bwrap", "--help"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"^\s+(--[a-z-]+)", text, flags=re.M))


def can_size_tmpfs() -> bool:
    return "--size" in bwrap_options()


def _launch(spec: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


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
    spec = {"bwrap": bwrap, "command": _as_sandbox_user([shutil.which("true") or "/bin/true"], []),
            "args": [*_namespaces(), "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc"]}
    try:
        test = _launch(spec, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no sandbox: bwrap does not run ({type(error).__name__})"
    if test.returncode != 0:
        return "no sandbox: bwrap cannot create namespaces here (" + (test.stderr.strip()[:120] or "?") + ")"
    return None


def nproc_per_namespace() -> bool:
    """Whether RLIMIT_NPROC counts a user namespace's processes apart (Linux 5.14 and later)."""
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return bool(found) and (int(found.group(1)), int(found.group(2))) >= (5, 14)


# ----------------------------------------------------------------------------- cgroups

@dataclass
class Cgroup:
    """One sandbox's cgroup folders (one per hierarchy), made by :class:`CgroupSupport`."""
    folders: list[Path]
    memory_events: Path | None = None   # counts the OOM kills in it

    @property
    def procs(self) -> list[str]:
        return [str(folder / "cgroup.procs") for folder in self.folders]

    def oom_kills(self) -> int:
        try:
            text = self.memory_events.read_text() if self.memory_events else ""
        except OSError:
            return 0
        found = re.search(r"^oom_kill (\d+)", text, flags=re.M)
        return int(found.group(1)) if found else 0

    def remove(self) -> None:
        """Kill what is left in it, then remove its folders (after its processes are gone)."""
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    _kill_listed(folder / "cgroup.procs")
                    time.sleep(0.1)


def _kill_listed(procs: Path) -> None:
    try:
        pids = [int(line) for line in procs.read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class CgroupSupport:
    """Where this grader makes its sandboxes' cgroups: ``kind`` is "cgroup v1" or "cgroup v2"."""
    kind: str
    memory: Path
    pids: Path
    counter: itertools.count = field(default_factory=itertools.count)

    def make(self, limits: Limits) -> Cgroup:
        name = f"coursekit-sandbox-{os.getpid()}-{next(self.counter)}"
        memory_bytes = limits.memory_mb * 1024 * 1024
        if self.kind == "cgroup v2":
            folder = self.memory / name
            folder.mkdir()
            (folder / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(limits.processes))
            return Cgroup([folder], folder / "memory.events")
        memory, pids = self.memory / name, self.pids / name
        memory.mkdir()
        pids.mkdir()
        (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        with contextlib.suppress(OSError):   # without swap accounting there is no memsw file
            (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        (pids / "pids.max").write_text(str(limits.processes))
        return Cgroup([memory, pids], memory / "memory.oom_control")


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per controller ("memory", "pids", "" for v2), from /proc/self/cgroup."""
    found = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _mounts() -> dict[str, Path]:
    """Where each cgroup hierarchy is mounted: controller name (v1) or "" (v2) -> folder."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _, options = (after.split(" ") + ["", "", ""])[:3]
        mount_point = Path(before.split(" ")[4])
        if fstype == "cgroup2":
            found.setdefault("", mount_point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in ("memory", "pids"):
                    found.setdefault(option, mount_point)
    return found


def _writable_folder(folder: Path) -> bool:
    probe = folder / f"coursekit-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def cgroups() -> CgroupSupport | str:
    """Where to make the sandboxes' cgroups, or why none can be made here (a few words)."""
    if not sys.platform.startswith("linux"):
        return "no cgroups on this system"
    try:
        own, mounts = _own_cgroups(), _mounts()
    except OSError:
        return "cgroups cannot be read"
    if "memory" in mounts and "pids" in mounts and "memory" in own and "pids" in own:
        memory = mounts["memory"] / own["memory"].lstrip("/")
        pids = mounts["pids"] / own["pids"].lstrip("/")
        if _writable_folder(memory) and _writable_folder(pids):
            return CgroupSupport("cgroup v1", memory, pids)
        return "the grader may not make cgroups here (cgroup v1, not root)"
    if "" in mounts and "" in own:
        return _cgroup_v2(mounts[""] / own[""].lstrip("/"))
    return "no memory and pids cgroup controllers here"


def _cgroup_v2(base: Path) -> CgroupSupport | str:
    """A cgroup v2 folder that may hold the sandboxes: the grader's own, when it may write there.

    cgroup v2 lets a folder limit its children only when no process lives in the folder itself:
    the grader, when it is alone in its cgroup (run it in a scope of its own: ``systemd-run --user
    --scope -p Delegate=yes ...``), moves into a child ``grader`` folder first.
    """
    try:
        available = (base / "cgroup.controllers").read_text().split()
        enabled = (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return "cgroup v2 cannot be read"
    if not {"memory", "pids"} <= set(available):
        return "cgroup v2 without the memory and pids controllers for the grader"
    if not _writable_folder(base):
        return "the grader may not make cgroups here (cgroup v2: run it in a delegated scope)"
    if not {"memory", "pids"} <= set(enabled):
        members = (base / "cgroup.procs").read_text().split()
        if members != [str(os.getpid())]:
            return ("cgroup v2: the grader's cgroup holds other processes (run it in a scope of its own: "
                    "systemd-run --user --scope -p Delegate=yes ...)")
        try:
            (base / "grader").mkdir(exist_ok=True)
            (base / "grader" / "cgroup.procs").write_text(str(os.getpid()))
            (base / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError as error:
            return f"cgroup v2: cannot enable the memory and pids controllers ({error.strerror})"
    return CgroupSupport("cgroup v2", base, base)


def process_limit() -> str:
    """How the sandbox's processes are limited: "cgroup"; "rlimit" (RLIMIT_NPROC, per user namespace,
    or, as root, for all of nobody's processes); or "none" (no user namespace count before Linux 5.14)."""
    if isinstance(cgroups(), CgroupSupport):
        return "cgroup"
    return "rlimit" if sandbox_user() or nproc_per_namespace() else "none"


def describe(limits: Limits) -> str:
    """The sandbox and its limits on this machine, for the grader's summary line."""
    user = "as nobody (the grader runs as root)" if sandbox_user() else "as your user, in its own user namespace"
    support = cgroups()
    if isinstance(support, CgroupSupport):
        together = (f"{limits.memory_mb} MB of memory and {limits.processes} processes per sandbox "
                    f"({support.kind})")
    else:
        processes = {"rlimit": f"{limits.processes} processes per sandbox (RLIMIT_NPROC)",
                     "none": "no process limit (Linux before 5.14)"}[process_limit()]
        if sandbox_user():
            processes = f"{limits.processes} processes for all of nobody's processes (RLIMIT_NPROC)"
        together = (f"{limits.memory_mb} MB of memory per sandbox (watched by the grader every "
                    f"{WATCH_SECONDS:g} s: {support}) and {processes}")
    sizes = (f"/tmp {limits.tmp_mb} MB, /dev/shm {limits.shm_mb} MB" if can_size_tmpfs()
             else "/tmp and /dev/shm not limited (bubblewrap before 0.8)")
    return (f"bubblewrap, one per submission, {user}; {together}; per process {limits.memory_mb} MB of address "
            f"space and {limits.cpu_seconds} s of CPU; {sizes}")


# ----------------------------------------------------------------------------- what it binds

def coursekit_folder() -> Path:
    import coursekit
    return Path(coursekit.__file__).resolve().parent


def installation_folders() -> list[Path]:
    """The folders the kernel's Python needs: its prefixes, standard library, site-packages, coursekit.

    Not the other folders on ``sys.path``: under ``python -m`` that is the grader's working folder,
    and a project folder above coursekit holds the course's solutions.
    """
    found = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), coursekit_folder(),
             Path(os.path.realpath(sys.executable)).parent]
    paths = sysconfig.get_paths()
    found += [Path(paths[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths]
    found += [Path(folder) for folder in site.getsitepackages()]
    folders = []
    for folder in sorted({path.resolve() for path in found if path.is_dir()}, key=lambda p: len(p.parts)):
        if folder == Path("/") or any(folder.is_relative_to(kept) for kept in folders):
            continue
        if any(folder.is_relative_to(system) for system in SYSTEM_FOLDERS):
            continue
        folders.append(folder)
    return folders


def _offline_cache() -> Path | None:
    cache = os.environ.get("COURSEKIT_OFFLINE_CACHE", "").strip()
    return Path(cache).resolve() if cache and Path(cache).is_dir() else None


def _stimuli_folder() -> Path | None:
    """Lesson 09's offline cue-conflict stimuli (``COURSEKIT_TEXTURE_SHAPE_DIR``), seen read-only."""
    stimuli = os.environ.get("COURSEKIT_TEXTURE_SHAPE_DIR", "").strip()
    return Path(stimuli).resolve() if stimuli and Path(stimuli).is_dir() else None


@dataclass(frozen=True)
class View:
    """Files of coursekit seen otherwise in a sandbox: ``files`` maps a host file to the one it
    replaces; ``hidden`` folders are seen empty (a from-scratch task's view: :mod:`.scratch`)."""
    files: tuple[tuple[Path, Path], ...] = ()
    hidden: tuple[Path, ...] = ()


# ----------------------------------------------------------------------------- one sandbox

class Sandbox:
    """One kernel's sandbox: its sockets folder and cgroup on the host, and the command that starts it.

    ``folder`` is the grader's private folder for this submission; ``exchange`` holds the models
    the grader sends (seen read-only as :data:`EXCHANGE`); ``notebook`` is copied into the working
    folder as ``notebook_name``; ``hidden`` are the grader's folders (submissions, outputs) made
    empty where they lie inside a bound folder.
    """

    def __init__(self, limits: Limits, folder: Path, exchange: Path, notebook: Path | None = None,
                 notebook_name: str = "notebook.ipynb", hidden: tuple[Path, ...] = (), view: View | None = None):
        self.limits, self.exchange, self.notebook, self.notebook_name = limits, exchange, notebook, notebook_name
        self.hidden, self.view = hidden, view or View()
        self.sockets = Path(folder) / f"sockets-{next(_numbers)}"
        self.sockets.mkdir(mode=0o700)
        user = sandbox_user()
        if user:
            os.chown(self.sockets, *user)
        support = cgroups()
        self.cgroup = support.make(limits) if isinstance(support, CgroupSupport) else None
        self.memory_exceeded = False      # set by watch_memory when it killed the sandbox

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` started in this sandbox (through the launcher)."""
        own = [HOME, WORKDIR]
        spec = {"bwrap": shutil.which("bwrap") or "bwrap", "args": self._options(),
                "cgroups": self.cgroup.procs if self.cgroup else [],
                "command": _as_sandbox_user(self._limited(argv), own)}
        return [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)]

    def _limited(self, argv: list[str]) -> list[str]:
        limits = [f"--as={self.limits.memory_mb * 1024 * 1024}", f"--cpu={self.limits.cpu_seconds}"]
        if process_limit() == "rlimit":
            limits.append(f"--nproc={self.limits.processes}")
        return [shutil.which("prlimit") or "prlimit", *limits, "--", *argv]

    def _options(self) -> list:
        args: list = [*_namespaces(), "--die-with-parent", "--new-session", "--clearenv"]
        for folder in SYSTEM_FOLDERS:
            path = Path(folder)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), folder]
            elif path.is_dir():
                args += ["--ro-bind", folder, folder]
        args += ["--proc", "/proc", "--dev", "/dev"]
        sized = can_size_tmpfs()
        args += ["--perms", "1777", *(["--size", str(self.limits.tmp_mb * 1024 * 1024)] if sized else []),
                 "--tmpfs", "/tmp", "--dir", HOME, "--dir", WORKDIR, "--symlink", "/tmp", "/var/tmp"]
        bound = installation_folders()
        cache, stimuli = _offline_cache(), _stimuli_folder()
        bound += [folder for folder in (cache, stimuli) if folder is not None]
        for folder in bound:
            args += ["--ro-bind", str(folder), str(folder)]
        for path in self.hidden:  # the submissions and the grader's outputs, where they lie inside a bound folder
            path = Path(path).resolve()
            if any(path.is_relative_to(folder) for folder in bound):
                args += ["--tmpfs", str(path)]
        for host, replaced in self.view.files:
            args += ["--ro-bind", str(host), str(replaced)]
        for folder in self.view.hidden:
            args += ["--tmpfs", str(folder)]
        keras_cache = Path.home() / ".keras"
        if cache is None and keras_cache.is_dir():
            # no network in here: the instructor's downloaded weights, read-only (nothing can be planted
            # in them), copied by coursekit into a writable KERAS_HOME as an offline cache would be
            args += ["--ro-bind", str(keras_cache.resolve()), INSTRUCTOR_KERAS]
        args += ["--ro-bind", str(self.exchange), EXCHANGE, "--bind", str(self.sockets), str(self.sockets)]
        if sized:
            args += ["--remount-ro", "/dev", "--perms", "1777", "--size", str(self.limits.shm_mb * 1024 * 1024),
                     "--tmpfs", "/dev/shm"]
        for folder in _made_folders([*bound, self.sockets, Path(EXCHANGE), Path("/var/tmp")]):
            args += ["--chmod", "0755", str(folder)]   # bubblewrap copies the host's modes (/root: 0700)
        if self.notebook is not None:
            args.append({"file": str(self.notebook), "inside": f"{WORKDIR}/{self.notebook_name}"})
        args += ["--remount-ro", "/", "--chdir", WORKDIR]
        for name, value in sorted(self._environment(cache).items()):
            args += ["--setenv", name, value]
        return args

    @staticmethod
    def _environment(cache: Path | None) -> dict[str, str]:
        environment = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
        environment.update(PYTHONPATH=str(coursekit_folder().parent), HOME=HOME, TMPDIR="/tmp",
                           IPYTHONDIR=f"{HOME}/.ipython", MPLCONFIGDIR=f"{HOME}/.config/matplotlib",
                           PYDEVD_DISABLE_FILE_VALIDATION="1", MALLOC_ARENA_MAX=MALLOC_ARENAS,
                           PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin")
        if cache is not None:
            environment["COURSEKIT_OFFLINE_CACHE"] = str(cache)
        elif (Path.home() / ".keras").is_dir():
            environment["COURSEKIT_OFFLINE_CACHE"] = INSTRUCTOR_KERAS
        else:
            environment["KERAS_HOME"] = f"{HOME}/.keras"   # an empty folder: no weights, no network
        stimuli = _stimuli_folder()
        if stimuli is not None:
            environment["COURSEKIT_TEXTURE_SHAPE_DIR"] = str(stimuli)
        environment.setdefault("LANG", "C.UTF-8")
        return environment

    def out_of_memory(self) -> bool:
        """Whether the sandbox was stopped for using more than its memory."""
        return self.memory_exceeded or (self.cgroup is not None and self.cgroup.oom_kills() > 0)

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()
        shutil.rmtree(self.sockets, ignore_errors=True)


_numbers = itertools.count()


def _made_folders(bound: list[Path]) -> list[Path]:
    """The folders bubblewrap makes on the way to ``bound`` (not themselves bound, nor inside a bound one)."""
    made = set()
    for folder in bound:
        for parent in Path(folder).parents:
            if parent in (Path("/"), Path("/tmp")) or any(parent.is_relative_to(other) for other in bound):
                continue   # / is made read-only, /tmp keeps the tmpfs' own mode
            if any(parent.is_relative_to(system) for system in SYSTEM_FOLDERS):
                continue
            made.add(parent)
    return sorted(made, key=lambda p: len(p.parts))


def probe(limits: Limits, folder: Path, hidden: tuple[Path, ...] = ()) -> str | None:
    """Start a sandbox as a kernel's would be, importing coursekit and ipykernel: None, or why it fails."""
    exchange = Path(folder) / "probe-exchange"
    exchange.mkdir(exist_ok=True)
    box = Sandbox(limits, folder, exchange, hidden=hidden)
    try:
        result = subprocess.run(box.command([sys.executable, "-c", "import coursekit, ipykernel"]),
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        box.close()
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return lines[-1][:300] if lines else f"exit status {result.returncode}"
    return None


# ----------------------------------------------------------------------------- the memory watch

def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2:].split()[1])
        found.setdefault(parent, []).append(int(entry))
    return found


def _tree(root: int) -> list[int]:
    children, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _memory_bytes(pid: int) -> int:
    """A process's share of memory: its PSS where this grader may read it, else its resident size."""
    for name, field_name in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            for line in Path(name).read_text().splitlines():
                if line.startswith(field_name):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return 0


def tree_memory(root: int) -> int:
    """Bytes used by process ``root`` and every process under it."""
    return sum(_memory_bytes(pid) for pid in _tree(root))


async def watch_memory(box: Sandbox, root_pid: int) -> None:
    """Kill the sandbox under ``root_pid`` when its processes together use more than its limit
    (the fallback without a cgroup); runs until cancelled or the sandbox is gone."""
    limit = box.limits.memory_mb * 1024 * 1024
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        used = await asyncio.to_thread(tree_memory, root_pid)
        if used == 0:
            return
        if used > limit:
            box.memory_exceeded = True
            for pid in reversed(_tree(root_pid)):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            return


# ----------------------------------------------------------------------------- the kernel manager

class GraderKernelManager(AsyncKernelManager):
    """A kernel manager whose clients drop over-large messages and whose kernel may be sandboxed.

    Set :attr:`sandbox` to a :class:`Sandbox` before starting the kernel to run it there, connected
    through Unix sockets in the sandbox's sockets folder.
    """

    sandbox: Sandbox | None = None
    max_message_bytes: int = 256_000_000

    def format_kernel_cmd(self, extra_arguments=None):
        argv = super().format_kernel_cmd(extra_arguments)
        return argv if self.sandbox is None else self.sandbox.command(argv)

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        user = sandbox_user()
        if self.sandbox is not None and user:  # the kernel, as nobody, reads it (it stays 0600)
            os.chown(self.connection_file, *user)

    def client(self, **kwargs):
        import zmq
        import zmq.asyncio
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        return super().client(context=context, **kwargs)


def kernel_manager(box: Sandbox | None) -> GraderKernelManager:
    """A manager for one submission's kernel: in ``box`` when given, else an ordinary local kernel."""
    manager = GraderKernelManager(kernel_name="python3")
    if box is not None:
        manager.transport = "ipc"
        manager.ip = str(box.sockets / "kernel")
        manager.connection_file = str(box.sockets / "kernel.json")
        manager.sandbox = box
        manager.kernel_spec.interrupt_mode = "message"  # a signal would stop at bwrap's new session
    return manager
