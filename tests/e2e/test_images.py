"""The fuzz seeds' recorder on today's engine: a real core of a deadlock
sample, recorded into a memory image (tests/fuzz/README.md) with every
command, replays to exactly the same output and status as the core itself
(snarl-record checks this and exits 1 otherwise), on every interpreter.
So the images the engine fuzz target and the fault tool run on stand for
real analyses."""
import os
import shutil
import subprocess

import pytest

from harness import ROOT, Sample

RECORD = os.path.join(ROOT, "build", "snarl-record")


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_recorded_image_replays_exactly_what_the_core_prints(python, tmp_path):
    if not os.access(RECORD, os.X_OK):
        pytest.fail("build/snarl-record is missing: run make first")
    with Sample(python, "diag_lock_cycle.py", tmp_path) as s:
        core = s.gcore(str(tmp_path))
    argv = [RECORD] + (["--sysroot", python.root] if python.root != "/" else [])
    out = subprocess.run(argv + [core, str(tmp_path / "image")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # The deadlock is found from the core, so the image holds a real analysis.
    assert "check=1" in out.stderr, out.stderr
