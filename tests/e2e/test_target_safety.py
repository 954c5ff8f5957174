"""The target is never harmed: snarl writes nothing into it, leaves it
running and untraced when snarl itself is killed in the middle of a long
frozen read, and ends with a clean error when the target dies under it.

The target is samples/many_tasks.py with enough tasks that one read takes
a good part of a second, so that the kills land inside the freeze.

A target that dies under the read is "process N exited while it was being
read", status 2, whatever read it broke: build/snarl-dying (the command
line with tests/dying/'s hook) kills it at each point of the live backend
in turn, frozen and not, with its parent reaping it at once, leaving it a
zombie, or before it has finished dying; then random kills under CPU load,
gdb and lldb holding a target that is killed, and `snarl watch` whose
command dies during the report."""
import os
import random
import re
import select
import shutil
import signal
import subprocess
import threading
import time

import pytest

import pythons
import debuggers
from harness import ROOT, SAMPLES, SNARL

SANITIZED = os.path.join(ROOT, "build", "asan", "snarl")
# The kill-hook build, sanitized when `make asan` has built it.
DYING = next((p for p in (os.path.join(ROOT, "build", "asan", "snarl-dying"),
                          os.path.join(ROOT, "build", "snarl-dying")) if os.access(p, os.X_OK)),
             os.path.join(ROOT, "build", "snarl-dying"))
# Tasks in the target: a frozen read of them takes a few hundred ms.
TASKS = 20000
READY_TIMEOUT = 120
# Kills per test, spread over the time one read takes.
KILLS = 8
# What snarl may ask of ptrace: attach without stopping, stop, let go.
# Anything else (POKE*, SET*, CONT with a signal...) would change the target.
PTRACE_ALLOWED = {"PTRACE_SEIZE", "PTRACE_INTERRUPT", "PTRACE_DETACH", "PTRACE_LISTEN"}


def host_python():
    hosts = [p for p in pythons.PYTHONS if p.root == "/" and not p.debug]
    if not hosts:
        pytest.skip("no interpreter outside a chroot found")
    return hosts[0]


class ManyTasks:
    """samples/many_tasks.py running TASKS tasks; a context manager."""

    def __init__(self, tasks=TASKS):
        self.tasks = tasks

    def __enter__(self):
        py = host_python()
        self.proc = subprocess.Popen(list(py.argv) + [os.path.join(SAMPLES, "many_tasks.py"),
                                                      str(self.tasks)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError("many_tasks.py did not get ready: %r" % line)
        self.pid = int(line.split()[1])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def untraced_and_running(pid):
    """Waits briefly for the detach, then: no tracer, no thread stopped."""
    deadline = time.monotonic() + 5
    while True:
        with open("/proc/%d/status" % pid) as f:
            traced = "TracerPid:\t0" not in f.read()
        stopped = []
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "tT":
                    stopped.append(tid)
        if (not traced and not stopped) or time.monotonic() > deadline:
            return not traced and not stopped
        time.sleep(0.01)


def timed_read(*args):
    start = time.monotonic()
    out = subprocess.run([SNARL] + list(args), capture_output=True)
    return out, time.monotonic() - start


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "no-freeze"])
def test_snarl_never_writes_into_its_target(tmp_path, freeze):
    log = str(tmp_path / "strace.log")
    with ManyTasks() as target:
        args = ["check"] + ([] if freeze else ["--no-freeze"]) + [str(target.pid)]
        out = subprocess.run(["strace", "-f", "-qq", "-o", log, "-e",
                              "trace=ptrace,process_vm_writev,process_vm_readv,open,openat",
                              SNARL] + args, capture_output=True)
        assert out.returncode in (0, 1), out.stderr
        assert untraced_and_running(target.pid)
    text = open(log).read()
    assert "process_vm_readv(%d" % target.pid in text  # the log saw the reads
    assert "process_vm_writev" not in text
    requests = set(re.findall(r"ptrace\((PTRACE_[A-Z_]+)", text))
    assert requests <= PTRACE_ALLOWED, requests - PTRACE_ALLOWED
    assert ("PTRACE_SEIZE" in requests) == freeze
    # /proc/PID/mem, if ever opened, only for reading.
    for line in re.findall(r'open(?:at)?\(.*"/proc/%d/[^"]*mem".*' % target.pid, text):
        assert "O_RDONLY" in line and "O_RDWR" not in line and "O_WRONLY" not in line, line


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_snarl_inside_a_long_freeze_leaves_the_target_running(sig):
    with ManyTasks() as target:
        _, took = timed_read("check", str(target.pid))
        for i in range(KILLS):
            p = subprocess.Popen([SNARL, "check", str(target.pid)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(took * (i + 0.5) / KILLS)
            p.send_signal(sig)
            p.wait()
            assert untraced_and_running(target.pid), "stopped or traced after kill %d" % i
        # Still a whole, readable program.
        out, _ = timed_read("check", "--format", "json", str(target.pid))
        assert out.returncode == 1 and b'"all-asleep"' in out.stdout


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "no-freeze"])
def test_a_target_that_dies_mid_read_is_a_clean_error(freeze):
    binary = SANITIZED if os.access(SANITIZED, os.X_OK) else SNARL
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    rng = random.Random(1)
    outcomes = set()
    for i in range(KILLS // 2):
        with ManyTasks() as target:
            start = time.monotonic()
            args = [binary, "check"] + ([] if freeze else ["--no-freeze"]) + [str(target.pid)]
            p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 env=env)
            time.sleep(rng.uniform(0.0, 0.3))
            target.proc.kill()
            target.proc.wait()
            _, err = p.communicate(timeout=120)
            err = err.decode("utf-8", "replace")
            assert "Sanitizer" not in err and "runtime error" not in err, err
            assert p.returncode in (0, 1, 2), (p.returncode, err)
            if p.returncode == 2:
                assert_says_exited(err, target.pid)
            outcomes.add(p.returncode)
            assert time.monotonic() - start < 120
    # At least one kill landed inside a read (a target killed before snarl
    # attached is also "exited"; one killed after it finished leaves 1).
    assert 2 in outcomes, outcomes


def exited_while_read(pid):
    return "snarl: process %d exited while it was being read\n" % pid


def assert_says_exited(err, pid, reaped_before=True):
    """One of the sentences for a target that died: while it was read;
    before snarl looked, still a zombie; or reaped before snarl started
    (a PID that no longer is, when the kill came that early)."""
    ok = [exited_while_read(pid),
          "snarl: process %d has already exited\n" % pid,
          "snarl: process %d has already exited\nhint: it is a zombie: its parent has not "
          "collected its exit status yet\n" % pid]
    if reaped_before:
        ok.append("snarl: no process with PID %d\nhint: check the PID; the process may have "
                  "exited\n" % pid)
    assert err in ok, err


# Tasks of the target of the kills at chosen points: a read of a few
# thousand backend reads, and a quick start.
POINT_TASKS = 200


def run_dying(pid, freeze, env, timeout=120):
    args = [DYING, "check"] + ([] if freeze else ["--no-freeze"]) + [str(pid)]
    out = subprocess.run(args, capture_output=True, env=dict(os.environ, **env), timeout=timeout)
    return out.returncode, out.stderr.decode("utf-8", "replace")


def read_counts(path):
    with open(path) as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


_COUNTS = {}


def reads_per_check(freeze, tmp_path):
    """How many backend reads one `check` makes of the target, fewest of
    two runs (the number moves a little with what the loop was doing)."""
    if freeze not in _COUNTS:
        counts = []
        for _ in range(2):
            with ManyTasks(POINT_TASKS) as target:
                path = str(tmp_path / "counts")
                status, err = run_dying(target.pid, freeze, {"SNARL_TEST_COUNT": path})
                assert status == 1, err  # all-asleep
                counts.append(read_counts(path))
        assert all(c["fired"] == 0 for c in counts)
        _COUNTS[freeze] = min(c["read"] for c in counts)
    return _COUNTS[freeze]


# (point, which time: a number, or a share of the reads of one check).
# Frozen, the reads before the freeze are the probe, the build-ids and the
# runtime's discovery; a read at 0.85 is in the frozen build. Without
# freezing, a found deadlock is read again 200 ms later to confirm it: 0.3
# is in the first read, 0.75 in the confirming one.
FROZEN_POINTS = [("open", 1), ("maps", 1), ("read", 1), ("freeze", 1), ("seize", 1),
                 ("interrupt", 1), ("read", 0.5), ("read", 0.85)]
RUNNING_POINTS = [("open", 1), ("maps", 1), ("read", 1), ("read", 0.3), ("read", 0.75)]
# What the killed target is when snarl goes on: reaped by its parent at
# once ("gone"), a zombie its parent has not reaped ("dead"), or still
# dying ("none": snarl goes on right after the kill). A target frozen by
# snarl cannot be reaped until snarl lets it go: "gone" only before the
# freeze.
BEFORE_FREEZE = {"open", "maps"}


def point_cases():
    for freeze, points in ((True, FROZEN_POINTS), (False, RUNNING_POINTS)):
        for point, at in points:
            early = not freeze or point in BEFORE_FREEZE or (point, at) == ("read", 1)
            for wait in ("gone", "dead", "none") if early else ("dead", "none"):
                yield pytest.param(freeze, point, at, wait, id="%s-%s-%s-%s" % (
                    "frozen" if freeze else "no-freeze", point, at, wait))


@pytest.mark.skipif(not os.access(DYING, os.X_OK), reason="build/snarl-dying is not built")
@pytest.mark.parametrize("freeze,point,at,wait", list(point_cases()))
def test_a_target_killed_at_a_chosen_point_is_reported_as_exited(tmp_path, freeze, point, at,
                                                                   wait):
    if isinstance(at, float):
        at = max(2, int(reads_per_check(freeze, tmp_path) * at))
    with ManyTasks(POINT_TASKS) as target:
        if wait == "gone":
            # The parent reaps the target the moment it dies.
            threading.Thread(target=target.proc.wait, daemon=True).start()
        path = str(tmp_path / "counts")
        status, err = run_dying(target.pid, freeze, {
            "SNARL_TEST_KILL": "%s:%d" % (point, at), "SNARL_TEST_KILL_WAIT": wait,
            "SNARL_TEST_COUNT": path})
        assert read_counts(path)["fired"] == 1, "the kill point was never reached"
        assert (status, err) == (2, exited_while_read(target.pid))
        if wait == "dead":
            # Nobody reaped it while snarl ran: it was a zombie all along.
            with open("/proc/%d/stat" % target.pid) as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_zombie_target_is_reported_as_already_exited():
    py = host_python()
    proc = subprocess.Popen(list(py.argv) + ["-c", "pass"])
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            with open("/proc/%d/stat" % proc.pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        out = subprocess.run([SNARL, "check", str(proc.pid)], capture_output=True, text=True)
        assert out.returncode == 2
        assert out.stderr == ("snarl: process %d has already exited\nhint: it is a zombie: its "
                              "parent has not collected its exit status yet\n" % proc.pid)
    finally:
        proc.wait()


# Random kills under load: busy loops beside the target and snarl widen the
# windows between two reads, as a loaded CI machine does. 32 rounds take
# about 25 s on two idle cores; on a machine already loaded the rounds stop
# at the time budget (but never fewer than the minimum).
LOAD_PROCESSES = 3
RANDOM_ROUNDS = 32
RANDOM_ROUNDS_MIN = 12
RANDOM_BUDGET = 30
RANDOM_TASKS = 1000


def test_a_target_killed_at_random_under_load_is_reported_as_exited():
    py = host_python()
    load = [subprocess.Popen(list(py.argv) + ["-c", "while True: pass"]) for _ in
            range(LOAD_PROCESSES)]
    rng = random.Random(16)
    seen = []
    try:
        with ManyTasks(RANDOM_TASKS) as target:
            _, took = timed_read("check", str(target.pid))
        end = time.monotonic() + RANDOM_BUDGET
        for i in range(RANDOM_ROUNDS):
            if i >= RANDOM_ROUNDS_MIN and time.monotonic() > end:
                break
            freeze, reap = i % 2 == 0, i % 4 < 2
            with ManyTasks(RANDOM_TASKS) as target:
                if reap:
                    threading.Thread(target=target.proc.wait, daemon=True).start()
                args = [SNARL, "check"] + ([] if freeze else ["--no-freeze"]) + [str(target.pid)]
                p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(rng.uniform(0.0, took))
                target.proc.kill()
                _, err = p.communicate(timeout=120)
                err = err.decode("utf-8", "replace")
                assert p.returncode in (0, 1, 2), (p.returncode, err)
                if p.returncode == 2:
                    assert_says_exited(err, target.pid, reaped_before=reap)
                seen.append(err == exited_while_read(target.pid))
    finally:
        for b in load:
            b.kill()
            b.wait()
    assert any(seen), "no kill landed inside a read"


@pytest.mark.skipif(not debuggers.GDB or bool(debuggers.missing()),
                    reason=debuggers.missing() or "gdb is not installed")
def test_gdb_says_a_target_killed_while_it_holds_it_has_exited():
    with ManyTasks(POINT_TASKS) as target:
        outs, _, stderr = debuggers.gdb_session(
            ["attach %d" % target.pid, "shell kill -9 %d" % target.pid],
            ["python import time; time.sleep(0.2)", "snarl check",
             "python print('status', gdb.convenience_variable('_snarl_status'))"])
    assert outs[1].stderr == exited_while_read(target.pid), stderr
    assert outs[2].stdout.strip() == "status 2"


@pytest.mark.skipif(not debuggers.LLDB or bool(debuggers.missing()),
                    reason=debuggers.missing() or "lldb is not installed")
def test_lldb_says_a_target_killed_while_it_holds_it_has_exited():
    with ManyTasks(POINT_TASKS) as target:
        outs, status, stderr = debuggers.lldb_session(
            ["process attach -p %d" % target.pid, "platform shell kill -9 %d" % target.pid],
            ["script import time; time.sleep(0.2)", "snarl check"])
    assert status != 0
    # Or lldb saw the process end before snarl ran (its event came first).
    assert outs[1].stderr in ("error: " + exited_while_read(target.pid),
                              "error: snarl: process %d has already exited\nhint: attach to a "
                              "running process ('process attach -p PID') or load a core\n"
                              % target.pid), stderr


def watch_report(env, command, usr1):
    """snarl-dying watch on command (a sample under sh or alone); the report
    asked for with SIGUSR1 once the sample is ready, or at a 2 s deadline.
    Returns (status, stdout, stderr, pid of the sample)."""
    args = [DYING, "watch"] + ([] if usr1 else ["--timeout", "2"]) + ["--"] + command
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, **env))
    ready, _, _ = select.select([p.stdout], [], [], READY_TIMEOUT)
    line = p.stdout.readline() if ready else ""
    assert line.startswith("READY"), line
    if usr1:
        p.send_signal(signal.SIGUSR1)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail("snarl watch did not end: %s" % err)
    return p.returncode, out, err, int(line.split()[1])


def sample_command(via_shell):
    py = host_python()
    argv = list(py.argv) + [os.path.join(SAMPLES, "many_tasks.py"), str(POINT_TASKS)]
    if not via_shell:
        return argv
    return ["sh", "-c", '"$@"; echo "sample ended: $?"', "sh"] + argv


@pytest.mark.skipif(not os.access(DYING, os.X_OK), reason="build/snarl-dying is not built")
@pytest.mark.parametrize("point", ["interrupt:1", "read:100"])
def test_watch_keeps_the_status_of_a_command_that_dies_during_the_report(point):
    """SIGUSR1 asks for a report; the command is killed in the middle of
    it: the report leaves it out and says why, and snarl watch ends with
    the command's own status (SIGKILL: 137), not one lost to the read."""
    status, _, err, pid = watch_report({"SNARL_TEST_KILL": point}, sample_command(False), True)
    assert "snarl watch: process %d exited while it was being read; it is not in the report" \
        % pid in err, err
    assert "could not be analysed" not in err
    assert status == 128 + signal.SIGKILL, err


@pytest.mark.skipif(not os.access(DYING, os.X_OK), reason="build/snarl-dying is not built")
def test_watch_lets_a_parent_reap_a_sample_killed_while_frozen():
    """The sample is a grandchild: its parent (sh) waits for it. Killed in
    the frozen read, it must reach sh when the read ends, and the command
    go on to its end, not wait for snarl watch to exit."""
    status, out, err, pid = watch_report({"SNARL_TEST_KILL": "read:100"}, sample_command(True),
                                         True)
    assert "sample ended: %d" % (128 + signal.SIGKILL) in out, (out, err)
    assert status == 0, err


@pytest.mark.skipif(not os.access(DYING, os.X_OK), reason="build/snarl-dying is not built")
def test_watch_at_the_deadline_leaves_out_a_command_that_died_during_the_report():
    status, _, err, pid = watch_report({"SNARL_TEST_KILL": "read:100"}, sample_command(False),
                                       False)
    assert "snarl watch: process %d exited while it was being read; it is not in the report" \
        % pid in err, err
    assert "no Python process in the command's process tree" in err
    assert status == 124, err
