"""`snarl check` against the diagnosis samples' expectations, on every
interpreter of the matrix, live and from a core made with gcore.

Each samples/diag_*.py settles into one stuck (or healthy) shape, records
the ground truth of its tasks (samples/aio_truth.py) and the diagnoses
snarl must report (samples/diag_truth.py: each declared cycle is checked
against the wait-for graph of the interpreter's own objects, all-asleep
against the loop's own state, before the sample prints READY). The thread
that recorded the truth then ends, so the sample's machinery is not one
more Python thread that could call into the loop; the tests wait for it to
be gone from /proc before reading the process.

One run of a sample serves every test below: snarl reads it live (`snarl
check --format json PID`, the text report, and --fail-on variants), then
the same from a gcore core. Each test checks one aspect so that a failure
names it: the exact set of diagnoses, the ids they name, their summaries
and the verdict, the exit status, --fail-on, the text report, and the
holders and resolvers of the resources.
"""
import json
import re
import shutil
import subprocess
import tempfile

import pytest

from harness import Sample, run_snarl, wait_watcher_gone

SAMPLES = (
    "diag_lock_reacquire.py", "diag_sem_reacquire.py", "diag_lock_cycle.py",
    "diag_wake_cycle.py", "diag_wake_queue.py", "diag_wake_mixed.py",
    "diag_await_cycle.py", "diag_await_combinators.py",
    "diag_loop_blocked.py", "diag_loop_blocked_io.py", "diag_loop_blocked_callback.py",
    "diag_self_wait.py", "diag_self_wait_callback.py",
    "diag_nested_loop.py", "diag_nested_same_loop.py",
    "diag_all_asleep.py",
    "diag_healthy_sleepers.py", "diag_healthy_server.py", "diag_healthy_queue_timer.py",
    "diag_healthy_locks.py", "diag_healthy_wakers.py", "diag_healthy_thread_waker.py",
)
MODES = ("live", "core")
KINDS = ("await-cycle", "lock-cycle", "lock-reacquire", "wake-cycle", "all-asleep",
         "loop-blocked", "loop-self-wait", "nested-loop", "weak-pending-task")
# The kinds the text report counts as deadlocks ("Found N asyncio deadlocks").
DEADLOCK_KINDS = ("await-cycle", "lock-cycle", "lock-reacquire", "wake-cycle")
# The sample on which a bad --fail-on is tried (any sample would do).
USAGE_SAMPLE = "diag_all_asleep.py"
SHOWN_MISMATCHES = 40
DEADLOCK_LINE = re.compile(r"Found (\d+) asyncio deadlocks?\b")

# One run per (interpreter, sample): {"truth", "live", "core"}; a mode's
# value is {run name: Result} or a Failed.
_RUNS = {}


class Failed(str):
    """A step of the run that failed; its text says why."""


class Result:
    """One `snarl check` run: exit status, stdout (text), stderr, and the
    JSON document when --format json was asked for and printed."""

    def __init__(self, args, out):
        self.args = args
        self.status = out.returncode
        self.stdout = out.stdout.decode("utf-8", errors="replace")
        self.stderr = out.stderr.decode("utf-8", errors="replace").strip()
        self.doc = None
        self.error = None
        if "json" in args:
            try:
                self.doc = json.loads(self.stdout)
            except ValueError as e:
                self.error = "printed no JSON document (%s); stderr: %s" % (e, self.stderr)

    def describe(self):
        return "snarl %s: status %d%s" % (" ".join(self.args), self.status,
                                          ": " + self.stderr if self.stderr else "")


def _check(*args):
    args = ["check"] + [str(a) for a in args]
    try:
        return Result(args, run_snarl(*args))
    except subprocess.TimeoutExpired as e:
        return Failed("snarl %s did not finish in %s s" % (" ".join(args), e.timeout))
    except OSError as e:
        return Failed("snarl %s could not run: %s" % (" ".join(args), e))


def _present(truth):
    return sorted({d["kind"] for d in truth["diagnoses"]})


def _runs_on(target, truth, sample):
    """Every snarl run the tests need, on one target (a PID or a core)."""
    present = _present(truth)
    absent = [k for k in KINDS if k not in present]
    runs = {"json": _check("--format", "json", target), "text": _check(target)}
    runs["fail-on-absent"] = _check("--fail-on", ",".join(absent), "--format", "json", target)
    for kind in present:
        runs["fail-on " + kind] = _check("--fail-on", kind, "--format", "json", target)
    if present and absent:
        runs["fail-on mixed"] = _check("--fail-on", "%s,%s" % (absent[0], present[-1]),
                                       "--format", "json", target)
    if sample == USAGE_SAMPLE:
        runs["fail-on bogus"] = _check("--fail-on", "no-such-kind", "--format", "json", target)
    return runs




def _run(python, sample):
    key = (python.label, sample)
    if key in _RUNS:
        return _RUNS[key]
    run = {}
    work = tempfile.mkdtemp(prefix="snarl-check-")
    try:
        with Sample(python, sample, work) as s:
            run["truth"] = s.truth
            wait_watcher_gone(s.pid, s.truth)
            run["live"] = _runs_on(s.pid, s.truth, sample)
            if shutil.which("gcore"):
                try:
                    core = s.gcore(work)
                except RuntimeError as e:
                    core = Failed(str(e))
            else:
                core = Failed("skip: gcore (gdb) not installed")
        run["core"] = core if isinstance(core, Failed) else _runs_on(core, run["truth"], sample)
    except RuntimeError as e:  # the sample never got ready
        run = {"error": str(e)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _RUNS[key] = run
    return run


def _get(python, sample, mode, what):
    """(truth, Result) of one run; fails or skips the test when the step
    itself failed."""
    run = _run(python, sample)
    if "error" in run:
        pytest.fail(run["error"])
    runs = run[mode]
    if isinstance(runs, Failed):
        if runs.startswith("skip: "):
            pytest.skip(runs[len("skip: "):])
        pytest.fail(runs)
    result = runs[what]
    if isinstance(result, Failed):
        pytest.fail(result)
    return run["truth"], result


def _doc(python, sample, mode, what="json"):
    """(truth, document) of a JSON run that must have produced one."""
    truth, result = _get(python, sample, mode, what)
    if result.status not in (0, 1):
        pytest.fail(result.describe())
    if result.doc is None:
        pytest.fail("%s: %s" % (result.describe(), result.error))
    doc = result.doc
    assert doc["schema"] == "snarl/1"
    assert doc["target"]["kind"] == mode
    assert doc["target"]["pid"] == truth["pid"]
    assert doc["target"]["python"] == truth["python"]
    return truth, doc


def _report(wrong):
    assert not wrong, "%d mismatches:\n%s%s" % (
        len(wrong), "\n".join(wrong[:SHOWN_MISMATCHES]),
        "\n..." if len(wrong) > SHOWN_MISMATCHES else "")


def _names(ids, truth, doc=None):
    known = {t["id"]: t["name"] for t in truth["tasks"] + truth["hidden_tasks"]}
    for t in (doc or {}).get("tasks", ()):
        known.setdefault(t["id"], t["name"])
    return sorted("%s (%s)" % (known.get(i, "?"), i) for i in ids)


def _key(d):
    return d["kind"], frozenset(d["tasks"]), frozenset(d["resources"])


def _show(key, truth, doc=None):
    kind, tasks, res = key
    return "%s tasks %s resources %s" % (kind, _names(tasks, truth, doc), sorted(res))


params = pytest.mark.parametrize
sample_param = params("sample", SAMPLES)
# The samples that declare a lock-cycle (ring order is checked on them).
LOCK_CYCLE_SAMPLES = ("diag_lock_cycle.py",)
mode_param = params("mode", MODES)


@sample_param
@mode_param
def test_check_reports_exactly_the_expected_diagnoses(python, snarl, sample, mode):
    """The set of diagnoses (kind, set of task ids, set of resource ids)
    is exactly the sample's: one per cycle, all-asleep with every pending
    task of the loop, nothing more (a healthy sample: nothing at all)."""
    truth, doc = _doc(python, sample, mode)
    want = {_key(d) for d in truth["diagnoses"]}
    got = [_key(d) for d in doc["diagnoses"]]
    wrong = ["missing: %s" % _show(k, truth, doc) for k in sorted(want - set(got), key=str)]
    wrong += ["not expected: %s" % _show(k, truth, doc) for k in sorted(set(got) - want, key=str)]
    wrong += ["reported %d times: %s" % (got.count(k), _show(k, truth, doc))
              for k in sorted(set(got), key=str) if got.count(k) > 1]
    for d in doc["diagnoses"]:
        for field in ("tasks", "resources"):
            if len(d[field]) != len(set(d[field])):
                wrong.append("%s lists the same %s twice: %s" % (d["kind"], field, d[field]))
    _report(wrong)


@sample_param
@mode_param
def test_diagnoses_name_their_loop_and_listed_ids(python, snarl, sample, mode):
    """A diagnosis's "loop" is the loop it is about (a cycle may say null;
    a nested run either of the two loops), and every task and resource it
    names is described in the same document."""
    truth, doc = _doc(python, sample, mode)
    loops = {_key(d): d["loops"] for d in truth["diagnoses"]}
    tasks = {t["id"] for t in doc["tasks"]}
    resources = {r["id"] for r in doc["resources"]}
    wrong = []
    for d in doc["diagnoses"]:
        allowed = loops.get(_key(d))
        if allowed is not None and d["loop"] not in allowed:
            wrong.append("%s: loop %s, expected one of %s" % (d["kind"], d["loop"], allowed))
        if set(d["tasks"]) - tasks:
            wrong.append("%s names tasks the document does not list: %s" %
                         (d["kind"], sorted(set(d["tasks"]) - tasks)))
        if set(d["resources"]) - resources:
            wrong.append("%s names resources the document does not list: %s" %
                         (d["kind"], sorted(set(d["resources"]) - resources)))
    _report(wrong)


@sample_param
@mode_param
def test_summaries_and_verdict_are_sentences(python, snarl, sample, mode):
    """Each diagnosis has a one-line, one-sentence summary (ending with a
    full stop); the document has a one-line verdict."""
    _, doc = _doc(python, sample, mode)
    wrong = []
    for d in doc["diagnoses"]:
        s = d.get("summary")
        if not isinstance(s, str) or not s.strip() or "\n" in s or not s.rstrip().endswith("."):
            wrong.append("%s: summary %r is not a one-line sentence" % (d["kind"], s))
    v = doc.get("verdict")
    if not isinstance(v, str) or not v.strip() or "\n" in v:
        wrong.append("verdict %r is not one line" % (v,))
    _report(wrong)


@sample_param
@mode_param
def test_exit_status_says_whether_something_was_found(python, snarl, sample, mode):
    """1 when the sample expects a diagnosis, 0 for a healthy one; the
    text report exits the same way."""
    truth, result = _get(python, sample, mode, "json")
    _, text = _get(python, sample, mode, "text")
    wrong = []
    for r in (result, text):
        if r.status != truth["exit"]:
            wrong.append("%s, expected %d" % (r.describe(), truth["exit"]))
    _report(wrong)


@sample_param
@mode_param
def test_fail_on_narrows_the_exit_status_not_the_report(python, snarl, sample, mode):
    """--fail-on KIND,...: only those kinds make the status 1. Naming only
    kinds the sample does not show exits 0 and still prints every
    diagnosis; naming one it shows exits 1."""
    truth, base = _doc(python, sample, mode)
    runs = _run(python, sample)[mode]
    want = sorted((_key(d) for d in base["diagnoses"]), key=str)
    wrong = []
    for name, r in sorted(runs.items()):
        if not name.startswith("fail-on") or name == "fail-on bogus":
            continue
        if isinstance(r, Failed):
            wrong.append("%s: %s" % (name, r))
            continue
        expected = 1 if name in ["fail-on " + k for k in _present(truth)] + ["fail-on mixed"] else 0
        if r.status != expected:
            wrong.append("%s, expected %d" % (r.describe(), expected))
        if r.doc is None:
            wrong.append("%s: %s" % (r.describe(), r.error))
        elif sorted((_key(d) for d in r.doc["diagnoses"]), key=str) != want:
            wrong.append("%s printed other diagnoses than without --fail-on: %s" % (
                r.describe(), [d["kind"] for d in r.doc["diagnoses"]]))
    _report(wrong)


@mode_param
def test_fail_on_an_unknown_kind_is_a_usage_error(python, snarl, mode):
    truth, r = _get(python, USAGE_SAMPLE, mode, "fail-on bogus")
    assert r.status == 2, r.describe()
    assert "no-such-kind" in r.stderr, r.describe()


@sample_param
@mode_param
def test_text_report_counts_deadlocks_names_tasks_and_ends_with_the_verdict(
        python, snarl, sample, mode):
    """The text report starts "Found N asyncio deadlock(s)" when there are
    cycles (N: the await-cycle, lock-cycle, lock-reacquire and wake-cycle
    diagnoses) and never claims a deadlock otherwise, names each task of a
    cycle as 'NAME', and ends with the verdict of the JSON document."""
    truth, result = _get(python, sample, mode, "text")
    _, doc = _doc(python, sample, mode)
    if result.status not in (0, 1):
        pytest.fail(result.describe())
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    if not lines:
        pytest.fail("%s printed nothing" % result.describe())
    cycles = [d for d in truth["diagnoses"] if d["kind"] in DEADLOCK_KINDS]
    wrong = []
    first = lines[0]
    if cycles:
        n = len(cycles)
        head = "Found %d asyncio deadlock%s" % (n, "" if n == 1 else "s")
        if not first.startswith(head):
            wrong.append("first line %r, expected it to start %r" % (first, head))
    elif DEADLOCK_LINE.match(first):
        wrong.append("first line %r claims deadlocks; the sample has none" % first)
    names = {t["id"]: t["name"] for t in truth["tasks"]}
    for d in cycles:
        for tid in d["tasks"]:
            if "'%s'" % names[tid] not in result.stdout:
                wrong.append("%s: task '%s' not named" % (d["kind"], names[tid]))
    if lines[-1].strip() != (doc.get("verdict") or "").strip():
        wrong.append("last line %r, the JSON verdict is %r" % (lines[-1], doc.get("verdict")))
    if wrong:
        wrong.append("the report:\n" + result.stdout)
    _report(wrong)


@sample_param
@mode_param
def test_holders_and_resolvers(python, snarl, sample, mode):
    """Each Lock or Semaphore a task waits on lists as holders the tasks
    inside `async with` on it (as each recorded when it entered); each
    Event, Condition, Queue or bare future a task waits on lists as
    resolvers the tasks whose frames reference it and that do not wait on
    it (found with gc.get_referrers in the sample)."""
    truth, doc = _doc(python, sample, mode)
    if not truth["holders"] and not truth["resolvers"]:
        pytest.skip("no lock, semaphore, event, condition, queue or bare future waited on")
    got = {r["id"]: r for r in doc["resources"]}
    wrong = []
    for field in ("holders", "resolvers"):
        for rid, want in sorted(truth[field].items()):
            r = got.get(rid)
            if r is None:
                wrong.append("resource %s not listed" % rid)
            elif set(r.get(field) or ()) != set(want):
                wrong.append("%s %s (%s): %s %s, expected %s" % (
                    r["kind"], rid, r["type"], field, _names(r.get(field) or (), truth, doc),
                    _names(want, truth, doc)))
    _report(wrong)


@params("sample", LOCK_CYCLE_SAMPLES)
@mode_param
def test_a_lock_cycle_lists_its_tasks_and_locks_the_way_the_ring_runs(python, snarl, sample,
                                                                       mode):
    """In a lock-cycle, task i waits for resource i (the task's own record
    of what it waits on), and resource i is held by task i+1 (the holder's
    own record, DiagTruth.held): the summary reads "A waits for L1 (held by
    B), which waits for L2 (held by C)..." and must be true link by link."""
    truth, doc = _doc(python, sample, mode)
    cycles = [d for d in doc["diagnoses"] if d["kind"] == "lock-cycle"]
    assert cycles, "the sample declares lock-cycles"
    waits = {t["id"]: (t["waits"] or {}).get("id") for t in truth["tasks"]}
    wrong = []
    for d in cycles:
        ts, rs = d["tasks"], d["resources"]
        if len(ts) != len(rs):
            wrong.append("%d tasks, %d resources: %s" % (len(ts), len(rs), d["summary"]))
            continue
        for i, (t, r) in enumerate(zip(ts, rs)):
            nxt = ts[(i + 1) % len(ts)]
            if waits.get(t) != r or nxt not in truth["holders"].get(r, ()):
                wrong.append("link %d: %s waits %s, %s holds %s: %s" % (
                    i, _names([t], truth, doc), waits.get(t), _names([nxt], truth, doc),
                    truth["holders"].get(r), d["summary"]))
    _report(wrong)


@sample_param
@mode_param
def test_nobody_holds_an_unlocked_lock_or_condition(python, snarl, sample, mode):
    """A Lock or Condition the tasks refer to that is not locked at rest
    (released after `async with`, or a Condition, and its own Lock, while
    its tasks sit in cond.wait(), which released it) lists no holders,
    whatever `async with` is still open around the wait."""
    truth, doc = _doc(python, sample, mode)
    if not truth["unlocked"]:
        pytest.skip("no unlocked Lock or Condition in %s" % sample)
    got = {r["id"]: r for r in doc["resources"]}
    wrong = []
    for rid in truth["unlocked"]:
        r = got.get(rid)
        if r is not None and r.get("holders"):
            wrong.append("%s %s (%s) is not locked, yet holders %s" % (
                r["kind"], rid, r["type"], _names(r["holders"], truth, doc)))
    _report(wrong)
