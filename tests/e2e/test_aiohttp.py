"""A real aiohttp service (samples/aiohttp_deadlock.py) deadlocked by two
request handlers taking two locks in opposite orders, on asyncio's loop and
on uvloop's: snarl must name exactly those two handler tasks and those two
locks as one lock-cycle, live and from a core, among aiohttp's own tasks."""
import json
import shutil
import subprocess

import pytest

import pythons
from harness import Sample, run_snarl


def has(python, modules):
    out = subprocess.run(list(python.argv) + ["-c", "import " + modules], capture_output=True)
    return out.returncode == 0


AIOHTTP = [p for p in pythons.PYTHONS if has(p, "aiohttp")]
CASES = [(p, loop) for p in AIOHTTP for loop in ("asyncio", "uvloop")
         if loop == "asyncio" or has(p, "uvloop")]


def sysroot(python):
    return ["--sysroot", python.root] if python.root != "/" else []


@pytest.mark.skipif(not CASES, reason="no interpreter with aiohttp (python3-aiohttp in the chroot)")
@pytest.mark.parametrize("mode", ["live", "core"])
@pytest.mark.parametrize("case", CASES, ids=["%s %s" % (p.label, loop) for p, loop in CASES])
def test_a_deadlocked_aiohttp_service_names_its_two_handlers_and_locks(case, mode, snarl,
                                                                       tmp_path):
    python, loop = case
    if mode == "core" and not shutil.which("gcore"):
        pytest.skip("gcore (gdb) not installed")
    args = ["uvloop"] if loop == "uvloop" else []
    with Sample(python, "aiohttp_deadlock.py", tmp_path, args) as s:
        target = s.gcore(str(tmp_path)) if mode == "core" else s.pid
        out = run_snarl("check", "--format", "json", *sysroot(python), target)
        truth = s.truth
    assert truth["loop"] == ("Loop" if loop == "uvloop" else "_UnixSelectorEventLoop")
    assert out.returncode == 1, out.stderr.decode()
    doc = json.loads(out.stdout)
    cycles = [d for d in doc["diagnoses"] if d["kind"] == "lock-cycle"]
    assert len(cycles) == 1, doc["diagnoses"]
    assert sorted(cycles[0]["tasks"]) == truth["handlers"]
    assert sorted(cycles[0]["resources"]) == truth["locks"]
    # aiohttp's own tasks are there too, and none of them is in a finding
    # but the two handlers (and, on asyncio's loop, the all-asleep verdict).
    assert len(doc["tasks"]) > 2
    others = {d["kind"] for d in doc["diagnoses"]} - {"lock-cycle", "all-asleep"}
    assert not others, doc["diagnoses"]
