"""`stuck`: tasks that nothing still able to run can reach, on every
interpreter of the matrix, live and from a core, on asyncio's loop and on
uvloop's.

samples/stuck_patterns.py builds each stuck pattern (a queue nobody will
feed, a one-slot race, a dropped go-ahead future, an RPC dict whose reader
died, a Condition whose notifier returned, readers behind a holder that
waits forever, a Queue.join() whose only worker died: a finished task is
data, not a root, even with the queue in its traceback) with its primitive in an attribute, a dict, a list and a
closure, every task strongly held, beside controls that can still be woken
(a global, a live setter, a timer, a socket, another thread). Its truth is
the interpreter's: which tasks it left blocked, checked not to move while
its ticker does. snarl must report exactly those as stuck, and nothing
else.
"""
import json
import shutil
import subprocess

import pytest

import pythons
from harness import Sample, run_snarl

SAMPLE = "stuck_patterns.py"
MODES = ("live", "core")


def _has_uvloop(python):
    out = subprocess.run(list(python.argv) + ["-c", "import uvloop"], capture_output=True)
    return out.returncode == 0


UVLOOP = [p for p in pythons.PYTHONS if _has_uvloop(p)]


def _check(target, *extra):
    out = run_snarl("check", "--format", "json", *extra, target)
    assert out.returncode == 1, out.stderr.decode(errors="replace")
    return json.loads(out.stdout.decode("utf-8"))


def _verify(truth, doc):
    names = truth["tasks"]
    stuck = {d_id for d in doc["diagnoses"] if d["kind"] == "stuck" for d_id in d["tasks"]}
    want = set(truth["stuck"])
    wrong = ["missing: %s" % names[i] for i in sorted(want - stuck)]
    wrong += ["not expected: %s" % names.get(i, i) for i in sorted(stuck - want)]
    for d in doc["diagnoses"]:
        if d["kind"] != "stuck":
            wrong.append("other finding: %s: %s" % (d["kind"], d["summary"]))
            continue
        if not d["details"]:
            wrong.append("stuck without details: %s" % d["summary"])
        if len(d["tasks"]) != len(set(d["tasks"])):
            wrong.append("a task listed twice: %s" % d["summary"])
    by_id = {t["id"]: t for t in doc["tasks"]}
    for i in want:
        t = by_id.get(i)
        if t is None or not t["stuck"] or not t["cancellable"] or t["weak_only"]:
            wrong.append("task %s: %s" % (names[i], t and {k: t[k] for k in
                                                         ("stuck", "cancellable", "weak_only")}))
    for i in truth["live"]:
        if by_id.get(i, {}).get("stuck"):
            wrong.append("live task marked stuck: %s" % names[i])
    assert not wrong, "\n".join(wrong[:20])
    # Tasks tied by what they wait on share a group: a one-slot race is one.
    groups = [sorted(names[i] for i in d["tasks"]) for d in doc["diagnoses"]]
    race = [g for g in groups if any(n.startswith("race:one-slot-race:attr:") for n in g)]
    assert len(race) == 1 and len(race[0]) == 3, race
    # ... and so is a gather with its stuck children.
    held = [g for g in groups if any(n.startswith("stuck:dead-holder:attr:") for n in g)]
    assert len(held) == 1 and len(held[0]) == 3, held


# Cores taken until one finds the loop in its selector. A core is one
# instant: one that lands inside the ticker's step (every 20 ms) shows the
# loop running synchronous code, and `loop-blocked` is the right reading of
# that instant; a live check reads twice and drops it, a core cannot. A
# loop-blocked finding that is false would be in every core.
CORE_ATTEMPTS = 5


def _mid_step(doc):
    return any(d["kind"] == "loop-blocked" for d in doc["diagnoses"])


def _run(python, mode, tmp_path, args=()):
    with Sample(python, SAMPLE, str(tmp_path), args=args) as s:
        if mode == "live":
            doc = _check(str(s.pid))
        else:
            if not shutil.which("gcore"):
                pytest.skip("gcore (gdb) not installed")
            for attempt in range(CORE_ATTEMPTS):
                core = tmp_path / ("attempt-%d" % attempt)
                core.mkdir()
                doc = _check(s.gcore(str(core)))
                if not _mid_step(doc):
                    break
        _verify(s.truth, doc)
        return s.truth, doc


@pytest.mark.parametrize("mode", MODES)
def test_exactly_the_tasks_the_interpreter_left_blocked_are_stuck(python, snarl, mode, tmp_path):
    _run(python, mode, tmp_path)


@pytest.mark.skipif(not UVLOOP, reason="no interpreter with uvloop (python3-uvloop in the chroot)")
@pytest.mark.parametrize("uvpython", UVLOOP, ids=[p.label for p in UVLOOP])
@pytest.mark.parametrize("mode", MODES)
def test_on_uvloop_the_same_tasks_are_stuck(uvpython, snarl, mode, tmp_path):
    truth, _ = _run(uvpython, mode, tmp_path, args=("--uvloop",))
    assert truth["loop"] == "Loop"


def test_the_text_report_leads_with_the_stuck_groups(snarl, tmp_path):
    python = pythons.PYTHONS[0]
    with Sample(python, SAMPLE, str(tmp_path)) as s:
        out = run_snarl("check", str(s.pid))
        tree = run_snarl("tree", str(s.pid))
    text = out.stdout.decode("utf-8")
    assert out.returncode == 1
    assert text.startswith("Found %d groups of tasks stuck for good:" %
                           text.count("\nStuck ")), text[:200]
    assert "stuck:queue-drain:dict:worker" in text
    assert "nothing still able to run" in text
    assert "\u26a0 stuck" in tree.stdout.decode("utf-8")
