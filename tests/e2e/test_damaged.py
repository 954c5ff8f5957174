"""Garbage pointers: a real core whose task, resource and loop objects are
overwritten with wild words must still give a report or a clean error,
never a crash, a sanitizer report or a hang. Runs the ASan+UBSan build
(`make check` builds it first) when present."""
import json
import os
import random
import shutil
import struct
import subprocess

import pytest

import pythons
from harness import ROOT, Sample, SNARL

# Mutated copies per run and words overwritten in each: enough to reach
# every field the walkers read near the objects, quick enough for CI.
COPIES = 30
WORDS = (1, 3, 10, 30)
# Bytes around each object start that get overwritten.
SPAN = (-64, 448)
SANITIZED = os.path.join(ROOT, "build", "asan", "snarl")


def _segments(data):
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phnum = struct.unpack_from("<H", data, 56)[0]
    out = []
    for i in range(phnum):
        typ, _, off, va, _, fsz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * 56)
        if typ == 1 and fsz:
            out.append((va, off, fsz))
    return out


def _file_offset(segs, addr):
    for va, off, fsz in segs:
        if va <= addr < va + fsz - 8:
            return off + addr - va
    return None


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_wild_words_in_task_objects_never_crash_or_hang(tmp_path):
    host = [p for p in pythons.PYTHONS if p.root == "/" and not p.debug]
    if not host:
        pytest.skip("no host interpreter")
    with Sample(host[0], "diag_lock_cycle.py", tmp_path) as s:
        core = s.gcore(str(tmp_path))
    snarl = SANITIZED if os.access(SANITIZED, os.X_OK) else SNARL
    doc = json.loads(subprocess.run([snarl, "tasks", "--format", "json", core],
                                    capture_output=True, check=True).stdout)
    addrs = [int(x["id"], 16) for key in ("tasks", "resources", "loops") for x in doc[key]]
    data = bytearray(open(core, "rb").read())
    segs = _segments(data)
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
