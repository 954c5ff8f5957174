"""plugin/pytest_snarl.py on a small suite of hanging tests
(tests/e2e/data/hang_suite.py), run by a pytest of its own: each test
that runs past its timeout fails with snarl's report of why in its failure
(in the terminal and in the JUnit XML a CI system shows), naming the
deadlock and the very tasks the test recorded before it blocked; a test
that passes is untouched.

Timeouts come from pytest-timeout (its default signal method, and its
thread method, which ends the process) and from the plugin's own
--snarl-timeout, also without pytest-timeout loaded.
"""
import importlib.util
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from harness import ROOT, SNARL

SUITE = os.path.join(ROOT, "tests", "e2e", "data", "hang_suite.py")
PLUGIN_DIR = os.path.join(ROOT, "plugin")
SECTION = "snarl: why the test hangs"
# The suite's timeouts are 3 s each; a run takes their sum plus pytest's
# start and snarl's reads.
RUN_LIMIT = 120
SLACK = 15

HAVE_PYTEST_TIMEOUT = importlib.util.find_spec("pytest_timeout") is not None
needs_pytest_timeout = pytest.mark.skipif(not HAVE_PYTEST_TIMEOUT,
                                          reason="pytest-timeout not installed")


def _pytest(tmp_path, *args):
    truth = tmp_path / "truth"
    truth.mkdir(exist_ok=True)
    junit = tmp_path / "junit.xml"
    env = dict(os.environ, PYTHONPATH=PLUGIN_DIR, SNARL=SNARL, HANG_TRUTH_DIR=str(truth),
               PYTHONDONTWRITEBYTECODE="1")
    t0 = time.monotonic()
    # --noconftest: the project's own conftest (the interpreter matrix) is
    # not part of the sample suite.
    out = subprocess.run([sys.executable, "-m", "pytest", "--noconftest", "-p", "pytest_snarl",
                          "-p", "no:cacheprovider", "--junitxml", str(junit), "-rfE",
                          "--rootdir", str(tmp_path), SUITE] + list(args),
                         capture_output=True, text=True, timeout=RUN_LIMIT, env=env,
                         cwd=str(tmp_path))
    cases = {}
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            failure = case.find("failure")
            cases[case.get("name")] = None if failure is None else (
                (failure.get("message") or "") + "\n" + (failure.text or ""))
    return out, cases, truth, time.monotonic() - t0


def _ids(truth, test):
    with open(truth / (test + ".json"), encoding="utf-8") as f:
        return json.load(f)


def _assert_names_tasks(text, ids):
    for name, task_id in ids.items():
        assert "task '%s' (%s)" % (name, task_id) in text, (name, task_id, text)


@needs_pytest_timeout
def test_tests_past_their_timeout_fail_with_the_report(tmp_path):
    out, cases, truth, seconds = _pytest(tmp_path, "-k", "not thread_method")
    log = out.stdout + out.stderr
    assert out.returncode == 1, log
    assert "2 failed, 1 passed" in log, log
    assert cases["test_passes_quickly"] is None
    lock = cases["test_lock_cycle_under_pytest_timeout"]
    assert lock and "Timeout" in lock and SECTION in lock, lock
    assert "Found 1 asyncio deadlock" in lock and "lock-cycle" in lock
    _assert_names_tasks(lock, _ids(truth, "test_lock_cycle_under_pytest_timeout"))
    forever = cases["test_waits_forever_under_snarl_timeout"]
    assert forever and "--snarl-timeout" in forever and SECTION in forever, forever
    assert "all-asleep" in forever
    _assert_names_tasks(forever, _ids(truth, "test_waits_forever_under_snarl_timeout"))
    # In the terminal too, once per hanging test.
    assert log.count(SECTION) == 2, log
    assert seconds < 3 + 3 + SLACK


@needs_pytest_timeout
def test_the_thread_method_shows_the_report_before_the_process_ends(tmp_path):
    out, _, truth, _ = _pytest(tmp_path, "-k", "thread_method")
    log = out.stdout + out.stderr
    assert out.returncode != 0, log
    assert SECTION in log and "lock-cycle" in log, log
    _assert_names_tasks(log, _ids(truth, "test_lock_cycle_under_pytest_timeout_thread_method"))
    assert log.index(SECTION) < log.rindex("Timeout")  # before pytest-timeout's end


def test_the_plugins_own_timeout_needs_no_pytest_timeout(tmp_path):
    out, cases, truth, _ = _pytest(tmp_path, "-p", "no:timeout", "-k", "snarl_timeout or passes",
                                   "-W", "ignore::pytest.PytestUnknownMarkWarning")
    log = out.stdout + out.stderr
    assert out.returncode == 1, log
    assert cases["test_passes_quickly"] is None
    forever = cases["test_waits_forever_under_snarl_timeout"]
    assert forever and SECTION in forever and "all-asleep" in forever, log
    _assert_names_tasks(forever, _ids(truth, "test_waits_forever_under_snarl_timeout"))


def test_without_snarl_the_header_says_so_and_tests_run_as_usual(tmp_path):
    out, cases, _, _ = _pytest(tmp_path, "--snarl-path", str(tmp_path / "no-snarl"),
                               "-k", "passes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "snarl: not found" in out.stdout
    assert cases == {"test_passes_quickly": None}
