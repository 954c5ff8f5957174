"""`snarl watch -- CMD`: a command that finishes in time is passed through
untouched (stdin, stdout, stderr, exit status); one that hangs is read
live, reported on and stopped, with the exit status the diagnosis gives.

Every diagnosis sample (samples/diag_*.py) runs under `snarl watch
--timeout` at once (they sit idle once stuck, so running them side by side
keeps the suite short), on Debian's 3.11 and the chroot's 3.14: the report
must name exactly the diagnoses the sample's own truth declares, the exit
status must be 1 (124 for the healthy ones: hung, nothing wrong) and come
within the timeout plus a few seconds. The other tests take one sample or
a small script each: a grandchild Python (`sh -c`), a command that
ignores SIGTERM, SIGUSR1 for a report now, SIGTERM passed on, --core-dir,
text reports, usage errors.
"""
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import pythons
from harness import SAMPLES, SNARL, run_snarl
from schema_check import assert_valid
from test_check import SAMPLES as DIAG_SAMPLES

# The interpreters watch runs under: the oldest supported, and a chroot one
# (a process whose files live in another root). Not the whole matrix: the
# engine itself is tested on every interpreter elsewhere.
WATCH_MINORS = ("3.11", "3.14")
# The deadline of the sample batch: every sample is settled well before
# (they take a fraction of a second, even side by side).
BATCH_TIMEOUT = 6
# The deadline of the single-command tests.
TIMEOUT = 3
# From the deadline to snarl's exit: the report (a fraction of a second
# here), then SIGTERM and the tree's exit.
SLACK = 5
# The grace before SIGKILL in the test of a command that ignores SIGTERM.
KILL_AFTER = 1
# How long a test waits for a sample to print READY, or for a report file
# to appear after SIGUSR1.
READY_WAIT = 60
# Ceiling for any one snarl watch run in these tests.
RUN_LIMIT = 120
STATUS_TIMEOUT = 124
STATUS_USAGE = 125


def _watch_pythons():
    chosen = []
    for minor in WATCH_MINORS:
        found = [p for p in pythons.PYTHONS if p.minor == minor and not p.debug]
        if found:
            chosen.append(found[0])
    return chosen


WATCH_PYTHONS = _watch_pythons()
python_param = pytest.mark.parametrize("wpython", WATCH_PYTHONS,
                                       ids=[p.label for p in WATCH_PYTHONS])


class Staged:
    """The samples copied where the interpreter sees them (inside its root
    for a chroot), as the harness does; removed by cleanup()."""

    def __init__(self, python):
        self.python = python
        self.dir = tempfile.mkdtemp(prefix="snarl-watch-", dir=python.host_path("/tmp"))
        shutil.copytree(SAMPLES, os.path.join(self.dir, "samples"))

    def path(self, name):
        return os.path.join(self.dir, name)

    def argv(self, sample, *args):
        script = self.python.guest_path(self.path(os.path.join("samples", sample)))
        return list(self.python.argv) + [script] + [str(a) for a in args]

    def sample_argv(self, sample):
        """A diagnosis sample with its truth file (see truth())."""
        return self.argv(sample, self.python.guest_path(self.path(sample + ".truth.json")))

    def truth(self, sample):
        with open(self.path(sample + ".truth.json"), encoding="utf-8") as f:
            return json.load(f)

    def script(self, name, text):
        """A small program of a test's own, next to the samples."""
        with open(self.path(os.path.join("samples", name)), "w", encoding="utf-8") as f:
            f.write(text)
        return name

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def staged(request):
    s = Staged(request.getfixturevalue("wpython"))
    yield s
    s.cleanup()


def _env():
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8")
    env.pop("PYTHONPATH", None)
    return env


def _watch(*args, **kw):
    """Runs snarl watch to the end; returns (CompletedProcess, seconds)."""
    t0 = time.monotonic()
    out = subprocess.run([SNARL, "watch"] + [str(a) for a in args], capture_output=True,
                         timeout=RUN_LIMIT, env=_env(), **kw)
    return out, time.monotonic() - t0


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _keys(diagnoses):
    return sorted((d["kind"], tuple(sorted(d["tasks"])), tuple(sorted(d["resources"])))
                  for d in diagnoses)


def _wait_ready(proc):
    """Reads the watched command's stdout up to its READY line."""
    deadline = time.monotonic() + READY_WAIT
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip().startswith(b"READY") or not line:
            break
    assert line.strip().startswith(b"READY"), "the command never said READY: %r" % line


def _wait_lines(path, n):
    deadline = time.monotonic() + READY_WAIT
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if text.count("\n") >= n:
                return [json.loads(line) for line in text.splitlines() if line.strip()]
        time.sleep(0.05)
    pytest.fail("%s did not get %d report(s)" % (path, n))


# ---- every diagnosis sample, side by side ----

@pytest.fixture(scope="module", params=WATCH_PYTHONS, ids=[p.label for p in WATCH_PYTHONS])
def batch(request):
    """Each diagnosis sample under `snarl watch --timeout BATCH_TIMEOUT
    --format json --output FILE`, all started together: {sample: run}."""
    python = request.param
    st = Staged(python)
    runs = {}
    try:
        for sample in DIAG_SAMPLES:
            out = st.path(sample + ".report.json")
            argv = [SNARL, "watch", "--timeout", str(BATCH_TIMEOUT), "--format", "json",
                    "--output", out, "--"] + st.sample_argv(sample)
            runs[sample] = {"out": out, "t0": time.monotonic(),
                            "proc": subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE, env=_env())}
        for sample, run in runs.items():
            stdout, stderr = run["proc"].communicate(timeout=RUN_LIMIT)
            run.update(status=run["proc"].returncode, seconds=time.monotonic() - run["t0"],
                       stdout=stdout.decode(errors="replace"),
                       stderr=stderr.decode(errors="replace"))
            try:
                run["truth"] = st.truth(sample)
                run["docs"] = _lines(run["out"])
            except (OSError, ValueError) as e:
                run["error"] = "%s: %s; stderr: %s" % (sample, e, run["stderr"])
        yield runs
    finally:
        for run in runs.values():
            if run["proc"].poll() is None:
                run["proc"].kill()
                run["proc"].wait()
        st.cleanup()


def _run_of(batch, sample):
    run = batch[sample]
    if "error" in run:
        pytest.fail(run["error"])
    return run


@pytest.mark.parametrize("sample", DIAG_SAMPLES)
def test_a_hung_sample_is_reported_with_its_diagnoses(batch, sample):
    """One snarl-watch/1 document naming the sample's process (the direct
    child) and exactly the diagnoses its truth declares."""
    run = _run_of(batch, sample)
    truth = run["truth"]
    assert len(run["docs"]) == 1, run["docs"]
    doc = run["docs"][0]
    assert_valid(doc, "snarl-watch-1.schema.json")
    assert doc["reason"] == "timeout"
    assert [p["pid"] for p in doc["processes"]] == [truth["pid"]], run["stderr"]
    proc = doc["processes"][0]
    assert proc["error"] is None and proc["report"], proc
    assert proc["report"]["target"]["python"] == truth["python"]
    assert _keys(proc["report"]["diagnoses"]) == _keys(truth["diagnoses"])


@pytest.mark.parametrize("sample", DIAG_SAMPLES)
def test_a_hung_sample_exits_with_the_diagnosis_status_within_the_deadline(batch, sample):
    """1 when something was found, 124 for a healthy sample that simply
    never ends; within the timeout plus a few seconds; the command's own
    output passed through."""
    run = _run_of(batch, sample)
    want = 1 if run["truth"]["exit"] == 1 else STATUS_TIMEOUT
    assert run["status"] == want, run["stderr"]
    assert run["docs"][0]["status"] == want
    assert run["seconds"] < BATCH_TIMEOUT + SLACK, run["seconds"]
    assert run["stdout"].strip() == "READY"
    assert "did not finish within" in run["stderr"]


# ---- commands that finish in time ----

HEALTHY = [
    ["true"],
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["sh", "-c", "printf 'no newline'; kill -TERM $$"],
    ["sh", "-c", "kill -KILL $$"],
    [sys.executable, "-c", "import sys; print('from python'); sys.exit(7)"],
]


@pytest.mark.parametrize("cmd", HEALTHY, ids=["true", "exit-3", "sigterm", "sigkill", "python"])
def test_a_command_that_finishes_in_time_is_passed_through_untouched(cmd):
    """Same exit status (a death by signal N as 128+N, as shells say it),
    same stdout and stderr, nothing added, no waiting for the deadline."""
    direct = subprocess.run(cmd, capture_output=True, timeout=RUN_LIMIT)
    watched, seconds = _watch("--timeout", "30", "--", *cmd)
    want = direct.returncode if direct.returncode >= 0 else 128 - direct.returncode
    assert watched.returncode == want
    assert watched.stdout == direct.stdout
    assert watched.stderr == direct.stderr
    assert seconds < 30


def test_stdin_is_passed_through():
    data = bytes(range(256)) * 64
    out, _ = _watch("--", "cat", input=data)
    assert out.returncode == 0
    assert out.stdout == data
    assert out.stderr == b""


def test_a_command_without_python_that_hangs_exits_124():
    out, seconds = _watch("--timeout", "1", "--", "sleep", "60")
    assert out.returncode == STATUS_TIMEOUT
    assert b"no Python process" in out.stderr
    assert seconds < 1 + SLACK


@pytest.mark.parametrize("args,status,words", [
    ([], STATUS_USAGE, "no command"),
    (["--bogus", "--", "true"], STATUS_USAGE, "unknown option"),
    (["--timeout", "soon", "--", "true"], STATUS_USAGE, "--timeout"),
    (["--format", "yaml", "--", "true"], STATUS_USAGE, "--format"),
    (["--signal", "NOPE", "--", "true"], STATUS_USAGE, "--signal"),
    (["--output", "/nonexistent/dir/report", "--", "true"], STATUS_USAGE, "--output"),
    (["--", "/nonexistent/command"], 127, "cannot run"),
    (["--", "NOT_EXECUTABLE"], 126, "cannot run"),
])
def test_usage_errors_and_commands_that_cannot_run(args, status, words, tmp_path):
    """Usage errors exit 125 before anything runs (as timeout(1) does);
    a command not found 127, not executable 126 (as shells do)."""
    plain = tmp_path / "not-executable"
    plain.write_text("echo never\n")
    plain.chmod(0o644)
    out, _ = _watch(*[str(plain) if a == "NOT_EXECUTABLE" else a for a in args])
    assert out.returncode == status, out.stderr
    assert words.encode() in out.stderr, out.stderr


def test_watch_must_be_the_first_word():
    out = run_snarl("--format", "json", "watch", "--", "true")
    assert out.returncode == 2
    assert b"comes first" in out.stderr


# ---- hung commands, one at a time ----

@python_param
def test_the_report_on_stderr_names_the_deadlock(wpython, staged):
    """Without --output the text report goes to stderr, after a line
    saying what timed out; stdout stays the command's."""
    out, seconds = _watch("--timeout", TIMEOUT, "--", *staged.sample_argv("diag_lock_cycle.py"))
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 1, err
    assert out.stdout.strip() == b"READY"
    assert "did not finish within %ds" % TIMEOUT in err
    assert "Found 3 asyncio deadlocks" in err and "lock-cycle" in err
    for name in ("pair-a", "pair-b", "trio-a", "trio-b", "trio-c", "mixed-a", "mixed-b"):
        assert "'%s'" % name in err
    assert "a problem found in 1 of 1 Python process" in err
    assert seconds < TIMEOUT + SLACK


@python_param
def test_a_python_grandchild_is_found(wpython, staged):
    """`sh -c 'python ...; echo after'`: the Python process is a child of
    the shell; it is found, read and stopped with the shell."""
    argv = ["sh", "-c", '"$@"; echo after', "sh"] + staged.sample_argv("diag_await_cycle.py")
    out_path = staged.path("report.json")
    out, seconds = _watch("--timeout", TIMEOUT, "--format", "json", "--output", out_path,
                          "--", *argv)
    assert out.returncode == 1, out.stderr
    assert b"after" not in out.stdout  # the shell was stopped too
    truth = staged.truth("diag_await_cycle.py")
    (doc,) = _lines(out_path)
    (proc,) = doc["processes"]
    assert proc["pid"] == truth["pid"]
    assert proc["ppid"] != os.getpid() and proc["ppid"] > 0
    assert proc["cmdline"][-2].endswith("diag_await_cycle.py")
    assert _keys(proc["report"]["diagnoses"]) == _keys(truth["diagnoses"])
    assert seconds < TIMEOUT + SLACK


IGNORES_SIGTERM = """\
import asyncio, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)

async def main():
    a, b = asyncio.Lock(), asyncio.Lock()

    async def ordered(x, y):
        async with x:
            await asyncio.sleep(0)
            async with y:
                pass

    tasks = [asyncio.create_task(ordered(a, b), name="a-then-b"),
             asyncio.create_task(ordered(b, a), name="b-then-a")]
    await asyncio.sleep(0.1)
    print("READY", flush=True)
    await asyncio.gather(*tasks)

asyncio.run(main())
"""


@python_param
def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(wpython, staged):
    name = staged.script("ignores_sigterm.py", IGNORES_SIGTERM)
    out, seconds = _watch("--timeout", TIMEOUT, "--kill-after", KILL_AFTER, "--",
                          *staged.argv(name))
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 1, err
    assert "'a-then-b'" in err and "lock-cycle" in err
    assert "still running after SIGTERM: killed" in err
    assert seconds < TIMEOUT + KILL_AFTER + SLACK


@python_param
def test_sigusr1_reports_now_and_the_command_keeps_running(wpython, staged):
    """SIGUSR1 (to $SNARL_WATCH_PID): a report, reason "signal"; the
    command runs on until the deadline, which gives a second report."""
    out_path = staged.path("report.json")
    timeout = TIMEOUT * 2  # room for the SIGUSR1 report before the deadline
    proc = subprocess.Popen([SNARL, "watch", "--timeout", str(timeout), "--format", "json",
                             "--output", out_path, "--"] + staged.sample_argv("diag_wake_cycle.py"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        _wait_ready(proc)
        proc.send_signal(signal.SIGUSR1)
        (first,) = _wait_lines(out_path, 1)
        assert first["reason"] == "signal"
        assert proc.poll() is None, "the command was stopped by SIGUSR1"
        assert "wake-cycle" in [d["kind"] for d in first["processes"][0]["report"]["diagnoses"]]
        proc.communicate(timeout=RUN_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    docs = _lines(out_path)
    assert [d["reason"] for d in docs] == ["signal", "timeout"]
    truth = staged.truth("diag_wake_cycle.py")
    assert _keys(docs[1]["processes"][0]["report"]["diagnoses"]) == _keys(truth["diagnoses"])
    for d in docs:
        assert_valid(d, "snarl-watch-1.schema.json")


@python_param
def test_sigterm_to_snarl_is_passed_to_the_command(wpython, staged):
    """No deadline: snarl watch only waits; SIGTERM sent to it goes to the
    command, whose death by SIGTERM is the exit status; no report."""
    proc = subprocess.Popen([SNARL, "watch", "--"] + staged.sample_argv("diag_all_asleep.py"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        _wait_ready(proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=RUN_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    assert err == b""


@python_param
def test_core_dir_keeps_a_core_that_snarl_reads_back(wpython, staged, snarl):
    """--core-dir: DIR/core.PID, readable only by its owner, from which
    `snarl check` finds what the live read found."""
    cores = staged.path("cores")
    out_path = staged.path("report.json")
    out, _ = _watch("--timeout", TIMEOUT, "--core-dir", cores, "--format", "json",
                    "--output", out_path, "--", *staged.sample_argv("diag_lock_reacquire.py"))
    assert out.returncode == 1, out.stderr
    (doc,) = _lines(out_path)
    (proc,) = doc["processes"]
    core = os.path.join(cores, "core.%d" % proc["pid"])
    assert proc["core"] == core
    assert ("core of process %d written to %s" % (proc["pid"], core)).encode() in out.stderr
    assert stat.S_IMODE(os.stat(core).st_mode) == 0o600
    again = run_snarl("check", "--format", "json", core)
    assert again.returncode == 1, again.stderr
    from_core = json.loads(again.stdout)
    assert from_core["target"]["kind"] == "core" and from_core["target"]["pid"] == proc["pid"]
    assert _keys(from_core["diagnoses"]) == _keys(proc["report"]["diagnoses"])
    threads = {t["native_id"] for t in proc["report"]["threads"]}
    assert {t["native_id"] for t in from_core["threads"]} == threads


def test_gdb_reads_the_core_snarl_writes(snarl, tmp_path):
    """The core is a standard ELF core: gdb finds its threads and the
    executable it came from."""
    if not shutil.which("gdb"):
        pytest.skip("gdb not installed")
    cores = tmp_path / "cores"
    out, _ = _watch("--timeout", "1", "--core-dir", cores, "--", sys.executable, "-c",
                    "import threading, time; threading.Thread(target=time.sleep, args=(60,))"
                    ".start(); time.sleep(60)")
    (core,) = list(cores.iterdir())
    gdb = subprocess.run(["gdb", "--batch", "-nx", "-ex", "info threads", sys.executable,
                          str(core)], capture_output=True, text=True, timeout=RUN_LIMIT)
    text = gdb.stdout + gdb.stderr
    assert text.count("[New LWP ") == 2, text
    assert "Core was generated by `%s" % sys.executable in text, text
    # The registers are the threads' own: gdb unwinds into the sleep.
    assert "nanosleep" in text, text


@python_param
def test_fail_on_narrows_what_counts_as_found(wpython, staged):
    """--fail-on a kind the sample does not show: the report still says
    what is there, but the status is 124."""
    out, _ = _watch("--timeout", TIMEOUT, "--fail-on", "weak-pending-task", "--",
                    *staged.sample_argv("diag_lock_cycle.py"))
    assert out.returncode == STATUS_TIMEOUT, out.stderr
    assert b"lock-cycle" in out.stderr
