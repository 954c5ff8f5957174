"""Garbage pointers: a real core whose task, resource and loop objects are
overwritten with wild words must still give a report or a clean error,
never a crash, a sanitizer report or a hang. Runs the ASan+UBSan build
(`make check` builds it first) when present."""
import json
import os
import random
import re
import shutil
import struct
import subprocess

import pytest

import pythons
from harness import ROOT, SNARL, Sample, core_segments

# Mutated copies per run and words overwritten in each: enough to reach
# every field the walkers read near the objects, quick enough for CI.
COPIES = 30
WORDS = (1, 3, 10, 30)
# Bytes around each object start that get overwritten.
SPAN = (-64, 448)
SANITIZED = os.path.join(ROOT, "build", "asan", "snarl")


def _file_offset(segs, addr):
    for va, off, fsz in segs:
        if va <= addr < va + fsz - 8:
            return off + addr - va
    return None


def _core_and_tasks(tmp_path, python=None, sysroot=()):
    """A gcore core of the lock-cycle sample (under a host interpreter by
    default), the snarl binary to read it with, and its tasks document."""
    if python is None:
        host = [p for p in pythons.PYTHONS if p.root == "/" and not p.debug]
        if not host:
            pytest.skip("no host interpreter")
        python = host[0]
    with Sample(python, "diag_lock_cycle.py", tmp_path) as s:
        core = s.gcore(str(tmp_path))
    snarl = SANITIZED if os.access(SANITIZED, os.X_OK) else SNARL
    doc = json.loads(subprocess.run([snarl, "tasks", "--format", "json"] + list(sysroot) + [core],
                                    capture_output=True, check=True).stdout)
    return snarl, core, doc


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_wild_words_in_task_objects_never_crash_or_hang(tmp_path):
    snarl, core, doc = _core_and_tasks(tmp_path)
    addrs = [int(x["id"], 16) for key in ("tasks", "resources", "loops") for x in doc[key]]
    data = bytearray(open(core, "rb").read())
    segs = core_segments(data)
    targets = [o for o in (_file_offset(segs, a) for a in addrs) if o is not None]
    assert targets
    rng = random.Random(7)
    damaged = str(tmp_path / "damaged.core")
    problems = []
    for k in range(COPIES):
        d = bytearray(data)
        for _ in range(rng.choice(WORDS)):
            p = rng.choice(targets) + rng.randrange(*SPAN) // 8 * 8
            a = rng.choice(addrs)
            v = rng.choice([0, 1, 2**64 - 1, rng.getrandbits(64), a, a + 8 * rng.randrange(-4, 20)])
            d[p:p + 8] = v.to_bytes(8, "little")
        with open(damaged, "wb") as f:
            f.write(d)
        for cmd in ("check", "stacks", "tasks", "tree"):
            try:
                r = subprocess.run([snarl, cmd, damaged], capture_output=True, timeout=60)
            except subprocess.TimeoutExpired:
                problems.append("copy %d, %s: hung" % (k, cmd))
                continue
            err = r.stderr.decode(errors="replace")
            if r.returncode not in (0, 1, 2) or "Sanitizer" in err or "runtime error" in err:
                problems.append("copy %d, %s: status %d %s" % (k, cmd, r.returncode, err[-300:]))
    assert not problems, "\n".join(problems)


# A damaged list must end at once, not after its walk's whole budget
# (PY_GC_OBJECTS_MAX, AIO_TASKS_MAX): well under this.
LOOP_SECONDS = 20


def _patch(data, segs, addr, value):
    off = _file_offset(segs, addr)
    assert off is not None, hex(addr)
    data[off:off + 8] = value.to_bytes(8, "little")


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_a_gc_list_that_loops_into_itself_ends_at_once_and_is_said(tmp_path):
    """Every task is a GC object; its PyGC_Head (16 bytes before it) starts
    with the next link. Pointing one task's link back at an earlier task
    makes the generation list a loop that never reaches its head."""
    snarl, core, doc = _core_and_tasks(tmp_path)
    tasks = sorted(int(t["id"], 16) for t in doc["tasks"])
    data = bytearray(open(core, "rb").read())
    segs = core_segments(data)
    for t in tasks:
        _patch(data, segs, t - 16, tasks[0] - 16)
    damaged = str(tmp_path / "looped.core")
    with open(damaged, "wb") as f:
        f.write(data)
    r = subprocess.run([snarl, "check", "--all-objects", "--format", "json", damaged],
                       capture_output=True, timeout=LOOP_SECONDS)
    assert r.returncode in (0, 1), r.stderr
    out = json.loads(r.stdout)
    assert any("GC lists are damaged" in w for w in out["warnings"]), out["warnings"]
    # The loop flags nothing as weak-only: the pass says it is incomplete,
    # and it stopped at the loop, not after PY_GC_OBJECTS_MAX objects.
    assert not [d for d in out["diagnoses"] if d["kind"] == "weak-pending-task"]
    counts = [int(n) for w in out["warnings"] for n in re.findall(r"after (\d+) objects", w)]
    assert counts and max(counts) < 1000000, out["warnings"]


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_a_task_list_that_loops_into_itself_ends_at_once_and_is_said(tmp_path):
    """3.14+ link every C task into a list through task_node {next, prev};
    a task whose links lead back to itself turns the list into a loop."""
    newer = [p for p in pythons.PYTHONS if p.minor in ("3.14", "3.15") and not p.debug]
    if not newer:
        pytest.skip("no 3.14+ interpreter")
    sysroot = ["--sysroot", newer[0].root] if newer[0].root != "/" else []
    snarl, core, doc = _core_and_tasks(tmp_path, newer[0], sysroot)
    data = bytearray(open(core, "rb").read())
    segs = core_segments(data)
    # Find a task's node: the word inside the task that points at another
    # task's same word (its next) and whose neighbour points back (prev).
    ids = [int(t["id"], 16) for t in doc["tasks"] if t["type"] == "_asyncio.Task"]
    node_off = None
    for off in range(16, 512, 8):
        words = {}
        for t in ids:
            o = _file_offset(segs, t + off)
            words[t] = struct.unpack_from("<Q", data, o)[0] if o is not None else 0
        if sum(1 for t in ids if words[t] - off in ids) >= len(ids) - 2:
            node_off = off
            break
    assert node_off is not None, "no task_node found"
    a = ids[0] + node_off
    _patch(data, segs, a, a)      # next -> itself
    _patch(data, segs, a + 8, a)  # prev -> itself: the back link agrees
    damaged = str(tmp_path / "looped.core")
    with open(damaged, "wb") as f:
        f.write(data)
    r = subprocess.run([snarl, "tasks", "--format", "json"] + sysroot + [damaged],
                       capture_output=True, timeout=LOOP_SECONDS)
    assert r.returncode in (0, 1), r.stderr
    out = json.loads(r.stdout)
    assert any("task registry is damaged" in w for w in out["warnings"]), out["warnings"]
