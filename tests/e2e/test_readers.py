"""The CPython layer's object readers and GC enumeration against the
interpreter's own view, on every interpreter of the matrix, live and from a
core made with gcore. samples/objects_stuck.py records id() and the decoded
value of every attribute of its objects, the Marker instances
gc.get_objects() lists and, once all its threads are blocked,
len(gc.get_objects()); build/snarl-probe reads the same through py_gc_each,
py_type_of, py_type_name, py_attr and the str, int and container readers."""
import json
import os
import shutil
import subprocess
import time

import pytest

from harness import READY_TIMEOUT, ROOT, Sample

PROBE = os.path.join(ROOT, "build", "snarl-probe")
SAMPLE = "objects_stuck.py"
# py_read_long decodes what fits a signed 64-bit integer; larger ints are
# reported as ERR_LIMIT ("<big int>" in the product).
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
# How far snarl's count of GC objects may be from the interpreter's: not at
# all. The sample counts once its other threads are blocked for good and
# makes nothing GC-tracked after counting (samples/objects_stuck.py,
# count_when_settled), so the lists hold exactly that many objects; a count
# taken before settle() would miss the ~40-70 objects settle() leaves
# behind (its watcher thread, the garbage cycles of json.dump(indent=1)).
# gc.get_objects() leaves out its own result list, which snarl never sees,
# and the permanent generation (gc.freeze(); CPython 3.12 starts with a few
# hundred objects there), which snarl walks: the truth adds
# gc.get_freeze_count().
GC_COUNT_TOLERANCE = 0
# Mismatches listed in a failure message; the rest are counted.
SHOWN_MISMATCHES = 30
# Characters of a value shown in a mismatch (long strs, big containers).
SHOWN_CHARS = 400


@pytest.fixture(scope="session")
def probe():
    if not os.access(PROBE, os.X_OK):
        pytest.fail("build/snarl-probe is missing: run make first")
    return PROBE


def settled_count(sample):
    """len(gc.get_objects()) as the sample's last thread wrote it once the
    process was at rest; the target must not be read before."""
    path = sample.truth_path + ".gc.json"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)["gc_objects"]
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError("the sample never wrote %s" % path)
            time.sleep(0.02)


def run_probe(truth, *target):
    args = [PROBE]
    for t in sorted({o["type"] for o in truth["objects"]} | {"Marker"}):
        args += ["-t", t]
    for a in truth["attr_names"]:
        args += ["-a", a]
    out = subprocess.run(args + [str(t) for t in target], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return json.loads(out.stdout.decode("utf-8"))


SETS = ("set", "frozenset")


def normalized(d, unordered=False):
    """A value as both sides can state it: types by their short name (the
    probe prints tp_name, e.g. "collections.deque"), the items of a set in
    address order."""
    if "absent" in d:
        return d
    out = dict(d, type=d["type"].rsplit(".", 1)[-1])
    if "items" in d:
        out["items"] = [[normalized(x) for x in i] if isinstance(i, list) else normalized(i)
                        for i in d["items"]]
        if unordered:
            out["items"].sort(key=lambda i: i["addr"])
    return out


def expected(want):
    """The truth's value as snarl-probe must report it: whole strings (the
    probe reads up to 64 Ki code points), ints beyond 64 bits refused."""
    if "absent" in want:
        return want
    out = dict(want)
    if "int" in out and not INT64_MIN <= out["int"] <= INT64_MAX:
        del out["int"]
        out["error"] = "LIMIT"
    if "str" in out:
        out["cut"] = False
    if "items" in out:
        out["items"] = [[expected(x) for x in i] if isinstance(i, list) else expected(i)
                        for i in out["items"]]
    return normalized(out, out["type"] in SETS)


def untyped(d):
    """d without type names: values are compared apart from py_type_name."""
    if isinstance(d, list):
        return [untyped(x) for x in d]
    if isinstance(d, dict):
        return {k: untyped(v) for k, v in d.items() if k not in ("type", "type_error")}
    return d


def typed(d):
    """(address, type name, py_type_name's error) of a value and of each item
    it lists, in order."""
    if "absent" in d:
        return []
    out = [(d["addr"], d["type"], d.get("type_error"))]
    for i in d.get("items", []):
        for x in i if isinstance(i, list) else [i]:
            out += typed(x)
    return out


def short(value):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def assert_matches_truth(doc, truth, gc_count):
    # The sample must spread its Markers over generations, or finding them
    # all would not show that every generation is walked; and it must keep
    # attributes in managed or inline values, in a dict and in slots, the
    # three places py_attr tells apart.
    assert len(set(truth["marker_generations"].values())) >= 2, truth["marker_generations"]
    storages = {o["storage"] for o in truth["objects"]}
    assert storages == {"values", "dict", "none"}, storages
    assert doc["python"] == truth["python"]
    wrong = []
    # 3.14+ export the asyncio debug table from wherever _asyncio lives.
    minor = tuple(int(x) for x in truth["python"].split(".")[:2])
    ad = doc.get("asyncio_debug")
    if minor >= (3, 14):
        if not ad:
            wrong.append("no .AsyncioDebug section found")
        else:
            if ad["task_size"] != truth["asyncio_task_size"]:
                wrong.append(".AsyncioDebug task size %d, Task.__basicsize__ %d" %
                             (ad["task_size"], truth["asyncio_task_size"]))
            if os.path.basename(ad["file"]) != os.path.basename(truth["asyncio_file"]):
                wrong.append(".AsyncioDebug in %s, _asyncio in %s" % (ad["file"], truth["asyncio_file"]))
    elif ad:
        wrong.append(".AsyncioDebug found before 3.14: %s" % ad)
    if doc["gc_truncated"]:
        wrong.append("the GC walk was cut short")
    want_count = gc_count + truth["freeze_count"]
    if abs(doc["gc_objects"] - want_count) > GC_COUNT_TOLERANCE:
        wrong.append("GC objects: snarl %d, the interpreter %d (%d listed + %d frozen)" %
                     (doc["gc_objects"], want_count, gc_count, truth["freeze_count"]))
    got_markers = {o["addr"] for o in doc["objects"] if o["type"] == "Marker"}
    want_markers = set(truth["markers"])
    if got_markers != want_markers:
        wrong.append("Markers: missing %s, extra %s" % (sorted(want_markers - got_markers),
                                                         sorted(got_markers - want_markers)))
    got = {o["addr"]: o for o in doc["objects"]}
    # Type names are checked apart and summed up by (expected, got): one
    # unreadable tp_name would otherwise show in every value of that type.
    bad_types = {}
    for obj in truth["objects"]:
        mine = got.get(obj["addr"])
        if mine is None:
            wrong.append("%s at %s: not found on the GC lists" % (obj["type"], obj["addr"]))
            continue
        if mine["type"] != obj["type"]:
            wrong.append("%s at %s: type %s" % (obj["type"], obj["addr"], mine["type"]))
        name = obj["attrs"].get("name", {}).get("str", "")
        for attr, want_raw in sorted(obj["attrs"].items()):
            want = expected(want_raw)
            have = mine["attrs"].get(attr, {"not in the probe's output": True})
            have = normalized(have, want.get("type") in SETS) if "type" in have else have
            where = "%s %r (%s).%s" % (obj["type"], name, obj["addr"], attr)
            if untyped(have) != untyped(want):
                wrong.append("%s:\n    snarl    %s\n    expected %s" %
                             (where, short(have), short(want)))
                continue
            for (addr, t, err), (_, t_want, _) in zip(typed(have), typed(want)):
                if t != t_want:
                    key = (t_want, t, err)
                    bad_types.setdefault(key, [0, "%s at %s" % (where, addr)])[0] += 1
    for (t_want, t, err), (n, example) in sorted(bad_types.items()):
        wrong.append("type %s read as %r%s, %d times, e.g. %s" %
                     (t_want, t, " (%s)" % err if err else "", n, example))
    assert not wrong, "%d mismatches:\n%s%s" % (
        len(wrong), "\n".join(wrong[:SHOWN_MISMATCHES]),
        "\n..." if len(wrong) > SHOWN_MISMATCHES else "")


def test_readers_live_match_the_interpreter(python, probe, tmp_path):
    with Sample(python, SAMPLE, tmp_path) as s:
        count = settled_count(s)
        doc = run_probe(s.truth, s.pid)
        assert_matches_truth(doc, s.truth, count)


@pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")
def test_readers_from_gcore_core_match_the_interpreter(python, probe, tmp_path):
    with Sample(python, SAMPLE, tmp_path) as s:
        count = settled_count(s)
        core = s.gcore(str(tmp_path))
        truth = s.truth
    doc = run_probe(truth, core)
    assert_matches_truth(doc, truth, count)
