"""The first process of a sandbox, on both sides of bubblewrap.

    python -I -S sandbox_launch.py SPEC_JSON              (outside: becomes bubblewrap)
    python -I -S sandbox_launch.py --inside SPEC_JSON -- COMMAND...   (inside, when the grader is root)

Run by :mod:`coursekit.tools.sandbox`, with the standard library only and without site or
coursekit: it starts in a few milliseconds.

Outside, ``SPEC_JSON`` holds ``cgroups`` (``cgroup.procs`` files to write this process's id to:
its children inherit them), ``bwrap`` (its path), ``args`` (bubblewrap's options, in order; among
the strings, ``{"file": path, "inside": path}`` is opened here, without following a link, and
copied into the sandbox with ``--file``) and ``command``. bubblewrap reads its options from a pipe
(``--args``), so the sandbox's ``/proc/1/cmdline`` shows ``bwrap --args N -- COMMAND``, not the
options and paths that made the sandbox.

Inside, when the grader runs as root, bubblewrap itself runs as root (it must reach the Python
installation wherever it lies, ``/root`` included) and this step makes the sandbox's user:
``SPEC_JSON`` holds ``user`` (``[uid, gid]``) and ``own`` (folders to give that user, with what is
in them); it sets
no-new-privileges, drops every group and capability by changing to that user, and runs COMMAND.
"""
import json
import os
import sys


def outside(spec: dict) -> None:
    for procs in spec.get("cgroups", []):
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    args = []
    for item in spec["args"]:
        if isinstance(item, str):
            args.append(item)
            continue
        try:
            fd = os.open(item["file"], os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            raise SystemExit(f"sandbox: cannot open {item['file']}: {error.strerror}") from None
        os.set_inheritable(fd, True)
        args += ["--perms", "0644", "--file", str(fd), item["inside"]]
    read, write = os.pipe()
    data = b"".join(os.fsencode(arg) + b"\0" for arg in args)
    if len(data) > 60_000:   # a pipe holds 64 KiB: more would block before bubblewrap reads it
        raise SystemExit("sandbox: too many options for one pipe")
    os.write(write, data)
    os.close(write)
    os.set_inheritable(read, True)
    os.execv(spec["bwrap"], [spec["bwrap"], "--args", str(read), "--", *spec["command"]])


def inside(spec: dict, command: list) -> None:
    import ctypes
    uid, gid = spec["user"]
    for path in spec.get("own", []):   # the folders, and what bubblewrap put in them (the notebook)
        os.chown(path, uid, gid)
        for name in os.listdir(path):
            os.chown(os.path.join(path, name), uid, gid, follow_symlinks=False)
    if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:   # PR_SET_NO_NEW_PRIVS: no setuid programs
        raise SystemExit("sandbox: cannot set no-new-privileges")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)                   # from root to another user: every capability goes
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("sandbox: could not change user")
    os.execv(command[0], command)


if __name__ == "__main__":
    if sys.argv[1] == "--inside":
        inside(json.loads(sys.argv[2]), sys.argv[4:])
    else:
        outside(json.loads(sys.argv[1]))
