"""CPython's own `python3.X -m asyncio ps PID` (3.14+) as a reference for
snarl: run by the target's own interpreter, its table parsed into tasks and
awaiter edges.

The interpreter must be the target's, build included (the tool checks the
target's debug offsets against its own). For an interpreter in a chroot,
`chroot ROOT python3.X -m asyncio ps PID` needs /proc/PID/maps, and the
chroot has no /proc unless someone mounted it. Then the same interpreter
(same executable, same standard library and _remote_debugging extension) is
run outside the chroot through the chroot's own dynamic loader, where /proc
is the host's; nothing is mounted.
"""
import os
import subprocess

# `asyncio ps` attaches and reads; a loaded CI machine may be slow.
PS_TIMEOUT = 120
# Where Debian's loader and libraries live inside the chroot.
LOADER = "/usr/lib64/ld-linux-x86-64.so.2"
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu")


class Unavailable(Exception):
    """asyncio ps cannot run here; the message says why."""


def command(python, pid):
    """(argv, env, how) to run `-m asyncio ps PID` with python's own
    interpreter."""
    exe = python.argv[-1]
    tail = ["-m", "asyncio", "ps", str(pid)]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    if python.root == "/":
        return list(python.argv) + tail, env, "directly"
    if os.path.exists(os.path.join(python.root, "proc", "self", "maps")):
        return list(python.argv) + tail, env, "inside the chroot"
    loader = os.path.realpath(python.host_path(LOADER))
    # realpath resolves the chroot's relative links; a link that escapes the
    # chroot would name a host file, not the chroot's.
    if not loader.startswith(os.path.realpath(python.root) + os.sep) or not os.path.exists(loader):
        raise Unavailable("no /proc in %s (asyncio ps reads /proc/PID/maps) and no loader "
                          "at %s to run %s outside it" % (python.root, LOADER, exe))
    libs = ":".join(python.host_path(d) for d in LIB_DIRS)
    env["PYTHONHOME"] = python.host_path("/usr")
    return [loader, "--library-path", libs, python.host_path(exe)] + tail, env, \
        "outside the chroot (no /proc inside) through the chroot's loader"


def run(python, pid):
    """The parsed table: {"tasks": {id: name}, "edges": {(task id, awaiter id)},
    "tids": {task id: tid}, "how": str, "text": str}."""
    argv, env, how = command(python, pid)
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=PS_TIMEOUT)
    if out.returncode != 0:
        raise RuntimeError("asyncio ps (%s) failed, status %d:\n%s%s" %
                           (how, out.returncode, out.stdout, out.stderr))
    parsed = parse(out.stdout)
    parsed["how"] = how
    parsed["text"] = out.stdout
    return parsed


def parse(text):
    """Rows of `asyncio ps` (Lib/asyncio/tools.py, display_awaited_by_tasks_table):
    tid, task id, task name, coroutine stack, awaiter chain, awaiter name,
    awaiter id, padded with spaces; one row per (task, awaiter), awaiter id
    0x0 for a task nobody awaits. Stacks and chains are names joined by
    " -> ", so only the first three columns and the last one are taken by
    position: task names must not contain spaces (the samples' do not)."""
    lines = text.splitlines()
    if len(lines) < 2 or not lines[0].startswith("tid") or set(lines[1]) != {"-"}:
        raise RuntimeError("unexpected asyncio ps output:\n%s" % text)
    tasks, edges, tids = {}, set(), {}
    for line in lines[2:]:
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) < 4 or not cols[1].startswith("0x") or not cols[-1].startswith("0x"):
            raise RuntimeError("unexpected asyncio ps row: %r" % line)
        tid, task, name, awaiter = cols[0], cols[1], cols[2], cols[-1]
        tasks[task] = name
        tids[task] = int(tid)
        if int(awaiter, 16) != 0:
            edges.add((task, awaiter))
    return {"tasks": tasks, "edges": edges, "tids": tids}
