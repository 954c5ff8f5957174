"""Weak reachability against CPython's own cycle collector, on every
interpreter of the matrix, live and from a core made with gcore.

samples/reach_tasks.py makes pending tasks of every shape of CPython issue
91887 (a dropped create_task() awaiting a private future, the inner task of
a timed-out shield, the siblings a failed gather leaves running, ...) beside
tasks something strongly holds, with automatic collection off. Its truth
is the collector's verdict on the very same heap: a forked copy runs
gc.collect() and reports which pending tasks it destroyed. snarl must flag
exactly those (build/snarl-probe --reach: the model built with
reachability) and no other.

The sample also records gc.get_referents() of the objects around the tasks:
every reference snarl enumerates for an object must be one the collector's
tp_traverse visits (a reference snarl made up could make a live task look
unreachable), and for the types snarl claims to know in full, all of them.
"""
import collections
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from harness import ROOT, Sample

PROBE = os.path.join(ROOT, "build", "snarl-probe")
SAMPLE = "reach_tasks.py"
MODES = ("live", "core")
# Types whose tp_traverse snarl follows in full: for these, snarl's
# references must be exactly the collector's. (Modules, whose state the
# module's own m_traverse visits, and int subclasses, whose dict sits at a
# negative offset, are followed in part on purpose.)
EXACT_TYPES = {
    "Task", "Future", "_GatheringFuture", "coroutine", "FutureIter",
    "builtin_function_or_method", "method", "function", "cell", "list", "tuple",
    "dict", "set", "frozenset", "deque", "ReferenceType", "Holder", "Slotted",
    "TaskGroup", "Event", "TimerHandle", "Handle", "traceback", "ValueError",
    "_UnixSelectorEventLoop", "WeakSet",
}
# Mismatches listed in a failure message; the rest are counted.
SHOWN_MISMATCHES = 20

# One run per interpreter: {"truth", "live", "core", "refs"}; a value is a
# document or an error message (Failed).
_RUNS = {}


class Failed(str):
    """A step of the run that failed; its text says why."""


def _probe(*args):
    try:
        out = subprocess.run([PROBE] + [str(a) for a in args], capture_output=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        return Failed("snarl-probe %s did not finish in %s s" % (args, e.timeout))
    if out.returncode != 0:
        return Failed("snarl-probe %s: status %d: %s" % (
            " ".join(map(str, args)), out.returncode,
            out.stderr.decode("utf-8", errors="replace").strip()))
    return json.loads(out.stdout.decode("utf-8"))


def _check(target):
    """`snarl check --format json`: its weak-pending-task diagnoses."""
    out = subprocess.run([os.path.join(ROOT, "build", "snarl"), "check", "--format", "json",
                          str(target)], capture_output=True, timeout=600)
    if out.returncode not in (0, 1):
        return Failed("snarl check %s: status %d: %s" % (
            target, out.returncode, out.stderr.decode("utf-8", errors="replace").strip()))
    return json.loads(out.stdout.decode("utf-8"))


def _run(python):
    if python.label in _RUNS:
        return _RUNS[python.label]
    run = {}
    work = tempfile.mkdtemp(prefix="snarl-reach-")
    try:
        with Sample(python, SAMPLE, work) as s:
            run["truth"] = s.truth
            run["live"] = _probe("--reach", s.pid)
            run["check-live"] = _check(s.pid)
            addrs = os.path.join(work, "addrs.txt")
            with open(addrs, "w") as f:
                f.write("\n".join(s.truth["referents"]) + "\n")
            run["refs"] = _probe("--refs", addrs, s.pid)
            if shutil.which("gcore"):
                try:
                    core = s.gcore(work)
                except RuntimeError as e:
                    core = Failed(str(e))
            else:
                core = Failed("skip: gcore (gdb) not installed")
        run["core"] = core if isinstance(core, Failed) else _probe("--reach", core)
        run["check-core"] = core if isinstance(core, Failed) else _check(core)
    except RuntimeError as e:  # the sample never got ready
        run = {"error": str(e)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _RUNS[python.label] = run
    return run


@pytest.fixture(scope="session")
def probe():
    if not os.access(PROBE, os.X_OK):
        pytest.fail("build/snarl-probe is missing: run make first")
    return PROBE


def _get(python, what):
    run = _run(python)
    if "error" in run:
        pytest.fail(run["error"])
    value = run[what]
    if isinstance(value, Failed):
        if value.startswith("skip: "):
            pytest.skip(value[len("skip: "):])
        pytest.fail(value)
    return value


def test_the_collector_destroys_exactly_the_tasks_the_sample_declares_weak(python, probe):
    truth = _get(python, "truth")
    weak = sorted(r["name"] for r in truth["tasks"] if r["id"] in truth["destroyed"])
    declared = sorted(r["name"] for r in truth["tasks"] if r["expect"] == "weak")
    # The sample fails itself otherwise; this states the shapes it covers.
    assert weak == declared
    assert len(weak) >= 10 and len(truth["tasks"]) - len(weak) >= 10


@pytest.mark.parametrize("mode", MODES)
def test_weak_only_tasks_are_exactly_those_the_collector_destroys(python, probe, mode):
    truth = _get(python, "truth")
    doc = _get(python, mode)
    names = {r["id"]: r["name"] for r in truth["tasks"]}
    assert not doc["reach"]["incomplete"], doc["warnings"]
    assert doc["reach"]["objects"] > 0 and 0 < doc["reach"]["roots"] < doc["reach"]["objects"]
    flagged = {t["id"] for t in doc["tasks"] if t["weak_only"]}
    destroyed = set(truth["destroyed"])
    assert sorted(names.get(i, i) for i in flagged - destroyed) == [], "false alarms"
    assert sorted(names.get(i, i) for i in destroyed - flagged) == [], "missed"
    # Every pending task of the truth is in the model, pending.
    pending = {t["id"] for t in doc["tasks"] if t["state"] == "pending"}
    assert set(names) <= pending


@pytest.mark.parametrize("mode", MODES)
def test_check_reports_each_destroyed_task_as_weak_pending(python, probe, mode):
    """The user-facing command: one weak-pending-task diagnosis per task the
    collector destroys, none for any other task."""
    truth = _get(python, "truth")
    doc = _get(python, "check-" + mode)
    names = {r["id"]: r["name"] for r in truth["tasks"]}
    found = [d for d in doc["diagnoses"] if d["kind"] == "weak-pending-task"]
    assert all(len(d["tasks"]) == 1 for d in found)
    flagged = {d["tasks"][0] for d in found}
    destroyed = set(truth["destroyed"])
    assert sorted(names.get(i, i) for i in flagged - destroyed) == [], "false alarms"
    assert sorted(names.get(i, i) for i in destroyed - flagged) == [], "missed"


def test_references_snarl_enumerates_are_ones_the_collector_visits(python, probe):
    truth = _get(python, "truth")
    mine = _get(python, "refs")["objects"]
    made_up, missing, errors = [], [], []
    for addr, theirs in truth["referents"].items():
        m = mine.get(addr)
        if m is None or m["error"]:
            errors.append("%s %s: %s" % (theirs["type"], addr, m and m["error"]))
            continue
        want = collections.Counter(theirs["refs"])
        got = collections.Counter(m["refs"] + m["borrowed"])
        extra = got - want
        if extra:
            made_up.append("%s %s: %s" % (theirs["type"], addr, sorted(extra)))
        if theirs["type"] in EXACT_TYPES:
            lost = want - got
            if lost or not m["complete"]:
                missing.append("%s %s: %s" % (theirs["type"], addr, sorted(lost)))
    assert not errors, "%d unreadable: %s" % (len(errors), errors[:SHOWN_MISMATCHES])
    assert not made_up, "%d objects with references the collector does not visit: %s" % (
        len(made_up), made_up[:SHOWN_MISMATCHES])
    assert not missing, "%d objects of fully known types lack references: %s" % (
        len(missing), missing[:SHOWN_MISMATCHES])
    seen = collections.Counter(d["type"] for d in truth["referents"].values())
    # The check means something only if the objects around tasks were met.
    for kind in ("Task", "coroutine", "Future", "builtin_function_or_method", "cell",
                 "function", "dict", "list", "set", "Holder", "Slotted"):
        assert seen[kind], "no %s among the recorded objects" % kind
