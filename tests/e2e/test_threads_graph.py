"""Threads in the wait-for graph, on every interpreter of the matrix, live
and from a gcore core: samples/threads_*.py record which thread holds
which threading lock (each holder inside its `with`; an RLock's owner from
its own repr), which thread waits where (their innermost Python frame from
sys._current_frames), which task holds the asyncio lock, which work item
each executor worker runs (the _WorkItem.run frame under it), and the
diagnoses snarl must report.

- threads_lock_order.py lock / rlock: two threads take two threading
  Locks (RLocks) in opposite order: one thread-lock-cycle, jstack's block
  in the text report; a bystander waiting on the cycle and an Event waiter
  are in none.
- threads_executor_ring.py: a task holds an asyncio.Lock while it awaits
  run_in_executor(job); job waits on run_coroutine_threadsafe(coroutine
  that needs the lock).result(): one lock-cycle through the worker thread;
  and the same through wrap_future(pool.submit(job)) on a pool of its own.
- threads_executor_ring.py timeout: the same with result(timeout=3600):
  the worker wakes by itself, nothing is reported.
- threads_healthy.py: a busy pool, a loop feeding the default executor,
  an Event a Timer will set, a waiter with a timeout: nothing.
- threads_loop_lock.py: a worker holding a threading Lock waits on
  run_coroutine_threadsafe(...).result() while the loop thread blocks
  taking that lock, so the loop never starts the coroutine: a
  thread-lock-cycle of the two threads (and loop-blocked).
"""
import json
import re
import shutil
import subprocess
import tempfile

import pytest

import schema_check
from harness import Sample, run_snarl, wait_watcher_gone

SAMPLES = (
    ("threads_lock_order.py", "lock"),
    ("threads_lock_order.py", "rlock"),
    ("threads_executor_ring.py", None),
    ("threads_executor_ring.py", "timeout"),
    ("threads_healthy.py", None),
    ("threads_loop_lock.py", None),
)
MODES = ("live", "core")

# One run per (interpreter, sample, argument): {"truth", "live", "core"};
# a mode's value is {"check": (status, doc), "text": str, "stacks": str}
# or a string saying why that step failed ("skip: ..." to skip).
_RUNS = {}


def _snarl(*args):
    out = run_snarl(*args)
    return out.returncode, out.stdout.decode("utf-8", errors="replace"), \
        out.stderr.decode("utf-8", errors="replace")


def _runs_on(target):
    status, out, err = _snarl("check", "--format", "json", target)
    try:
        doc = json.loads(out)
    except ValueError:
        return "snarl check --format json %s: status %d, no JSON: %s" % (target, status, err)
    text_status, text, _ = _snarl("check", target)
    _, stacks, _ = _snarl("stacks", target)
    _, stacks_json, _ = _snarl("stacks", "--format", "json", target)
    _, dot, _ = _snarl("graph", "--format", "dot", target)
    return {"check": (status, doc), "text": (text_status, text), "stacks": stacks,
            "stacks_json": json.loads(stacks_json), "dot": dot}


def _run(python, sample, arg):
    key = (python.label, sample, arg)
    if key in _RUNS:
        return _RUNS[key]
    run = {}
    work = tempfile.mkdtemp(prefix="snarl-threads-")
    try:
        with Sample(python, sample, work, args=[arg] if arg else []) as s:
            run["truth"] = s.truth
            wait_watcher_gone(s.pid, s.truth)
            run["live"] = _runs_on(s.pid)
            if not shutil.which("gcore"):
                run["core"] = "skip: gcore (gdb) not installed"
            else:
                try:
                    run["core"] = _runs_on(s.gcore(work))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    run["core"] = "gcore failed: %s" % e
    except RuntimeError as e:  # the sample never got ready
        run = {"error": str(e)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _RUNS[key] = run
    return run


def _get(python, sample, arg, mode):
    run = _run(python, sample, arg)
    if "error" in run:
        pytest.fail(run["error"])
    got = run[mode]
    if isinstance(got, str):
        if got.startswith("skip: "):
            pytest.skip(got[len("skip: "):])
        pytest.fail(got)
    return run["truth"], got


def _key(d):
    return (d["kind"], tuple(sorted(d["tasks"])), tuple(sorted(d["resources"])),
            tuple(sorted(d["threads"])))


params = pytest.mark.parametrize
sample_param = params("sample,arg", SAMPLES, ids=["%s-%s" % (s, a or "") for s, a in SAMPLES])
mode_param = params("mode", MODES)


@sample_param
@mode_param
def test_exactly_the_expected_diagnoses_and_exit_status(python, snarl, sample, arg, mode):
    """The diagnoses (kind, tasks, resources, threads) are exactly the
    sample's, once each; the exit status says whether any was found."""
    truth, got = _get(python, sample, arg, mode)
    status, doc = got["check"]
    want = sorted(_key(d) for d in truth["diagnoses"])
    have = sorted(_key(d) for d in doc["diagnoses"])
    assert have == want, "snarl: %s\nsample: %s" % (
        json.dumps(doc["diagnoses"], indent=1), json.dumps(truth["diagnoses"], indent=1))
    assert status == truth["exit"]
    assert got["text"][0] == truth["exit"]


@sample_param
@mode_param
def test_lock_holders_are_the_interpreters(python, snarl, sample, arg, mode):
    """Each threading lock some thread waits for is held by exactly the
    threads the sample recorded (an RLock: the owner it records); each
    asyncio lock by the task that recorded holding it."""
    truth, got = _get(python, sample, arg, mode)
    doc = got["check"][1]
    res = {r["id"]: r for r in doc["resources"]}
    wrong = []
    for lock, natives in truth["holders"].items():
        r = res.get(lock)
        if r is None:
            if any(w["resource"] == lock and not w["timeout"] for w in truth["waits"].values()):
                wrong.append("lock %s, waited for, is not among the resources" % lock)
            continue
        if sorted(r["thread_holders"]) != natives:
            wrong.append("lock %s: thread_holders %s, the sample says %s" %
                         (lock, r["thread_holders"], natives))
    for lock, tasks in truth["task_holders"].items():
        if lock not in res or sorted(res[lock]["holders"]) != tasks:
            wrong.append("asyncio lock %s: holders %s, the sample says %s" %
                         (lock, res.get(lock, {}).get("holders"), tasks))
    assert not wrong, "\n".join(wrong)


@sample_param
@mode_param
def test_each_thread_waits_where_the_interpreter_says(python, snarl, sample, arg, mode):
    """Every thread the sample declares blocked waits on the declared
    object, with or without a timeout as declared, and is listed among
    that resource's thread_waiters; the same in `stacks`."""
    truth, got = _get(python, sample, arg, mode)
    res = {r["id"]: r for r in got["check"][1]["resources"]}
    wrong = []
    for view, doc in (("check", got["check"][1]), ("stacks", got["stacks_json"])):
        threads = {str(t["native_id"]): t for t in doc["threads"]}
        for native, want in truth["waits"].items():
            waits = (threads.get(native) or {}).get("waits")
            if not waits or waits["id"] != want["resource"] or waits["timeout"] != want["timeout"]:
                wrong.append("%s: thread %s (%s) waits %s; the sample says %s" % (
                    view, native, truth["threads"].get(native, {}).get("name"), waits, want))
            elif view == "check" and int(native) not in res[waits["id"]]["thread_waiters"]:
                wrong.append("thread %s is not among %s's thread_waiters" % (native, waits["id"]))
    assert not wrong, "\n".join(wrong)


@sample_param
@mode_param
def test_workers_show_their_work_item(python, snarl, sample, arg, mode):
    """An executor worker running a recorded work item shows its callable
    and the concurrent future it completes, in JSON and in the text of
    `stacks` (and of `check`, when the worker is in a finding)."""
    truth, got = _get(python, sample, arg, mode)
    if not truth["work"]:
        pytest.skip("this sample records no long-running work item")
    threads = {str(t["native_id"]): t for t in got["stacks_json"]["threads"]}
    for native, want in truth["work"].items():
        work = threads[native]["work"]
        assert work and work["function"] == want["function"] and work["future"] == want["future"]
        line = "work item %s: %s(), completes concurrent future %s" % (
            work["item"], want["function"], want["future"])
        assert line in got["stacks"]
        if truth["diagnoses"]:
            assert line in got["text"][1]


@sample_param
@mode_param
def test_thread_lock_cycle_reads_like_jstack(python, snarl, sample, arg, mode):
    """A thread-lock-cycle is printed as jstack prints a Java-level
    deadlock: each thread, the lock it waits to take and who holds it,
    then the threads' stacks."""
    truth, got = _get(python, sample, arg, mode)
    cycles = [d for d in truth["diagnoses"] if d["kind"] == "thread-lock-cycle"]
    if not cycles:
        pytest.skip("no thread-lock-cycle in this sample")
    text = got["text"][1]
    assert text.count("Found one Python-level deadlock:") == len(cycles)
    assert "Python stack information for the threads listed above:" in text
    for d in cycles:
        for native in d["threads"]:
            name = truth["threads"][str(native)]["name"]
            wait = truth["waits"][str(native)]["resource"]
            if wait in truth["holders"]:
                holder = truth["holders"][wait][0]
                line = '"%s" (native id %d):\n  waiting to lock _thread.%s %s,\n' \
                       '  which is held by "%s" (native id %d)\n' % (
                           name, native, "RLock" if arg == "rlock" else "lock", wait,
                           truth["threads"][str(holder)]["name"], holder)
            else:  # a concurrent future only the other thread (a loop's) can start
                other = [n for n in d["threads"] if n != native]
                assert len(other) == 1
                line = '"%s" (native id %d):\n  waiting for concurrent future %s,\n' \
                       '  which only "%s" (native id %d) can complete\n' % (
                           name, native, wait, truth["threads"][str(other[0])]["name"], other[0])
            assert line in text, text


@sample_param
@mode_param
def test_documents_match_the_schema(python, snarl, sample, arg, mode):
    """check's and stacks' documents, with threads' waits and work items
    and diagnoses' threads, are valid snarl/1 documents."""
    _, got = _get(python, sample, arg, mode)
    schema_check.assert_valid(got["check"][1], "snarl-1.schema.json")
    schema_check.assert_valid(got["stacks_json"], "snarl-1.schema.json")


@sample_param
@mode_param
def test_graph_draws_the_threads_of_a_deadlock_in_red(python, snarl, sample, arg, mode):
    """In DOT, each thread of a deadlock is a red hexagon inside the
    deadlock's box, and the edges between it and the deadlock's locks and
    futures (waits for, held by, run by) are red; a thread in no deadlock
    is drawn black."""
    truth, got = _get(python, sample, arg, mode)
    dot = got["dot"]
    red = {n for d in truth["diagnoses"] for n in d["threads"]}
    for native in truth["waits"]:
        node = '"thread %s"' % native
        if int(native) in red:
            assert '%s [shape=hexagon' % node in dot
            assert '        %s [color=red, penwidth=3' % node in dot
            assert re.search(r'^    %s -> "0x[0-9a-f]+" \[color=red' % re.escape(node), dot, re.M)
            assert re.search(r'^    "0x[0-9a-f]+" -> %s \[label="(held|run) by", color=red'
                             % re.escape(node), dot, re.M)
        else:
            assert '%s [color=red' % node not in dot
