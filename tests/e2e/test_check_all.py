"""`snarl check --all`: every Python process of the host, a line each, then
the report of each one with a finding. The samples are the truth: the stuck
one's own expected diagnoses, the healthy one's task count, a plain
interpreter with no asyncio; another user cannot read them and is told so."""
import json
import os
import pwd
import shutil
import subprocess
import sys

import pytest

import pythons
from harness import SNARL, Sample
from schema_check import Checker

HOST_PYTHONS = [p for p in pythons.PYTHONS if p.root == "/" and not p.debug]


def _python():
    if not HOST_PYTHONS:
        pytest.skip("no release interpreter at this machine's root")
    return HOST_PYTHONS[0]


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    python = _python()
    tmp = tmp_path_factory.mktemp("all")
    plain = subprocess.Popen(list(python.argv) + ["-c", "import sys, time; print('x', flush=True);"
                                                  " time.sleep(600)"], stdout=subprocess.PIPE)
    plain.stdout.readline()
    with Sample(python, "diag_lock_cycle.py", str(tmp)) as stuck, \
            Sample(python, "diag_healthy_sleepers.py", str(tmp)) as healthy:
        try:
            yield {"stuck": stuck, "healthy": healthy, "plain": plain}
        finally:
            plain.kill()
            plain.wait()


def _run(*args, user=None):
    argv = [SNARL, "check", "--all"] + list(args)
    if user:
        argv = ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid,
                "--clear-groups"] + argv
    r = subprocess.run(argv, capture_output=True, timeout=300)
    # Whatever the processes call themselves, the output is text.
    r.stdout.decode("utf-8")
    r.stderr.decode("utf-8")
    return r


def _rows(text):
    rows = {}
    for line in text.split("\n\n")[0].splitlines()[1:]:
        pid, python, tasks, rest = line.split(None, 3)
        rows[int(pid)] = (python, tasks, rest)
    return rows


def test_each_python_process_gets_a_line_and_the_stuck_one_its_report(processes):
    r = _run()
    assert r.returncode == 1, r.stderr
    out = r.stdout.decode()
    rows = _rows(out)
    stuck, healthy, plain = processes["stuck"], processes["healthy"], processes["plain"]
    expected = {d["kind"] for d in stuck.truth["diagnoses"]}
    assert set(rows[stuck.pid][2].split()[0].split(",")) == expected, rows[stuck.pid]
    assert rows[stuck.pid][0] == stuck.truth["python"]
    assert int(rows[stuck.pid][1]) == len(stuck.truth["tasks"])
    assert rows[healthy.pid][2].startswith("no problem"), rows[healthy.pid]
    assert rows[plain.pid][2].startswith("no asyncio"), rows[plain.pid]
    assert os.getpid() not in rows or "pytest" in rows[os.getpid()][2]
    # The report of the stuck one follows the table, the healthy one's not.
    assert "== process %d (" % stuck.pid in out
    assert "== process %d (" % healthy.pid not in out
    assert out.count("Deadlock ") >= sum(d["kind"] == "lock-cycle" for d in stuck.truth["diagnoses"])


def test_the_json_document_holds_each_process_and_its_own_report(processes):
    r = _run("--format", "json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "snarl-all/1" and doc["status"] == 1
    by_pid = {p["pid"]: p for p in doc["processes"]}
    stuck, healthy = processes["stuck"], processes["healthy"]
    one = Checker("snarl-1.schema.json")
    for s, status in ((stuck, 1), (healthy, 0)):
        p = by_pid[s.pid]
        assert p["status"] == status and p["python"] == s.truth["python"]
        assert p["tasks"] == len(s.truth["tasks"])
        assert one.check(p["report"]) == []
        assert {d["kind"] for d in p["report"]["diagnoses"]} == {
            d["kind"] for d in s.truth["diagnoses"]}
    assert Checker("snarl-all-1.schema.json").check(doc) == []


def test_processes_another_user_cannot_read_are_listed_with_the_reason(processes):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user")
    nobody = pwd.getpwnam("nobody")
    r = _run(user=nobody)
    # Nothing it could read is stuck: the unread ones do not count as found.
    rows = _rows(r.stdout.decode())
    stuck = processes["stuck"]
    assert rows[stuck.pid][2].startswith("not read: permission denied"), rows
    assert "process %d: " % stuck.pid in r.stdout.decode()
    assert r.returncode in (0, 1)


def test_a_target_is_not_taken(snarl):
    r = subprocess.run([snarl, "check", "--all", "1234"], capture_output=True, timeout=60)
    assert r.returncode == 2 and b"takes no target" in r.stderr
