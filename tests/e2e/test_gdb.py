"""snarl's gdb commands (plugin/snarl_gdb.py) against the snarl command
line on the same target, on every interpreter of the matrix: live (`gdb -p`)
and from a gcore core (`gdb EXE` + `core-file`), every command in every
format prints the same bytes, and JSON documents are compared field by
field first for a readable failure. Then, on this machine's own
interpreter: a gdbserver target on loopback, a damaged core (a clean error,
and gdb goes on), usage errors, a running inferior, help, completion, the
`set snarl` settings, an internal error with and without `set snarl debug`,
and gdb's pager paging snarl's output."""
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import time

import pytest

import debuggers
from harness import core_segments
from debuggers import COMMANDS, GDB, gdb_session

pytestmark = [
    pytest.mark.skipif(not GDB, reason="gdb is not installed"),
    pytest.mark.skipif(bool(debuggers.missing()), reason=debuggers.missing() or ""),
]

MODES = ("live", "core")
# gdbserver: how long it may take to listen, and to exit after gdb detaches.
GDBSERVER_TIMEOUT = 60
# The pager test: how long gdb may take to print what we wait for.
PTY_TIMEOUT = 120




@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("command", COMMANDS)
def test_gdb_prints_what_the_cli_prints(python, mode, command):
    debuggers.assert_prints_what_the_cli_prints(debuggers.result(python, mode), "gdb", command)


@pytest.mark.parametrize("mode", MODES)
def test_gdb_status_variable_is_the_cli_exit_status(python, mode):
    got = debuggers.result(python, mode)
    statuses = [int(s) for s in got["gdb_status"]]
    assert statuses == [c.status for c in got["cli"]]
    assert 1 in statuses and 0 in statuses  # check found; --fail-on narrowed




def _core_setup(host):
    return ["file " + host.executable, "core-file " + host.core]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("gdbserver"), reason="gdbserver is not installed")
def test_gdb_through_gdbserver_on_loopback_prints_what_the_cli_prints(host):
    words = [["check", "--format", "json"], ["check"], ["stacks"], ["tasks", "--format", "json"]]
    cli = [debuggers.cli(w, host.pid) for w in words]
    port = _free_port()
    server = subprocess.Popen(["gdbserver", "--once", "--attach", "127.0.0.1:%d" % port,
                               str(host.pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + GDBSERVER_TIMEOUT
        seen = b""
        while b"Listening on port" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([server.stdout], [], [], 1)
            if ready:
                seen += os.read(server.stdout.fileno(), 4096)
        assert b"Listening on port" in seen, seen
        outs, _, err = gdb_session(["target remote 127.0.0.1:%d" % port],
                                   ["snarl " + " ".join(w) for w in words] + ["detach"])
        for w, c, g in zip(words, cli, outs):
            assert g.stderr == "", (w, g.stderr)
            assert g.stdout == c.stdout, w
        server.wait(timeout=GDBSERVER_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _segments(data):
    """(file offset, size) of a core's PT_LOAD segments that hold bytes."""
    return [(off, size) for _, off, size in core_segments(data) if off + size <= len(data)]


def _damage(core, dest, how):
    with open(core, "rb") as f:
        data = bytearray(f.read())
    if how == "truncated":
        # gcore writes its notes last: the half left has memory but no
        # NT_FILE note, so gdb knows no mapped file.
        data = data[:len(data) // 2]
    else:
        # Every byte of the first half of the memory segments turned to
        # 0xff, the runtime's structures among them.
        segments = _segments(data)
        for off, size in segments[:len(segments) // 2]:
            data[off:off + size] = b"\xff" * size
    with open(dest, "wb") as f:
        f.write(data)


def test_gdb_damaged_core_is_a_clean_error_and_gdb_goes_on(host, tmp_path):
    truncated, scrambled = str(tmp_path / "truncated.core"), str(tmp_path / "scrambled.core")
    _damage(host.core, truncated, "truncated")
    _damage(host.core, scrambled, "scrambled")
    good = debuggers.cli(["check", "--format", "json"], host.core)
    outs, _, err = gdb_session(
        ["file " + host.executable],
        ["core-file " + truncated, "snarl check", "core-file " + scrambled, "snarl check",
         "core-file " + host.core, "snarl check --format json"])
    for damaged in (outs[1], outs[3]):
        # Either a report (what could be read) or snarl's own one-line error:
        # never a Python traceback, never gdb dying.
        assert "Traceback" not in damaged.stderr and "internal error" not in damaged.stderr
        assert damaged.stdout or damaged.stderr.startswith("snarl: "), damaged
    assert outs[1].stderr.startswith("snarl: "), outs[1]
    assert outs[5].stderr == "" and outs[5].stdout == good.stdout


def test_gdb_usage_and_target_errors_are_gdb_errors(host):
    outs, _, _ = gdb_session([], ["snarl check"])
    assert outs[0].stdout == ""
    assert outs[0].stderr == ("snarl: there is no process or core to read\nhint: load a core "
                              "('core-file FILE'), attach ('attach PID') or connect ('target "
                              "remote HOST:PORT') first\n")
    cases = [
        ("snarl task", "snarl: 'task' needs a task id\nhint: 'snarl tasks' lists them\n"),
        ("snarl task 0x10", "snarl: no task 0x10 in this target\n"
                            "hint: 'snarl tasks' lists the task ids\n"),
        ("snarl check --bogus", "snarl: unknown option '--bogus'\nhint: see 'help snarl'\n"),
        ("snarl graph --format text", "snarl: graph does not print text\n"
                                      "hint: see 'help snarl'\n"),
        ("snarl check --format yaml", "snarl: --format takes text, json, dot or mermaid\n"
                                      "hint: see 'help snarl'\n"),
        ("snarl check --fail-on", "snarl: --fail-on needs diagnosis kinds\n"
                                  "hint: see 'help snarl'\n"),
        ("snarl tasks 1234", "snarl: unexpected argument '1234': snarl reads the debugger's "
                             "current target\nhint: see 'help snarl'\n"),
        ("snarl check --no-freeze", "snarl: --no-freeze is for the snarl command line: here "
                                    "the debugger keeps the process stopped while snarl reads "
                                    "it\nhint: see 'help snarl'\n"),
    ]
    fail_on = debuggers.cli(["check", "--fail-on", "nope", "--format", "json"], host.core)
    outs, _, _ = gdb_session(_core_setup(host), [c for c, _ in cases] + [
        "snarl check --fail-on nope", "output $_snarl_status", "snarl tasks --format json",
        "output $_snarl_status"])
    for (command, want), got in zip(cases, outs):
        assert (got.stdout, got.stderr) == ("", want), command
    # The engine's own usage error, worded as the CLI words it, with its status.
    assert outs[-4].stderr == fail_on.stderr
    assert outs[-3].stdout == "%d" % fail_on.status == "2"
    assert outs[-2].stderr == "" and outs[-2].doc()["tasks"]
    assert outs[-1].stdout == "0"


def test_gdb_refuses_a_running_inferior(host):
    outs, _, _ = gdb_session(["set non-stop on", "attach %d" % host.pid, "continue -a &"],
                             ["snarl check", "interrupt -a"])
    assert outs[0].stderr == ("snarl: the program is running\n"
                              "hint: interrupt it first (Ctrl-C, or 'interrupt -a')\n")
    assert outs[0].stdout == ""
    os.kill(host.pid, 0)  # detached, alive


def test_gdb_help_apropos_and_completion():
    outs, _, _ = gdb_session([], [
        "help snarl", "help snarl task", "apropos asyncio", "complete snarl ta",
        "complete snarl check --f", "complete snarl graph --format ",
        "complete snarl check --fail-on lock-cycle,wa", "complete snarl check --format=j"])
    overview, task, apropos, sub, opt, fmt, kinds, eq = (o.stdout for o in outs)
    for name in ("check", "tasks", "tree", "graph", "stacks", "task"):
        assert "snarl %s -- " % name in overview
    assert "Usage: snarl task ID [OPTIONS]" in task and "--all-objects" in task
    assert apropos.startswith("snarl -- Tell why the asyncio program being debugged is stuck.")
    assert sub.split("\n") == ["snarl task", "snarl tasks", ""]
    assert opt.split("\n") == ["snarl check --fail-on", "snarl check --format", ""]
    assert fmt.split("\n") == ["snarl graph --format " + f for f in ("dot", "json", "mermaid")] \
        + [""]
    assert kinds.split("\n") == ["snarl check --fail-on lock-cycle,wake-cycle", ""]
    assert eq == "snarl check --format=json\n"


def test_gdb_default_format_setting(host):
    cli_json = debuggers.cli(["check", "--format", "json"], host.core)
    cli_graph = debuggers.cli(["graph", "--format", "json"], host.core)
    cli_text = debuggers.cli(["check"], host.core)
    outs, _, _ = gdb_session(_core_setup(host), [
        "show snarl format", "set snarl format json", "show snarl", "snarl check",
        "snarl graph", "snarl check --format text", "set snarl format yaml"])
    assert outs[0].stdout == "The snarl commands print text by default (graph: dot).\n"
    assert outs[1].stdout == "" and outs[1].stderr == ""  # no extra output
    assert outs[2].stdout == "format: json\ndebug: off\n"
    assert outs[3].stdout == cli_json.stdout
    assert outs[4].stdout == cli_graph.stdout
    assert outs[5].stdout == cli_text.stdout
    assert "yaml" in outs[6].stderr


def test_gdb_internal_error_is_one_line_unless_debug_is_on(host):
    # An exception where none is expected (here planted in the mapping
    # lister): a one-line gdb error; the traceback only on request.
    outs, _, _ = gdb_session(_core_setup(host), [
        "python _mappings = lambda: 1 // 0", "snarl check", "set snarl debug on", "snarl check"])
    outs = outs[1:]
    assert outs[0].stderr == ("snarl: internal error: ZeroDivisionError: integer division or "
                              "modulo by zero (set snarl debug on for the traceback)\n")
    assert "Traceback (most recent call last)" in outs[2].stderr
    assert outs[2].stderr.endswith("snarl: internal error: ZeroDivisionError: integer division "
                                   "or modulo by zero\n")


def _expect(fd, want, seen):
    deadline = time.monotonic() + PTY_TIMEOUT
    while want not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("gdb did not print %r; got %r" % (want, seen[-2000:]))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError("gdb ended before printing %r: %r" % (want, seen[-2000:]))
            seen += chunk
    return seen


def test_gdb_pager_pages_snarl_output_and_q_returns_to_the_prompt(host):
    cli = debuggers.cli(["tasks", "--all"], host.core)
    assert cli.stdout.count("\n") > 8
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(GDB, [GDB, "-nx", "-q", "-ex", "set height 6", "-ex", "set width 0",
                       "-ex", "source " + debuggers.GDB_SCRIPT, host.executable, host.core])
    try:
        seen = _expect(fd, b"(gdb) ", b"")
        os.write(fd, b"snarl tasks --all\n")
        seen = _expect(fd, b"--Type <RET> for more, q to quit", seen)
        first_page = seen.split(b"snarl tasks --all")[-1]
        assert cli.stdout.splitlines()[0].encode() in first_page
        assert cli.stdout.splitlines()[-1].encode() not in first_page
        os.write(fd, b"q\n")
        seen = _expect(fd, b"Quit", seen)
        seen = _expect(fd, b"(gdb) ", seen.split(b"Quit")[-1])
        os.write(fd, b"snarl check --format json\n")
        seen = _expect(fd, b'"verdict"', seen)
        os.write(fd, b"quit\n")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)


def test_gdb_on_a_program_without_python_names_the_files_searched(tmp_path):
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        time.sleep(0.2)  # past exec: the core maps sleep, not this Python
        out = subprocess.run(["gcore", "-o", str(tmp_path / "core"), str(sleeper.pid)],
                             capture_output=True, timeout=300)
        assert out.returncode == 0, out.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    exe = os.path.realpath(shutil.which("sleep"))
    outs, _, _ = gdb_session(["file " + exe, "core-file %s.%d" % (tmp_path / "core", sleeper.pid)],
                             ["snarl check"])
    assert outs[0].stdout == ""
    first = outs[0].stderr.split("\n")[0]
    assert first.startswith("snarl: no Python runtime"), first
    assert exe in first and "libc.so.6" in first


def test_gdb_loads_the_plugin_from_an_installed_location(host, tmp_path):
    # What `make install` lays out: the scripts in PREFIX/share/snarl, the
    # extension in PREFIX/lib/snarl.
    share = tmp_path / "share" / "snarl"
    lib = tmp_path / "lib" / "snarl"
    share.mkdir(parents=True)
    lib.mkdir(parents=True)
    for name in ("snarl_common.py", "snarl_gdb.py", "snarl_lldb.py"):
        shutil.copy(os.path.join(debuggers.ROOT, "plugin", name), share)
    shutil.copy(debuggers.EXTENSION, lib)
    cli = debuggers.cli(["check", "--format", "json"], host.core)
    argv = [GDB, "--batch", "-nx", "-q", "-ex", "source %s" % (share / "snarl_gdb.py"),
            "-ex", "file " + host.executable, "-ex", "core-file " + host.core,
            "-ex", "snarl check --format json",
            "-ex", "python import sys; print(sys.modules['_snarl'].__file__)"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    lines = out.stdout.splitlines()
    assert lines[-1] == str(lib / "_snarl.abi3.so")
    assert lines[-2] + "\n" == cli.stdout
