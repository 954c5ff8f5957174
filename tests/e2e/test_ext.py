"""The _snarl extension behind the gdb and lldb commands, without a
debugger: one abi3 build loads in every CPython 3.11+ of this machine; fed
by plain Python (a live sample's /proc/PID/mem and maps) it prints what the
CLI prints; and whatever its callbacks do (raise, return garbage, Ctrl-C)
it returns or raises, never crashes."""
import json
import os
import subprocess
import sys

import pytest

import debuggers
import pythons

pytestmark = pytest.mark.skipif(bool(debuggers.missing()), reason=debuggers.missing() or "")

PLUGIN = os.path.join(debuggers.ROOT, "plugin")
# A host in a dozen lines: the process's memory and maps from /proc.
HOST = r"""
import json, os, sys
sys.path.insert(0, %(plugin)r)
import snarl_common
ext = snarl_common.load_extension(%(script)r)
pid = %(pid)d
fd = os.open("/proc/%%d/mem" %% pid, os.O_RDONLY)
def read(addr, size):
    try:
        data = os.pread(fd, size, addr)
    except OSError:
        return None
    return data if len(data) == size else None
maps = []
with open("/proc/%%d/maps" %% pid) as f:
    for line in f:
        fields = line.split(None, 5)
        if len(fields) == 6:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            maps.append((start, end, int(fields[2], 16), fields[5].strip()))
tids = [int(t) for t in os.listdir("/proc/%%d/task" %% pid)]
status, out = ext.run(read=read, mappings=maps, threads=tids, pid=pid, stopped=False,
                      executable=os.readlink("/proc/%%d/exe" %% pid),
                      command="stacks", format="json")
sys.stdout.write(out)
"""




def _host_interpreters():
    """Every interpreter of the matrix at this machine's root, by version."""
    seen = {}
    for p in pythons.PYTHONS:
        if p.root == "/" and not p.debug:
            seen.setdefault(p.minor, p)
    return list(seen.values())


@pytest.mark.parametrize("interpreter", _host_interpreters(), ids=lambda p: p.label)
def test_one_build_serves_every_interpreter_and_prints_what_the_cli_prints(host, interpreter):
    code = HOST % {"plugin": PLUGIN, "script": debuggers.GDB_SCRIPT, "pid": host.pid}
    out = subprocess.run(list(interpreter.argv) + ["-c", code], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    cli = debuggers.cli(["stacks", "--no-freeze", "--format", "json"], host.pid)
    assert json.loads(out.stdout) == cli.doc()
    assert out.stdout.decode() == cli.stdout


@pytest.fixture(scope="module")
def ext():
    sys.path.insert(0, PLUGIN)
    try:
        import snarl_common
    finally:
        del sys.path[0]
    return snarl_common.load_extension(debuggers.GDB_SCRIPT)


# A mapping of a file that exists nowhere: the engine opens it, fails, and
# tries to read the target's copy of its ELF header through read().
MISSING = (0x400000, 0x401000, 0, "/nonexistent/python3.11")


def test_engine_error_names_the_files_it_searched(ext):
    with pytest.raises(ext.Error) as e:
        ext.run(read=lambda a, n: None, mappings=[MISSING], threads=[1], is_core=True)
    message, hint, name = e.value.args
    assert message.startswith("no Python runtime") and "/nonexistent/python3.11" in message
    assert name in ("NOT_PYTHON", "NO_FILE") and "--sysroot" in hint
    with pytest.raises(ext.Error) as e:
        ext.run(read=lambda a, n: None, mappings=[], threads=[])
    assert e.value.args[0].startswith("no Python runtime")
    assert "maps no files" in e.value.args[0]


def test_a_local_target_that_died_is_exited_and_a_remote_one_is_not_looked_up(ext):
    """local: the PID is this machine's; the engine then sees the process
    died (here, one that exited and was reaped) instead of blaming the
    missing files. Without it (gdbserver, a remote debug server) the PID
    means nothing here and is never looked up."""
    done = subprocess.Popen(["true"])
    done.wait()
    with pytest.raises(ext.Error) as e:
        ext.run(read=lambda a, n: None, mappings=[], threads=[done.pid], pid=done.pid,
                local=True)
    assert e.value.args == ("process %d exited while it was being read" % done.pid, "", "GONE")
    with pytest.raises(ext.Error) as e:
        ext.run(read=lambda a, n: None, mappings=[], threads=[done.pid], pid=done.pid)
    assert e.value.args[2] == "NOT_PYTHON" and "maps no files" in e.value.args[0]


class Boom(Exception):
    pass


def _raise(exc):
    def read(addr, size):
        raise exc
    return read


@pytest.mark.parametrize("read, raised", [
    (_raise(Boom("from read")), Boom),  # a bug in a front end: re-raised as is
    (_raise(KeyboardInterrupt()), KeyboardInterrupt),  # Ctrl-C stops the analysis
    (lambda addr, size: 42, TypeError),  # not bytes
])
def test_callback_exceptions_come_back_as_exceptions(ext, read, raised):
    with pytest.raises(raised):
        ext.run(read=read, mappings=[MISSING], threads=[1], is_core=True)


def test_short_reads_are_failed_reads(ext):
    with pytest.raises(ext.Error):
        ext.run(read=lambda addr, size: b"\0" * (size - 1), mappings=[MISSING], threads=[])


@pytest.mark.parametrize("kwargs, raised", [
    ({}, TypeError),  # read, mappings and threads are required
    ({"read": 1, "mappings": [], "threads": []}, TypeError),
    ({"read": len, "mappings": [(1, 2)], "threads": []}, TypeError),
    ({"read": len, "mappings": [(1, 2, 0, 7)], "threads": []}, TypeError),
    ({"read": len, "mappings": 5, "threads": []}, TypeError),
    ({"read": len, "mappings": [], "threads": ["x"]}, TypeError),
    ({"read": len, "mappings": [], "threads": [], "format": "yaml"}, ValueError),
])
def test_bad_arguments_raise(ext, kwargs, raised):
    with pytest.raises(raised):
        ext.run(**kwargs)
