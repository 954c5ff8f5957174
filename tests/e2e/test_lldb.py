"""snarl's lldb commands (plugin/snarl_lldb.py) against the snarl command
line on the same target, on every interpreter of the matrix: live (`process
attach`) and from a gcore core (`target create -c`), every command in every
format prints the same bytes; JSON documents are compared field by field
first for a readable failure. Then, on this machine's own interpreter:
errors as lldb errors (lldb --batch stops at the first failing command, so
each session ends with the one it tests), a running process, help, and an
internal error with and without SNARL_DEBUG."""
import os
import shutil
import subprocess

import pytest

import debuggers
from debuggers import COMMANDS, LLDB, lldb_session

pytestmark = [
    pytest.mark.skipif(not LLDB, reason="lldb is not installed"),
    pytest.mark.skipif(bool(debuggers.missing()), reason=debuggers.missing() or ""),
]

MODES = ("live", "core")




@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("command", COMMANDS)
def test_lldb_prints_what_the_cli_prints(python, mode, command):
    debuggers.assert_prints_what_the_cli_prints(debuggers.result(python, mode), "lldb", command)




def _core(host):
    return ["target create -c %s %s" % (host.core, host.executable)]


def _last_error(setup, commands):
    """The stdout of every command and the stderr of the last one, which
    must be the only one to fail."""
    outs, status, err = lldb_session(setup, commands)
    assert status != 0
    for o in outs[:-1]:
        assert o.stderr == "", o
    return outs


@pytest.mark.parametrize("command, want", [
    ("snarl task", "error: snarl: 'task' needs a task id\nhint: 'snarl tasks' lists them\n"),
    ("snarl task 0x10", "error: snarl: no task 0x10 in this target\n"
                        "hint: 'snarl tasks' lists the task ids\n"),
    ("snarl check --bogus", "error: snarl: unknown option '--bogus'\nhint: see 'help snarl'\n"),
    ("snarl graph --format text", "error: snarl: graph does not print text\n"
                                  "hint: see 'help snarl'\n"),
    ("snarl tasks 1234", "error: snarl: unexpected argument '1234': snarl reads the "
                         "debugger's current target\nhint: see 'help snarl'\n"),
])
def test_lldb_usage_errors_are_lldb_errors(host, command, want):
    outs = _last_error(_core(host), ["snarl tasks --format json", command])
    assert outs[0].doc()["tasks"]
    assert (outs[1].stdout, outs[1].stderr) == ("", want)


def test_lldb_without_a_target_says_what_to_load():
    outs = _last_error([], ["snarl check"])
    assert outs[0].stderr == (
        "error: snarl: there is no process or core to read\nhint: load a core ('target create "
        "-c CORE EXECUTABLE') or attach ('process attach -p PID') first\n")


# A process that lldb reports running. lldb --batch handles no events while
# commands run, so a real `process continue` there is not reliably seen
# as running: the command gets a stand-in for the execution context.
_RUNNING = """
import lldb, snarl_lldb
class Process:
    def IsValid(self): return True
    def GetState(self): return lldb.eStateRunning
class Target:
    def IsValid(self): return True
    def GetProcess(self): return Process()
class Context:
    def GetTarget(self): return Target()
result = lldb.SBCommandReturnObject()
snarl_lldb.Snarl_check(lldb.debugger, {})(lldb.debugger, "", Context(), result)
print(repr((result.Succeeded(), result.GetOutput(), result.GetError())))
"""


def test_lldb_refuses_a_running_process():
    outs, status, _ = lldb_session([], ["script exec(%r)" % _RUNNING])
    assert status == 0
    assert outs[0].stdout == repr((False, "", "error: snarl: the process is running\n"
                                   "hint: interrupt it first ('process interrupt')\n")) + "\n"


def test_lldb_help_lists_the_subcommands():
    outs, status, _ = lldb_session([], ["help snarl", "help snarl task"])
    assert status == 0
    overview, task = outs[0].stdout, outs[1].stdout
    assert overview.startswith("Tell why the asyncio program being debugged is stuck.")
    for name in ("check", "tasks", "tree", "graph", "stacks", "task"):
        assert "      %s " % name in overview
    assert "Usage: snarl task ID [OPTIONS]" in task


def test_lldb_internal_error_is_one_line_unless_snarl_debug(host, monkeypatch):
    plant = "script import snarl_lldb; snarl_lldb._module_maps = lambda target: 1 // 0"
    # A core: its mappings come from _module_maps, where the error is planted.
    outs = _last_error(_core(host), [plant, "snarl check"])
    assert outs[1].stderr == ("error: snarl: internal error: ZeroDivisionError: integer "
                              "division or modulo by zero (SNARL_DEBUG=1 for the traceback)\n")
    monkeypatch.setenv("SNARL_DEBUG", "1")
    outs = _last_error(_core(host), [plant, "snarl check"])
    assert "Traceback (most recent call last)" in outs[1].stdout
    assert outs[1].stderr == ("error: snarl: internal error: ZeroDivisionError: integer "
                              "division or modulo by zero\n")


def test_lldb_loads_the_plugin_from_an_installed_location(host, tmp_path):
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
    argv = [LLDB, "--batch", "-Q", "-o", "command script import %s" % (share / "snarl_lldb.py"),
            "-o", "target create -c %s %s" % (host.core, host.executable),
            "-o", "snarl check --format json",
            "-o", "script import sys; print('EXT ' + sys.modules['_snarl'].__file__)"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert "EXT %s\n" % (lib / "_snarl.abi3.so") in out.stdout, out.stdout + out.stderr
    assert cli.stdout in out.stdout
