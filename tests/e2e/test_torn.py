"""Torn live reads: snarl against a program that changes its tasks and
containers as fast as it can (samples/torn_churn.py), on every interpreter
of the matrix.

Read without freezing, memory changes between two reads: snarl must finish
in bounded time under ASan+UBSan, print a well-formed report and mark what
it could not read consistently; it must not report a deadlock, because the
program has none and a real one would hold still for a second read.
Frozen (the default), the report is one consistent moment: every worker is
there, every reference resolves, nothing is marked damaged."""
import json
import os
import subprocess

import pytest

from harness import ROOT, Sample

SANITIZED = os.path.join(ROOT, "build", "asan", "snarl")
# The sample's never-ending workers (WORKERS in samples/torn_churn.py).
WORKERS = 64
# Reads per command without freezing: enough that some land on a change
# (most do on a loaded machine), few enough to stay fast under ASan.
UNFROZEN_ROUNDS = 6
FROZEN_ROUNDS = 3
# Frozen reads of samples/torn_entry.py: 3.12 stops between the two steps in
# about one read of a hundred, so this many miss it once in twenty runs.
ENTRY_ROUNDS = 300
# A read of this small program takes well under a second, a sanitized one
# a few; a hang is what this catches.
READ_TIMEOUT = 60
COMMANDS = [
    ["check", "--format", "json"],
    ["tasks", "--format", "json"],
    ["tree", "--format", "json"],
    ["graph", "--format", "json"],
    ["stacks", "--format", "json"],
    ["check", "--all-objects", "--format", "json"],
]
DEADLOCKS = {"await-cycle", "lock-cycle", "lock-reacquire", "wake-cycle", "all-asleep",
             "loop-self-wait", "nested-loop"}


@pytest.fixture(scope="module")
def sanitized():
    if not os.access(SANITIZED, os.X_OK):
        pytest.skip("build/asan/snarl is missing: run make asan")
    return SANITIZED


def read(binary, pid, args):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    out = subprocess.run([binary] + args + [str(pid)], capture_output=True, text=True,
                         timeout=READ_TIMEOUT, env=env)
    assert "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr
    assert out.returncode in (0, 1), (args, out.returncode, out.stderr)
    return json.loads(out.stdout)


def workers(doc):
    """The sample's worker tasks: those whose outermost frame is worker()."""
    return [t for t in doc.get("tasks", [])
            if t["stack"] and t["stack"][-1]["function"] == "worker"]


def dangling(doc):
    """References to tasks that are not in the document."""
    ids = {t["id"] for t in doc.get("tasks", [])}
    refs = [r for t in doc.get("tasks", []) for r in t["awaited_by"]]
    refs += [w for r in doc.get("resources", []) for w in r["waiters"] + r["holders"]
             if w.startswith("0x")]
    return [r for r in refs if r not in ids]


def damaged(doc):
    """Items the report marks as not read whole."""
    items = [t["id"] for t in doc.get("tasks", []) if t["truncated"]]
    items += [t["native_id"] for t in doc.get("threads", []) if t["truncated"]]
    for owner in doc.get("tasks", []) + doc.get("threads", []):
        items += [f["error"] for f in owner["stack"] if "error" in f]
    return items


def test_unfrozen_reads_of_a_churning_program_finish_and_mark_what_tore(python, sanitized,
                                                                         tmp_path):
    with Sample(python, "torn_churn.py", tmp_path) as s:
        for _ in range(UNFROZEN_ROUNDS):
            for args in COMMANDS:
                doc = read(sanitized, s.pid, args[:1] + ["--no-freeze"] + args[1:])
                assert doc["schema"] == "snarl/1" and doc["target"]["frozen"] is False
                kinds = {d["kind"] for d in doc.get("diagnoses", [])}
                assert not kinds & DEADLOCKS, doc["diagnoses"]
                if damaged(doc):
                    assert any("not read consistently" in w for w in doc["warnings"]), \
                        doc["warnings"]
        # The program still runs, untraced: --no-freeze never stops it.
        with open("/proc/%d/status" % s.pid) as f:
            assert "TracerPid:\t0" in f.read()
        assert s.proc.poll() is None


def test_frozen_reads_of_a_churning_program_are_consistent(python, snarl, tmp_path):
    with Sample(python, "torn_churn.py", tmp_path) as s:
        for _ in range(FROZEN_ROUNDS):
            for args in COMMANDS[:4]:
                doc = read(snarl, s.pid, args)
                assert doc["target"]["frozen"] is True
                assert not damaged(doc), damaged(doc)
                assert not dangling(doc), dangling(doc)
                if args[0] != "stacks":
                    assert len(workers(doc)) == WORKERS
                    assert all(t["state"] == "pending" for t in workers(doc))
                kinds = {d["kind"] for d in doc.get("diagnoses", [])}
                # A busy loop is not a blocked one: the second read does not
                # repeat a loop-blocked finding of a loop that moved on.
                assert not kinds, doc["diagnoses"]


def test_frozen_reads_of_a_thread_entering_the_eval_loop_see_its_whole_stack(python, snarl,
                                                                             tmp_path):
    """3.11 and 3.12 publish an evaluation loop's C frame before they link
    its first frame: a thread stopped in between still has its whole stack,
    the one the program recorded, with or without the frame being entered."""
    with Sample(python, "torn_entry.py", tmp_path) as s:
        want = [(name, line) for name, line in reversed(s.truth["stack"])]
        for _ in range(ENTRY_ROUNDS):
            doc = read(snarl, s.pid, ["stacks", "--format", "json"])
            assert not damaged(doc), doc["threads"]
            [thread] = doc["threads"]
            got = [(f["function"], f["line"]) for f in thread["stack"]]
            assert got[1:] == want if got[0][0] == "called" else got == want, got
