"""Programs on uvloop: its loop and handles live in C (libuv), so snarl must
find the tasks, and claim nothing about a loop whose state it cannot see."""
import subprocess

import pytest

import pythons
from harness import Sample, run_snarl, snarl_json


def has_uvloop(python):
    out = subprocess.run(list(python.argv) + ["-c", "import uvloop"], capture_output=True)
    return out.returncode == 0


UVLOOP = [p for p in pythons.PYTHONS if has_uvloop(p)]


@pytest.mark.skipif(not UVLOOP, reason="no interpreter with uvloop (python3-uvloop in the chroot)")
@pytest.mark.parametrize("uvpython", UVLOOP, ids=[p.label for p in UVLOOP])
def test_a_healthy_uvloop_program_lists_its_tasks_and_yields_nothing(uvpython, snarl, tmp_path):
    with Sample(uvpython, "uvloop_healthy.py", tmp_path) as s:
        doc = snarl_json("tasks", s.pid)
        out = run_snarl("check", s.pid)
    names = sorted(t["name"] for t in doc["tasks"] if t["name"] in s.truth["tasks"])
    assert names == s.truth["tasks"]
    # uvloop's Loop is a Cython class: tp_name "Loop", not asyncio's event loop.
    assert [lp["type"] for lp in doc["loops"]] == ["Loop"]
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
