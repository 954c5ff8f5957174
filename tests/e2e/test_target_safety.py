"""The target is never harmed: snarl writes nothing into it, leaves it
running and untraced when snarl itself is killed in the middle of a long
frozen read, and ends with a clean error when the target dies under it.

The target is samples/many_tasks.py with enough tasks that one read takes
a good part of a second, so that the kills land inside the freeze."""
import os
import random
import re
import select
import shutil
import signal
import subprocess
import time

import pytest

import pythons
from harness import ROOT, SAMPLES, SNARL

SANITIZED = os.path.join(ROOT, "build", "asan", "snarl")
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

    def __enter__(self):
        py = host_python()
        self.proc = subprocess.Popen(list(py.argv) + [os.path.join(SAMPLES, "many_tasks.py"),
                                                      str(TASKS)],
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
                assert err.startswith("snarl: ") and "exited" in err, err
            outcomes.add(p.returncode)
            assert time.monotonic() - start < 120
    # At least one kill landed inside a read (a target killed before snarl
    # attached is also "exited"; one killed after it finished leaves 1).
    assert 2 in outcomes, outcomes
