"""`snarl tasks` against the asyncio samples' ground truth, on every
interpreter of the matrix, live and from a core made with gcore.

Each samples/aio_*.py settles, records what the interpreter itself says
about every task (samples/aio_truth.py documents the rules: which frames
are in a chain, what each task waits on and with which id, who awaits
whom), and blocks. One run of a sample serves every test below: snarl reads
it live (`snarl tasks --format json PID`), then from a gcore core; on 3.14+
CPython's `python3.X -m asyncio ps PID` reads it too.

Each test checks one aspect so that a failure names it: the set of pending
tasks, their identities, their coroutine chains, what they wait on, who
awaits them, the resources, deadlines and armed timeouts, the loops, the
running task's frames in its thread's stack, and the threads' stacks.
"""
import json
import shutil
import subprocess
import tempfile

import pytest

import asyncio_ps
from harness import WATCHER, Sample, run_snarl

SAMPLES = ("aio_await_tree.py", "aio_primitives.py", "aio_task_kinds.py", "aio_io_threads.py",
           "aio_running.py", "aio_running_py.py")
# The sample whose truth has tasks no registry holds (hidden_tasks).
HIDDEN_SAMPLE = "aio_task_kinds.py"
MODES = ("live", "core")
# Deadlines are the loop timers' own doubles (TimerHandle._when); snarl
# reads the same double, so only its printing may round.
DEADLINE_TOLERANCE = 1e-3
# A sleep's remaining time, live: the sample slept for this long...
SLEEP_DELAY = 3600.0
# ...and snarl reads it well within this many seconds of the call.
REMAINING_SLACK = 600.0
# asyncio ps of these versions lists only the main thread's tasks: 3.14's
# _remote_debugging.RemoteUnwinder.get_all_awaited_by() reports the main
# thread and the interpreter's list of orphaned tasks, not the tasks of a
# loop running in another thread (seen on 3.14.10, also with
# all_threads=True); 3.15 reports every thread.
PS_MAIN_THREAD_ONLY = ("3.14",)
# Mismatches listed in a failure message; the rest are counted.
SHOWN_MISMATCHES = 40

# One run per (interpreter, sample): {"truth", "live", "core", "live-all",
# "core-all", "ps"}; each value a document or an error message (str).
_RUNS = {}


class Failed(str):
    """A step of the run that failed; its text says why."""


def _snarl_doc(*args):
    try:
        out = run_snarl("tasks", *args)
    except subprocess.TimeoutExpired as e:
        return Failed("snarl tasks %s did not finish in %s s" % (" ".join(map(str, args)), e.timeout))
    if out.returncode != 0:
        return Failed("snarl tasks %s: status %d: %s" % (
            " ".join(str(a) for a in args), out.returncode,
            out.stderr.decode("utf-8", errors="replace").strip()))
    try:
        return json.loads(out.stdout.decode("utf-8"))
    except ValueError as e:
        return Failed("snarl tasks %s printed no JSON document: %s" % (args, e))


def _run(python, sample):
    key = (python.label, sample)
    if key in _RUNS:
        return _RUNS[key]
    run = {}
    work = tempfile.mkdtemp(prefix="snarl-tasks-")
    try:
        with Sample(python, sample, work) as s:
            run["truth"] = s.truth
            run["live"] = _snarl_doc("--format", "json", s.pid)
            if sample == HIDDEN_SAMPLE:
                run["live-all"] = _snarl_doc("--all-objects", "--format", "json", s.pid)
            if python.minor in ("3.14", "3.15"):
                try:
                    run["ps"] = asyncio_ps.run(python, s.pid)
                except asyncio_ps.Unavailable as e:
                    run["ps"] = Failed("skip: %s" % e)
                except Exception as e:  # noqa: BLE001  (reported by the ps test)
                    run["ps"] = Failed(str(e))
            if shutil.which("gcore"):
                try:
                    core = s.gcore(work)
                except RuntimeError as e:
                    core = Failed(str(e))
            else:
                core = Failed("skip: gcore (gdb) not installed")
        if isinstance(core, Failed):
            run["core"] = run["core-all"] = core
        else:
            run["core"] = _snarl_doc("--format", "json", core)
            if sample == HIDDEN_SAMPLE:
                run["core-all"] = _snarl_doc("--all-objects", "--format", "json", core)
    except RuntimeError as e:  # the sample never got ready
        run = {"error": str(e)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _RUNS[key] = run
    return run


def _get(python, sample, what):
    run = _run(python, sample)
    if "error" in run:
        pytest.fail(run["error"])
    value = run[what]
    if isinstance(value, Failed):
        if value.startswith("skip: "):
            pytest.skip(value[len("skip: "):])
        pytest.fail(value)
    return value


def _doc_and_truth(python, sample, mode, what=""):
    truth = _get(python, sample, "truth")
    doc = _get(python, sample, mode + what)
    assert doc["schema"] == "snarl/1"
    assert doc["target"]["kind"] == mode
    assert doc["target"]["pid"] == truth["pid"]
    assert doc["target"]["python"] == truth["python"]
    return doc, truth


def _report(wrong):
    assert not wrong, "%d mismatches:\n%s%s" % (
        len(wrong), "\n".join(wrong[:SHOWN_MISMATCHES]),
        "\n..." if len(wrong) > SHOWN_MISMATCHES else "")


def _label(task):
    return "%s (%s)" % (task["name"], task["id"])


def _frames(stack):
    return [(f["function"], f["file"], f["line"]) for f in stack or []]


def _pending(doc):
    return {t["id"]: t for t in doc["tasks"] if t["state"] == "pending"}


def _wanted(truth, all_objects=False):
    tasks = truth["tasks"] + (truth["hidden_tasks"] if all_objects else [])
    return {t["id"]: t for t in tasks}


def _matched(doc, truth):
    """(truth task, snarl task) for every truth task snarl lists pending,
    hidden tasks included when snarl found them anyway."""
    got = _pending(doc)
    return [(t, got[t["id"]]) for t in truth["tasks"] + truth["hidden_tasks"] if t["id"] in got]


def _names(ids, truth):
    by_id = {t["id"]: t["name"] for t in truth["tasks"] + truth["hidden_tasks"]}
    return sorted("%s (%s)" % (by_id.get(i, "?"), i) for i in ids)


params = pytest.mark.parametrize
sample_param = params("sample", SAMPLES)
mode_param = params("mode", MODES)


@sample_param
@mode_param
def test_pending_tasks_are_the_interpreters(python, snarl, sample, mode):
    """Exactly the pending tasks asyncio lists (plus, if snarl reaches them,
    tasks no registry holds); finished tasks never pending."""
    doc, truth = _doc_and_truth(python, sample, mode)
    got, want = set(_pending(doc)), set(_wanted(truth))
    hidden = {t["id"] for t in truth["hidden_tasks"]}
    wrong = []
    if want - got:
        wrong.append("missing: %s" % _names(want - got, truth))
    if got - want - hidden:
        wrong.append("not pending in the interpreter: %s" % sorted(got - want - hidden))
    listed = {t["id"]: t for t in doc["tasks"]}
    for t in truth["done_tasks"]:
        if t["id"] in listed and listed[t["id"]]["state"] != t["state"]:
            wrong.append("%s: state %s, the interpreter says %s" %
                         (_label(t), listed[t["id"]]["state"], t["state"]))
    _report(wrong)


@sample_param
@mode_param
def test_task_names_types_loops_and_cancellations(python, snarl, sample, mode):
    doc, truth = _doc_and_truth(python, sample, mode)
    wrong = []
    for want, got in _matched(doc, truth):
        types = (want["type"], "%s.%s" % (want["module"], want["type"]))
        for field, ok in (("name", got["name"] == want["name"]),
                          ("type", got["type"] in types),
                          ("loop", got["loop"] == want["loop"]),
                          ("cancels", got["cancels"] == want["cancels"]),
                          ("created_at", got["created_at"] == want["created_at"]),
                          ("running_in_thread",
                           got["running_in_thread"] == want["running_in_thread"])):
            if not ok:
                wrong.append("%s: %s %r, the interpreter says %r" %
                             (_label(want), field, got[field],
                              types if field == "type" else want[field]))
    _report(wrong)


@sample_param
@mode_param
def test_task_stacks_are_the_coroutine_chains(python, snarl, sample, mode):
    """Every frame the cr_await / gi_yieldfrom / ag_await walk finds, asyncio's
    own included, innermost first, with its line; a running task's frames as
    on its thread's stack."""
    doc, truth = _doc_and_truth(python, sample, mode)
    wrong = []
    for want, got in _matched(doc, truth):
        if _frames(got["stack"]) != _frames(want["stack"]):
            wrong.append("%s:\n    snarl    %s\n    expected %s" %
                         (_label(want), _frames(got["stack"]), _frames(want["stack"])))
        if got["truncated"]:
            wrong.append("%s: marked truncated" % _label(want))
    _report(wrong)


@sample_param
@mode_param
def test_what_each_task_waits_on(python, snarl, sample, mode):
    """waits: the kind and id of the task or resource the innermost frame
    waits on (null for a running or never-started task); awaits: that id."""
    doc, truth = _doc_and_truth(python, sample, mode)
    wrong = []
    for want, got in _matched(doc, truth):
        w, g = want["waits"], got["waits"]
        if (w is None) != (g is None) or \
                (w is not None and (g["kind"], g["id"]) != (w["kind"], w["id"])):
            wrong.append("%s: waits %s, expected %s" % (
                _label(want), g and (g["kind"], g["id"]), w and (w["kind"], w["id"])))
        if sorted(got["awaits"]) != sorted(want["awaits"]):
            wrong.append("%s: awaits %s, expected %s" %
                         (_label(want), sorted(got["awaits"]), sorted(want["awaits"])))
    _report(wrong)


@sample_param
@mode_param
def test_who_awaits_each_task(python, snarl, sample, mode):
    """awaited_by: the tasks waiting on it directly or through a gather,
    TaskGroup, shield or wait_for; on 3.14+ awaited_by_interpreter is
    CPython's own record (the task's _asyncio_awaited_by)."""
    doc, truth = _doc_and_truth(python, sample, mode)
    wrong = []
    for want, got in _matched(doc, truth):
        if sorted(got["awaited_by"]) != want["awaited_by"]:
            wrong.append("%s: awaited_by %s, expected %s" % (
                _label(want), _names(got["awaited_by"], truth), _names(want["awaited_by"], truth)))
        if want["awaited_by_interpreter"] is not None and \
                sorted(got["awaited_by_interpreter"]) != want["awaited_by_interpreter"]:
            wrong.append("%s: awaited_by_interpreter %s, the interpreter says %s" % (
                _label(want), _names(got["awaited_by_interpreter"], truth),
                _names(want["awaited_by_interpreter"], truth)))
    _report(wrong)


@sample_param
@mode_param
def test_resources_their_members_and_waiters(python, snarl, sample, mode):
    """Each resource a task waits on: its kind, the tasks it stands for
    (gather children, TaskGroup tasks, shield's inner task, 3.11 wait_for's
    inner task, asyncio.wait's tasks and its return_when) and the tasks
    waiting on it."""
    doc, truth = _doc_and_truth(python, sample, mode)
    got = {r["id"]: r for r in doc["resources"]}
    # Without --all-objects snarl need not know the hidden tasks, nor so the
    # resources only they wait on.
    unseen = {t["id"] for t in truth["hidden_tasks"]} - set(_pending(doc))
    wrong = []
    for want in truth["resources"]:
        want = dict(want, waiters=[w for w in want["waiters"] if w not in unseen])
        if not want["waiters"]:
            continue
        r = got.get(want["id"])
        if r is None:
            wrong.append("%s %s (%s): not listed" % (want["kind"], want["id"], want["type"]))
            continue
        if r["kind"] != want["kind"]:
            wrong.append("%s %s: kind %s" % (want["kind"], want["id"], r["kind"]))
        if want["kind"] == "wait" and r["detail"] != want["detail"]:
            wrong.append("wait %s: return_when %r, expected %r" % (want["id"], r["detail"],
                                                                   want["detail"]))
        for field in ("members", "waiters"):
            if sorted(r[field]) != want[field]:
                wrong.append("%s %s: %s %s, expected %s" % (
                    want["kind"], want["id"], field, _names(r[field], truth),
                    _names(want[field], truth)))
    _report(wrong)


@sample_param
@mode_param
def test_timer_deadlines(python, snarl, sample, mode):
    """A sleep's (and 3.11 wait_for's) deadline is its loop timer's: the
    loop's time at the call plus the delay."""
    doc, truth = _doc_and_truth(python, sample, mode)
    timed = [r for r in truth["resources"] if r["deadline"] is not None]
    if not timed:
        pytest.skip("no timer in %s" % sample)
    got = {r["id"]: r for r in doc["resources"]}
    wrong = []
    for want in timed:
        r = got.get(want["id"])
        if r is None or r["deadline"] is None or \
                abs(r["deadline"] - want["deadline"]) > DEADLINE_TOLERANCE:
            wrong.append("%s %s: deadline %s, expected %r" %
                         (want["kind"], want["id"], r and r["deadline"], want["deadline"]))
        elif mode == "live" and want["kind"] == "sleep" and r["remaining"] is not None and \
                not SLEEP_DELAY - REMAINING_SLACK < r["remaining"] <= SLEEP_DELAY:
            wrong.append("%s %s: %r s remaining of a %r s sleep" %
                         (want["kind"], want["id"], r["remaining"], SLEEP_DELAY))
    _report(wrong)


@sample_param
@mode_param
def test_armed_timeouts(python, snarl, sample, mode):
    """Each asyncio.Timeout armed on a loop (asyncio.timeout(), wait_for from
    3.12) is a "timeout" resource with its timer's deadline."""
    doc, truth = _doc_and_truth(python, sample, mode)
    if not truth["timeouts"]:
        pytest.skip("no asyncio.Timeout in %s" % sample)
    got = {r["id"]: r for r in doc["resources"]}
    wrong = []
    for want in truth["timeouts"]:
        r = got.get(want["id"])
        if r is None:
            wrong.append("Timeout %s (of task %s): not listed" % (want["id"], want["task"]))
        elif r["kind"] != "timeout" or r["deadline"] is None or \
                abs(r["deadline"] - want["deadline"]) > DEADLINE_TOLERANCE:
            wrong.append("Timeout %s: kind %s deadline %s, expected %r" %
                         (want["id"], r["kind"], r["deadline"], want["deadline"]))
    _report(wrong)


@sample_param
@mode_param
def test_event_loops(python, snarl, sample, mode):
    """Every loop with its thread and running task (none for a loop idle in
    its selector)."""
    doc, truth = _doc_and_truth(python, sample, mode)
    got = {lp["id"]: lp for lp in doc["loops"]}
    wrong = []
    if set(got) != {lp["id"] for lp in truth["loops"]}:
        wrong.append("loops %s, expected %s" % (sorted(got), sorted(lp["id"] for lp in truth["loops"])))
    for want in truth["loops"]:
        lp = got.get(want["id"])
        if lp is None:
            continue
        for field in ("type", "thread", "running_task"):
            if lp[field] != want[field]:
                wrong.append("loop %s: %s %r, expected %r" % (want["id"], field, lp[field], want[field]))
    _report(wrong)


@sample_param
@mode_param
def test_running_task_frames_in_its_thread(python, snarl, sample, mode):
    """The running task's frames are the top of its loop thread's stack,
    each marked "task": its id; no other frame of any thread is marked."""
    doc, truth = _doc_and_truth(python, sample, mode)
    threads = {t["native_id"]: t for t in doc["threads"]}
    running = {t["running_in_thread"]: t for t in truth["tasks"] if t["running_in_thread"]}
    wrong = []
    for thread in doc["threads"]:
        marks = [f.get("task") for f in thread["stack"]]
        want = running.get(thread["native_id"])
        expected = [want["id"]] * len(want["stack"]) if want else []
        expected += [None] * (len(marks) - len(expected))
        if marks != expected:
            wrong.append("thread %s (%s): frames marked %s, expected %s" % (
                thread["native_id"], thread["name"], marks, expected))
    for tid, want in running.items():
        if tid not in threads:
            wrong.append("thread %s of running task %s not listed" % (tid, _label(want)))
        elif _frames(threads[tid]["stack"][:len(want["stack"])]) != _frames(want["stack"]):
            wrong.append("thread %s: top frames %s, the running task's %s" % (
                tid, _frames(threads[tid]["stack"][:len(want["stack"])]), _frames(want["stack"])))
    _report(wrong)


@sample_param
@mode_param
def test_thread_stacks(python, snarl, sample, mode):
    """The document's threads are the interpreter's (sys._current_frames()
    once everything was at rest), frame for frame."""
    doc, truth = _doc_and_truth(python, sample, mode)
    got = {t["native_id"]: t for t in doc["threads"] if t["name"] != WATCHER}
    want = {t["native_id"]: t for t in truth["threads"]}
    wrong = []
    if set(got) != set(want):
        wrong.append("threads %s, expected %s" % (sorted(got), sorted(want)))
    for tid, t in want.items():
        if tid in got and (_frames(got[tid]["stack"]) != _frames(t["stack"]) or
                           got[tid]["name"] != t["name"]):
            wrong.append("thread %s (%s):\n    snarl    %s\n    expected %s" % (
                tid, t["name"], _frames(got[tid]["stack"]), _frames(t["stack"])))
    _report(wrong)


@mode_param
def test_all_objects_finds_tasks_no_registry_holds(python, snarl, mode):
    """A pending task removed from asyncio's registry
    (asyncio.tasks._unregister_task) is found on the GC lists with
    --all-objects, with its chain, what it waits on and who awaits it."""
    doc, truth = _doc_and_truth(python, HIDDEN_SAMPLE, mode, "-all")
    assert truth["hidden_tasks"], "the sample hid no task"
    got, want = _pending(doc), _wanted(truth, all_objects=True)
    wrong = []
    if set(got) != set(want):
        wrong.append("pending tasks: missing %s, extra %s" % (
            _names(set(want) - set(got), truth), sorted(set(got) - set(want))))
    for t in truth["hidden_tasks"]:
        g = got.get(t["id"])
        if g is None:
            continue
        if _frames(g["stack"]) != _frames(t["stack"]):
            wrong.append("%s: stack %s, expected %s" % (_label(t), _frames(g["stack"]),
                                                        _frames(t["stack"])))
        if g["name"] != t["name"] or g["loop"] != t["loop"]:
            wrong.append("%s: name %r loop %s, expected loop %s" % (_label(t), g["name"], g["loop"],
                                                                   t["loop"]))
        gw = g["waits"] or {}
        if (gw.get("kind"), gw.get("id")) != (t["waits"]["kind"], t["waits"]["id"]):
            wrong.append("%s: waits %s, expected %s" % (_label(t), g["waits"], t["waits"]))
        if sorted(g["awaited_by"]) != t["awaited_by"]:
            wrong.append("%s: awaited_by %s, expected %s" % (_label(t), g["awaited_by"],
                                                              t["awaited_by"]))
    _report(wrong)


@sample_param
def test_asyncio_ps_agrees(python, snarl, sample):
    """On 3.14+ CPython's `python3.X -m asyncio ps PID` (same interpreter)
    lists the same native tasks, names and awaiter edges as snarl live. ps
    sees only _asyncio.Task objects (subclasses included) on the
    interpreter's task lists: no pure-Python task, no task removed from the
    registry; the truth says which tasks those are."""
    if python.minor not in ("3.14", "3.15"):
        pytest.skip("asyncio ps exists from 3.14")
    truth = _get(python, sample, "truth")
    doc = _get(python, sample, "live")
    ps = _get(python, sample, "ps")
    loop_thread = {lp["id"]: lp["thread"] for lp in truth["loops"]}
    threads = set(loop_thread.values())
    if python.minor in PS_MAIN_THREAD_ONLY:
        threads &= {truth["pid"]}
    visible = {t["id"] for t in truth["tasks"]
               if t["c_task"] and t["in_all_tasks"] and loop_thread[t["loop"]] in threads}
    got = _pending(doc)
    mine = {i: got[i]["name"] for i in visible if i in got}
    wrong = []
    for i, tid in sorted(ps["tids"].items()):
        if i in visible and tid != loop_thread[_wanted(truth)[i]["loop"]]:
            wrong.append("asyncio ps puts task %s in thread %s, its loop runs in %s" %
                         (i, tid, loop_thread[_wanted(truth)[i]["loop"]]))
    if ps["tasks"] != mine:
        wrong.append("tasks only asyncio ps lists %s, only snarl %s" % (
            sorted(set(ps["tasks"].items()) - set(mine.items())),
            sorted(set(mine.items()) - set(ps["tasks"].items()))))
    edges = {(i, a) for i in visible if i in got for a in got[i]["awaited_by"]}
    if ps["edges"] != edges:
        wrong.append("awaiter edges (task, awaiter) only asyncio ps has %s, only snarl %s" % (
            sorted(ps["edges"] - edges), sorted(edges - ps["edges"])))
    if wrong:
        wrong.append("asyncio ps, run %s:\n%s" % (ps["how"], ps["text"]))
    _report(wrong)
