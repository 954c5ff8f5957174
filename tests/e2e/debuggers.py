"""Drives gdb and lldb in batch mode with snarl's plugin loaded, beside the
snarl command line on the same target, for test_gdb.py and test_lldb.py.

One run per interpreter serves both files: a stuck sample starts; the CLI
reads it live, then gdb attaches (`gdb -p`), then lldb (`lldb -p`), one
tracer at a time; then a gcore core of it is read by the CLI, by gdb
(`gdb EXE` + `core-file`) and by lldb (`target create -c`). Each reader
runs every command of COMMANDS; the results are kept for the tests to
compare. A sample in a chroot is read the way a user would read a
container's process: gdb with `set sysroot ROOT`, lldb's core with
`platform select --sysroot ROOT remote-linux`."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from harness import ROOT, SNARL, Sample, wait_watcher_gone

EXTENSION = os.path.join(ROOT, "build", "_snarl.abi3.so")
GDB_SCRIPT = os.path.join(ROOT, "plugin", "snarl_gdb.py")
LLDB_SCRIPT = os.path.join(ROOT, "plugin", "snarl_lldb.py")
GDB = shutil.which("gdb")
# Debian installs lldb-N without the plain name unless lldb is installed too.
LLDB = next((p for p in [shutil.which("lldb")] +
             [shutil.which("lldb-%d" % v) for v in range(30, 13, -1)] if p), None)

# The sample: three lock cycles and an idle loop, no timers (a sleep's time
# left would differ between two readers), one Python thread at rest.
SAMPLE = "diag_lock_cycle.py"
# Each command as typed after `snarl` (the CLI gets the same words); TASK
# stands for one task's id, taken from the CLI's own task list.
COMMANDS = (
    "check --format json", "check", "check --fail-on await-cycle --format json",
    "tasks --format json", "tasks", "tasks --all",
    "tree --format json", "tree",
    "graph --format json", "graph", "graph --format mermaid",
    "stacks --format json", "stacks",
    "task TASK --format json", "task TASK",
)
# One debugger session: starting it, loading the symbols of a debug build
# and reading the target fifteen times; generous for a loaded CI machine.
SESSION_TIMEOUT = 600
_MARK = "@@snarl-test@@"

_RUNS = {}


class Outcome:
    """One command's result: stdout, stderr, and for the CLI its status."""

    def __init__(self, stdout, stderr, status=None):
        self.stdout, self.stderr, self.status = stdout, stderr, status

    def doc(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return "Outcome(status=%r, stdout=%r..., stderr=%r)" % (
            self.status, self.stdout[:200], self.stderr[-500:])


def missing():
    """Why the debugger tests cannot run here, or None."""
    if not os.path.exists(EXTENSION):
        return "build/_snarl.abi3.so is not built (no Python headers when make ran?)"
    return None


def _split(text, count):
    parts = text.split(_MARK + "\n")
    return parts[1:count + 1] + [""] * (count + 1 - len(parts))


def _session(argv, count, timeout):
    """Runs a debugger; its output cut at the markers into count Outcomes."""
    out = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    stdout = out.stdout.decode("utf-8", errors="replace")
    stderr = out.stderr.decode("utf-8", errors="replace")
    outs = [Outcome(o, e) for o, e in zip(_split(stdout, count), _split(stderr, count))]
    return outs, out.returncode, stderr


def gdb_session(setup, commands, timeout=SESSION_TIMEOUT):
    """Runs gdb --batch -nx with the plugin sourced: the setup commands
    (e.g. "attach PID"), then each command; returns (Outcome per command,
    gdb's exit status, its whole stderr)."""
    argv = [GDB, "--batch", "-nx", "-q"]
    for c in list(setup) + ["source " + GDB_SCRIPT]:
        argv += ["-ex", c]
    mark = "python gdb.write('%s\\n'); gdb.write('%s\\n', gdb.STDERR)" % (_MARK, _MARK)
    for c in commands:
        argv += ["-ex", mark, "-ex", c]
    argv += ["-ex", mark]
    return _session(argv, len(commands), timeout)


def lldb_session(setup, commands, timeout=SESSION_TIMEOUT, argv_extra=()):
    """The same for lldb --batch -Q (-Q: no echo of the commands). lldb
    stops at the first command that fails, so a session has at most one
    failing command, and it comes last."""
    argv = [LLDB, "--batch", "-Q"] + list(argv_extra)
    for c in list(setup) + ["command script import " + LLDB_SCRIPT]:
        argv += ["-o", c]
    # lldb's script interpreter sends sys.stderr to lldb's output: the
    # marker goes to the real stderr, where lldb writes its errors.
    mark = "script import os; print('%s'); _ = os.write(2, b'%s\\n')" % (_MARK, _MARK)
    for c in commands:
        argv += ["-o", mark, "-o", c]
    argv += ["-o", mark]
    return _session(argv, len(commands), timeout)


def cli(words, target):
    out = subprocess.run([SNARL] + words + [str(target)], capture_output=True,
                         timeout=SESSION_TIMEOUT)
    return Outcome(out.stdout.decode("utf-8", errors="replace"),
                   out.stderr.decode("utf-8", errors="replace"), out.returncode)


def executable(python):
    """The interpreter's file on this machine, as a core names it."""
    return os.path.realpath(python.host_path(python.argv[-1]))


def gdb_setup(python, pid=None, core=None):
    if pid:
        # Live, gdb reads every byte from the process: the files it finds
        # (or not) at the paths the process names do not matter.
        return ["attach %d" % pid]
    setup = [] if python.root == "/" else ["set sysroot " + python.root]
    return setup + ["file " + executable(python), "core-file " + core]


def lldb_setup(python, pid=None, core=None):
    if pid:
        return ["process attach -p %d" % pid]
    setup = [] if python.root == "/" else \
        ["platform select --sysroot %s remote-linux" % python.root]
    return setup + ["target create -c %s %s" % (core, executable(python))]




def _words(command, task):
    return command.replace("TASK", task).split()


def _read_all(target, python, task, pid=None, core=None):
    """{reader: [Outcome per command]} for the CLI, gdb and lldb."""
    commands = [" ".join(_words(c, task)) for c in COMMANDS]
    got = {"cli": [cli(c.split(), target) for c in commands]}
    if GDB:
        # After each command, its status as $_snarl_status says it.
        outs, rc, err = gdb_session(gdb_setup(python, pid, core),
                                    [w for c in commands for w in ("snarl " + c,
                                                                   "output $_snarl_status")])
        got["gdb"] = (outs[0::2], rc, err)
        got["gdb_status"] = [o.stdout for o in outs[1::2]]
    if LLDB:
        got["lldb"] = lldb_session(lldb_setup(python, pid, core),
                                   ["snarl " + c for c in commands])
    return got


def run(python):
    """Everything the matrix tests compare, for one interpreter (cached):
    {"truth", "live": {...}, "core": {...}} or {"error": why}."""
    if python.label in _RUNS:
        return _RUNS[python.label]
    work = tempfile.mkdtemp(prefix="snarl-dbg-")
    result = {}
    try:
        with Sample(python, SAMPLE, work) as s:
            wait_watcher_gone(s.pid, s.truth)
            result["truth"] = s.truth
            tasks = cli(["tasks", "--format", "json"], s.pid)
            if tasks.status != 0:
                raise RuntimeError("snarl tasks failed: " + tasks.stderr)
            named = sorted((t["name"], t["id"]) for t in tasks.doc()["tasks"])
            task = next(i for n, i in named if n == "pair-a")
            result["task"] = task
            result["live"] = _read_all(s.pid, python, task, pid=s.pid)
            core = s.gcore(work)
        result["core"] = _read_all(core, python, task, core=core)
    except (RuntimeError, subprocess.TimeoutExpired, StopIteration) as e:
        result = {"error": "%s: %s" % (type(e).__name__, e)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _RUNS[python.label] = result
    return result


class HostTarget:
    """The sample under this machine's own interpreter, left running, and a
    core of it: the target of the tests that are not about the matrix."""

    def __init__(self, python):
        self.python = python
        self.work = tempfile.mkdtemp(prefix="snarl-dbg-")
        self.sample = Sample(python, SAMPLE, self.work)

    def __enter__(self):
        s = self.sample.__enter__()
        try:
            wait_watcher_gone(s.pid, s.truth)
            self.pid = s.pid
            self.core = s.gcore(self.work)
        except BaseException:
            self.__exit__()
            raise
        self.executable = executable(self.python)
        return self

    def __exit__(self, *exc):
        self.sample.__exit__(*exc)
        shutil.rmtree(self.work, ignore_errors=True)


def host_python(pythons):
    """A release build that runs at this machine's root, or None."""
    return next((p for p in pythons if p.root == "/" and not p.debug), None)


def result(python, mode):
    """One interpreter's runs (made once per session) for mode."""
    run_ = run(python)
    if "error" in run_:
        pytest.fail(run_["error"])
    return run_[mode]


def assert_prints_what_the_cli_prints(got, debugger, command):
    """The debugger's output for command equals the CLI's, byte for byte."""
    i = COMMANDS.index(command)
    cli_out, (outs, _, err) = got["cli"][i], got[debugger]
    assert cli_out.status in (0, 1), cli_out
    mine = outs[i]
    # If the debugger died or printed around snarl, its whole stderr says why.
    context = "%s's stderr ends: %s" % (debugger, err[-2000:])
    assert mine.stderr == "" and mine.stdout, context
    if "json" in command:
        # No field is normalised: the debugger keeps the process stopped
        # while snarl reads it (frozen: true, as the CLI's own freeze), names
        # the same executable, and a core is a core to both.
        assert mine.doc() == cli_out.doc()
    assert mine.stdout == cli_out.stdout, context
