"""pytest_snarl: a test that runs past its timeout fails with snarl's report
of why it hangs (its asyncio deadlock, the loop nothing can wake...), read
from the test process just before the test is failed.

Load it with `pytest -p pytest_snarl` (this directory on PYTHONPATH) or
`pytest_plugins = ["pytest_snarl"]` in a conftest.py. snarl is found with
--snarl-path, then $SNARL, then PATH.

Which timeout:
- pytest-timeout's, when it gives the test one (--timeout, the `timeout`
  ini value, PYTEST_TIMEOUT, @pytest.mark.timeout(N)). The plugin holds
  pytest-timeout's timer back; at the deadline snarl reads the process, and
  then pytest-timeout acts as it always does (method "signal": the test
  fails with its stack dump; method "thread": stacks, then the process
  exits), with the report added.
- otherwise the plugin's own, --snarl-timeout SECONDS (or the
  `snarl_timeout` ini value, or @pytest.mark.snarl_timeout(N)): at the
  deadline snarl reads the process, then the test fails (SIGALRM, raised in
  the main thread, as pytest-timeout's signal method does).

How the process is read: a process cannot trace itself, and a thread of
ours would be one more Python thread in the report (which hides "all
asleep": another thread could still wake the loop). So one small watcher
process per session, started with this interpreter, keeps the deadline: the
test process tells it "arm" and "disarm" over a pipe; at the deadline it
runs `snarl check PID` on the test process, writes the report to a file,
and then sends SIGALRM. ptrace permission: with Yama's
kernel.yama.ptrace_scope = 1 (Ubuntu's default) only an ancestor may trace
a process, and the watcher is our child; so the plugin names the watcher as
its tracer with prctl(PR_SET_PTRACER), which covers the watcher's children
(snarl). ptrace_scope 2 needs CAP_SYS_PTRACE (root); 3 forbids ptrace
altogether: the report then carries snarl's "permission denied" and what
to try. In a container, ptrace may also need `--cap-add SYS_PTRACE`.
"""
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

# prctl(2) option from linux/prctl.h (Yama): who may trace this process.
PR_SET_PTRACER = 0x59616D61
# How long snarl may take on a big test process before the watcher gives
# up on it (a million tasks take a few seconds).
SNARL_RUN_TIMEOUT = 120
# How long disarming waits for the watcher's answer: it answers at once,
# unless it is running snarl (the test ended right at its deadline).
DISARM_WAIT = SNARL_RUN_TIMEOUT + 10
# The section of the failure report that holds snarl's report.
SECTION = "snarl: why the test hangs"

# The watcher, run as `python -I -S -c WATCHER SNARL PID`. Lines on stdin:
# "arm\tSECONDS\tREPORT\tSIGNAL" and "disarm"; it answers each disarm with
# "disarmed" or, when the deadline had passed, "fired" (after the report is
# written and the signal sent). It exits when the test process closes the
# pipe (or dies).
WATCHER = r"""
import os, select, subprocess, sys, time
snarl, pid, run_timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline, job, fired, buf = None, None, False, b""
while True:
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    ready, _, _ = select.select([0], [], [], wait)
    if ready:
        data = os.read(0, 65536)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            f = line.decode("utf-8", "surrogateescape").split("\t")
            if f[0] == "arm":
                deadline, job, fired = time.monotonic() + float(f[1]), f[2:], False
            elif f[0] == "disarm":
                deadline = None
                os.write(1, b"fired\n" if fired else b"disarmed\n")
                fired = False
        continue
    deadline, fired = None, True
    report, sig = job[0], int(job[1])
    with open(report + ".part", "wb") as out:
        try:
            r = subprocess.run([snarl, "check", str(pid)], stdout=out, stderr=subprocess.STDOUT,
                               timeout=run_timeout)
            if r.returncode == 2:
                out.write(b"(snarl could not read the test process: see above)\n")
        except (OSError, subprocess.SubprocessError) as e:
            out.write(("snarl could not run: %s\n" % e).encode())
    os.rename(report + ".part", report)
    if sig:
        os.kill(pid, sig)
"""


def pytest_addoption(parser):
    group = parser.getgroup("snarl", "snarl: reports on hanging tests")
    group.addoption("--snarl-timeout", type=float, default=None, metavar="SECONDS",
                    help="fail a test that runs longer, with snarl's report of why it hangs "
                         "(when pytest-timeout gives it no timeout of its own)")
    group.addoption("--snarl-path", default=None, metavar="PATH",
                    help="the snarl executable (default: $SNARL, then PATH)")
    parser.addini("snarl_timeout", "default for --snarl-timeout (seconds)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "snarl_timeout(seconds): this test's --snarl-timeout")
    config.pluginmanager.register(SnarlPlugin(config), "snarl-plugin")


def _find_snarl(config):
    path = config.getoption("snarl_path") or os.environ.get("SNARL") or shutil.which("snarl")
    return path if path and os.access(path, os.X_OK) else None


def _allow_tracer(pid):
    """Yama: let pid (and its children) trace us; no-op where there is no
    Yama (prctl then fails with EINVAL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PTRACER, ctypes.c_ulong(pid), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _pytest_timeout(item):
    """The timeout pytest-timeout gives item, or None (read the way it
    reads it: marker, then --timeout, PYTEST_TIMEOUT, the ini value)."""
    config = item.config
    if not config.pluginmanager.has_plugin("timeout"):
        return None
    marker = item.get_closest_marker("timeout")
    values = []
    if marker is not None:
        values.append(marker.args[0] if marker.args else marker.kwargs.get("timeout"))
    values += [config.getoption("timeout", None), os.environ.get("PYTEST_TIMEOUT")]
    try:
        values.append(config.getini("timeout"))
    except ValueError:
        pass
    for v in values:
        if v not in (None, ""):
            try:
                return float(v) if float(v) > 0 else None
            except (TypeError, ValueError):
                return None
    return None


def _snarl_timeout(item):
    marker = item.get_closest_marker("snarl_timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    value = item.config.getoption("snarl_timeout")
    if value is None:
        ini = item.config.getini("snarl_timeout")
        value = float(ini) if ini else None
    return value if value and value > 0 else None


class SnarlPlugin:
    def __init__(self, config):
        self.config = config
        self.snarl = _find_snarl(config)
        self.watcher = None
        self.dir = None
        self.count = 0
        self.armed = None      # (item, report path) while a deadline is set
        self.reports = {}      # nodeid -> report path, once fired
        self.attached = set()  # reports already added to a failure (setup, call, teardown)

    # -- the watcher --

    def _start_watcher(self):
        if self.watcher is not None and self.watcher.poll() is None:
            return True
        if not self.snarl:
            return False
        self.dir = self.dir or tempfile.mkdtemp(prefix="pytest-snarl-")
        self.watcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WATCHER, self.snarl, str(os.getpid()),
             str(SNARL_RUN_TIMEOUT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        _allow_tracer(self.watcher.pid)
        return True

    def _arm(self, item, seconds, sig):
        if not self._start_watcher():
            return None
        self.count += 1
        report = os.path.join(self.dir, "report-%d.txt" % self.count)
        self.watcher.stdin.write(("arm\t%r\t%s\t%d\n" % (seconds, report, sig)).encode())
        self.watcher.stdin.flush()
        self.armed = (item, report)
        return report

    def _disarm(self):
        """True when the deadline had passed (the report is written)."""
        if self.armed is None:
            return False
        item, report = self.armed
        self.armed = None
        try:
            self.watcher.stdin.write(b"disarm\n")
            self.watcher.stdin.flush()
            ready, _, _ = select.select([self.watcher.stdout], [], [], DISARM_WAIT)
            answer = self.watcher.stdout.readline() if ready else b""
        except (OSError, ValueError):
            answer = b""
        fired = answer.strip() == b"fired" or os.path.exists(report)
        if fired:
            self.reports[item.nodeid] = report
        return fired

    def _report_text(self, report, wait=0.0):
        end = time.monotonic() + wait
        while not os.path.exists(report) and time.monotonic() < end:
            time.sleep(0.05)
        try:
            with open(report, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return "snarl wrote no report (it did not finish in %ss)\n" % SNARL_RUN_TIMEOUT

    # -- pytest-timeout: run snarl first, then let it act --

    @pytest.hookimpl(hookwrapper=True, optionalhook=True)
    def pytest_timeout_set_timer(self, item, settings):
        yield
        if not self.snarl:
            return
        method = settings.method
        if method == "signal" and threading.current_thread() is not threading.main_thread():
            method = "thread"
        their_cancel = getattr(item, "cancel_timeout", None)
        if method == "signal" and signal.getitimer(signal.ITIMER_REAL)[0] > 0:
            # Its SIGALRM handler stays; the watcher sends the signal once
            # the report is written, instead of the timer.
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._arm(item, settings.timeout, signal.SIGALRM)
        elif method == "thread" and their_cancel is not None:
            # Its timer thread is replaced by ours, which waits for the
            # report, shows it, then does what its thread would have done.
            their_cancel()
            report = self._arm(item, settings.timeout, 0)
            plugin = self.config.pluginmanager.get_plugin("timeout")
            timer = threading.Timer(settings.timeout, self._thread_timeout,
                                    (item, settings.timeout, report, plugin))
            timer.daemon = True
            timer.name = "snarl timeout %s" % item.nodeid
            timer.start()
            their_cancel = timer.cancel
        else:
            return

        def cancel():
            self._disarm()
            if their_cancel is not None:
                their_cancel()

        item.cancel_timeout = cancel

    def _thread_timeout(self, item, timeout, report, plugin):
        text = self._report_text(report, SNARL_RUN_TIMEOUT)
        # The process ends in os._exit: nothing would clean up after us.
        shutil.rmtree(self.dir, ignore_errors=True)
        sys.stderr.write("\n%s\n%s\n" % (SECTION, text))
        sys.stderr.flush()
        act = getattr(plugin, "timeout_timer", None)
        if act is not None:
            act(item, timeout)
        os._exit(1)

    # -- our own timeout --

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        seconds = _snarl_timeout(item)
        own = (seconds is not None and self.snarl is not None and _pytest_timeout(item) is None
               and threading.current_thread() is threading.main_thread())
        previous = None
        if own:
            def on_alarm(signum, frame):
                __tracebackhide__ = True
                pytest.fail("Timeout: the test ran longer than %gs (--snarl-timeout)" % seconds)

            previous = signal.signal(signal.SIGALRM, on_alarm)
            self._arm(item, seconds, signal.SIGALRM)
        try:
            yield
        finally:
            if own:
                self._disarm()
                signal.signal(signal.SIGALRM,
                              previous if previous is not None else signal.SIG_DFL)

    # -- the report, on the failure --

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        if not rep.failed:
            return
        report = self.reports.pop(item.nodeid, None)
        if report is None and self.armed is not None and self.armed[0] is item:
            # The failure came from the deadline while still armed (the
            # alarm is raised before anything disarms).
            if os.path.exists(self.armed[1]):
                report = self.armed[1]
        if report is None or report in self.attached:
            return
        self.attached.add(report)
        text = self._report_text(report)
        longrepr = rep.longrepr
        if hasattr(longrepr, "addsection"):
            longrepr.addsection(SECTION, text)
        else:
            rep.sections.append((SECTION, text))

    def pytest_report_header(self, config):
        if self.snarl:
            return "snarl: %s (reports on tests that time out)" % self.snarl
        return ("snarl: not found (--snarl-path, $SNARL or PATH): tests that time out will "
                "have no report")

    def pytest_unconfigure(self, config):
        if self.watcher is not None:
            try:
                self.watcher.stdin.close()
                self.watcher.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.watcher.kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
