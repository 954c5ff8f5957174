"""Bad targets end with exit status 2 and one clear sentence plus a hint,
never a crash; a target snarl read is left running and untraced."""
import glob
import os
import shutil
import signal
import subprocess
import time

import pytest

import pythons
from harness import Sample, run_snarl, sample_threads, snarl_json

HOST_PYTHONS = [p for p in pythons.PYTHONS if p.root == "/" and not p.debug]


def any_python():
    if not pythons.PYTHONS:
        pytest.skip("no supported interpreter found")
    return (HOST_PYTHONS or pythons.PYTHONS)[0]


def assert_clean_error(out, *words):
    err = out.stderr.decode("utf-8", errors="replace")
    assert out.returncode == 2, (out.returncode, err)
    assert err.startswith("snarl: "), err
    for w in words:
        assert w in err, (w, err)
    return err


def test_a_pid_that_does_not_exist_is_a_clean_error(snarl):
    p = subprocess.Popen(["true"])
    p.wait()
    assert_clean_error(run_snarl("stacks", p.pid), "no process with PID %d" % p.pid)


def test_a_process_that_is_not_python_names_the_files_searched(snarl):
    p = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.2)
        err = assert_clean_error(run_snarl("stacks", p.pid), "no Python runtime")
        assert "sleep" in err and "hint:" in err
    finally:
        p.kill()
        p.wait()


def test_python_310_is_named_as_unsupported(snarl):
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(pyenv, "versions", "3.10*", "bin", "python3.10")))
    found += [p for p in ("/usr/bin/python3.10",) if os.path.exists(p)]
    if not found:
        pytest.skip("no Python 3.10 on this machine")
    p = subprocess.Popen([found[0], "-c", "import time; print('x', flush=True); time.sleep(60)"],
                         stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        assert_clean_error(run_snarl("stacks", p.pid), "3.10", "3.11 to 3.15")
    finally:
        p.kill()
        p.wait()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run snarl as another user")
def test_permission_denied_says_what_to_try(snarl, tmp_path):
    py = any_python()
    with Sample(py, "threads_stuck.py", tmp_path) as s:
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              snarl, "stacks", str(s.pid)], capture_output=True)
        err = assert_clean_error(out, "hint:")
        assert "permission" in err.lower() or "cannot read" in err
        assert "ptrace" in err


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_another_tracer_is_named_and_no_freeze_still_reads(snarl, tmp_path):
    py = any_python()
    with Sample(py, "threads_stuck.py", tmp_path) as s:
        tracer = subprocess.Popen(["strace", "-q", "-o", os.devnull, "-p", str(s.pid)])
        try:
            for _ in range(100):
                if "TracerPid:\t0" not in open("/proc/%d/status" % s.pid).read():
                    break
                time.sleep(0.05)
            assert_clean_error(run_snarl("stacks", s.pid), "already traced")
            doc = snarl_json("stacks", "--no-freeze", s.pid)
            assert len(sample_threads(doc)) == len(s.truth["threads"])
        finally:
            tracer.terminate()
            tracer.wait()


def test_the_target_keeps_running_untraced_after_a_frozen_read(snarl, tmp_path):
    py = any_python()
    with Sample(py, "threads_stuck.py", tmp_path) as s:
        assert run_snarl("stacks", s.pid).returncode == 0
        status = open("/proc/%d/status" % s.pid).read()
        assert "TracerPid:\t0" in status
        for tid in os.listdir("/proc/%d/task" % s.pid):
            st = open("/proc/%d/task/%s/status" % (s.pid, tid)).read()
            assert "State:\tt" not in st and "State:\tT" not in st


def test_garbage_instead_of_a_core_is_a_clean_error(snarl, tmp_path):
    bad = tmp_path / "core.garbage"
    bad.write_bytes(os.urandom(8192))
    assert_clean_error(run_snarl("stacks", bad), "not an ELF file")


def test_an_elf_file_that_is_not_a_core_is_a_clean_error(snarl):
    assert_clean_error(run_snarl("stacks", "/bin/sh"), "not a core dump")


def test_an_empty_core_is_a_clean_error(snarl, tmp_path):
    bad = tmp_path / "core.empty"
    bad.write_bytes(b"")
    assert_clean_error(run_snarl("stacks", bad))


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
@pytest.mark.parametrize("keep", [0.02, 0.3, 0.6, 0.9])
def test_a_truncated_core_is_reported_never_a_crash(snarl, tmp_path, keep):
    py = any_python()
    with Sample(py, "threads_stuck.py", tmp_path) as s:
        core = s.gcore(str(tmp_path))
    size = os.path.getsize(core)
    with open(core, "r+b") as f:
        f.truncate(int(size * keep))
    out = run_snarl("stacks", core)
    err = out.stderr.decode(errors="replace")
    assert out.returncode in (0, 2), (out.returncode, err)
    text = out.stdout.decode("utf-8", errors="replace") + err
    assert "truncated" in text


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_a_core_whose_executable_is_gone_suggests_sysroot_and_both_fixes_work(snarl, tmp_path):
    debian = [p for p in HOST_PYTHONS if p.argv[0].startswith("/usr/bin/")]
    if not debian:
        pytest.skip("needs a distribution python whose binary can be copied")
    py = debian[0]
    moved = tmp_path / "bin"
    moved.mkdir()
    exe = moved / os.path.basename(py.argv[0])
    shutil.copy2(py.argv[0], exe)
    copy = pythons.Python(py.label, py.minor, py.version, (str(exe),))
    with Sample(copy, "threads_stuck.py", tmp_path) as s:
        core = s.gcore(str(tmp_path))
        truth = s.truth
    sysroot = tmp_path / "sysroot"
    (sysroot / str(moved).lstrip("/")).mkdir(parents=True)
    shutil.move(str(exe), sysroot / str(moved).lstrip("/") / exe.name)
    err = assert_clean_error(run_snarl("stacks", core), "--sysroot")
    assert str(exe) in err
    doc = snarl_json("stacks", "--sysroot", sysroot, core)
    assert len(sample_threads(doc)) == len(truth["threads"])
    doc = snarl_json("stacks", core, sysroot / str(moved).lstrip("/") / exe.name)
    assert len(sample_threads(doc)) == len(truth["threads"])


def test_usage_errors_exit_2(snarl):
    assert_clean_error(run_snarl("stacks"), "no target")
    assert_clean_error(run_snarl("stacks", "--format", "yaml", "1"), "--format")
    assert_clean_error(run_snarl("stacks", "/nonexistent/core"), "neither a PID")
    assert_clean_error(run_snarl("--bogus"), "unknown option")


# Kills land at spread-out moments of snarl's run; with this many tries some
# fall inside the frozen read on any machine.
KILL_TRIES = 40
KILL_SPREAD_S = 0.012


def thread_states(pid):
    states = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            states[tid] = f.read().rsplit(")", 1)[1].split()[0]
    return states


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killing_snarl_mid_read_never_leaves_the_target_stopped(snarl, tmp_path, sig):
    py = any_python()
    with Sample(py, "threads_stuck.py", tmp_path) as s:
        for i in range(KILL_TRIES):
            p = subprocess.Popen([snarl, "stacks", str(s.pid)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(KILL_SPREAD_S * i / KILL_TRIES)
            p.send_signal(sig)
            p.wait()
            # The kernel (SIGKILL) or snarl's handler (others) resumes the
            # target; give the detach a moment, then nothing may be stopped.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                states = thread_states(s.pid)
                traced = "TracerPid:\t0" not in open("/proc/%d/status" % s.pid).read()
                if not traced and not any(st in "tT" for st in states.values()):
                    break
                time.sleep(0.01)
            assert not traced, "still traced after try %d" % i
            assert not any(st in "tT" for st in states.values()), (i, states)
        # And it still runs: the sample's spinner thread keeps using CPU.
        before = cpu_ticks(s.pid)
        time.sleep(0.3)
        assert cpu_ticks(s.pid) > before
        assert run_snarl("stacks", s.pid).returncode == 0
