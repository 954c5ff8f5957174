"""`snarl stacks` against the interpreter's own view of every thread
(sys._current_frames(), recorded by the sample), live and from a core made
with gcore, on every interpreter of the matrix."""
import shutil

import pytest

from harness import WATCHER, Sample, run_snarl, snarl_json


def by_native_id(threads):
    return {t["native_id"]: t for t in threads if t["name"] != WATCHER}


def frames(stack):
    return [(f["function"], f["file"], f["line"]) for f in stack]


def assert_matches_truth(doc, truth, python):
    assert doc["schema"] == "snarl/1"
    assert doc["target"]["python"] == truth["python"]
    assert doc["target"]["pid"] == truth["pid"]
    got, want = by_native_id(doc["threads"]), by_native_id(truth["threads"])
    assert set(got) == set(want), "threads differ"
    for tid, t in want.items():
        assert frames(got[tid]["stack"]) == frames(t["stack"]), "thread %s (%s)" % (tid, t["name"])
        assert got[tid]["name"] == t["name"]
        assert not got[tid]["truncated"]
    # The busy thread is the one holding the GIL; the others are blocked.
    holders = [t["name"] for t in doc["threads"] if t["holds_gil"] and t["name"] != WATCHER]
    assert holders in (["spinner"], []) if doc["target"]["kind"] == "live" and \
        not doc["target"]["frozen"] else holders == ["spinner"], holders


def test_stacks_live_match_the_interpreter(python, snarl, tmp_path):
    with Sample(python, "threads_stuck.py", tmp_path) as s:
        doc = snarl_json("stacks", s.pid)
        assert doc["target"]["kind"] == "live"
        assert doc["target"]["frozen"] is True
        assert_matches_truth(doc, s.truth, python)


def test_stacks_live_without_freezing_match_the_interpreter(python, snarl, tmp_path):
    with Sample(python, "threads_stuck.py", tmp_path) as s:
        doc = snarl_json("stacks", "--no-freeze", s.pid)
        assert doc["target"]["frozen"] is False
        assert_matches_truth(doc, s.truth, python)


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_stacks_from_gcore_core_match_the_interpreter(python, snarl, tmp_path):
    with Sample(python, "threads_stuck.py", tmp_path) as s:
        core = s.gcore(str(tmp_path))
        truth = s.truth
    doc = snarl_json("stacks", core)
    assert doc["target"]["kind"] == "core"
    assert_matches_truth(doc, truth, python)


def test_stacks_text_shows_each_thread_block(python, snarl, tmp_path):
    with Sample(python, "threads_stuck.py", tmp_path) as s:
        out = run_snarl("stacks", s.pid)
    text = out.stdout.decode("utf-8")
    assert out.returncode == 0, out.stderr
    assert text.startswith("Python %s, process %d" % (s.truth["python"], s.pid))
    for t in s.truth["threads"]:
        assert 'Thread %d "%s" (' % (t["native_id"], t["name"]) in text
        top = t["stack"][0]
        assert "    %s (%s:%d)\n" % (top["function"], top["file"], top["line"]) in text
