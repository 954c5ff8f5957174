"""The JSON contract in machine-readable form: docs/snarl-1.schema.json
(every command's --format json) and docs/snarl-watch-1.schema.json (`snarl
watch --format json`), checked against real output of every command on a
sample with tasks, locks, events and a deadlock, live and from a core, on
a host interpreter and on 3.14+ (whose documents carry the interpreter's
own awaited-by records). `snarl watch` output is checked in test_watch.py.
The checker (schema_check.py) is itself shown to reject broken documents,
so that these tests can fail.
"""
import copy
import json
import os
import re
import shutil

import pytest

import pythons
from harness import ROOT, Sample, run_snarl
from schema_check import Checker, assert_valid, load

# Samples with every kind of task, resource and diagnosis between them.
SAMPLES = ("diag_wake_mixed.py", "aio_primitives.py")
COMMANDS = (("check",), ("stacks",), ("tasks",), ("tasks", "--all-objects"), ("tree",),
            ("graph",))


def _pythons():
    chosen = []
    for want_root in (False, True):
        for p in pythons.PYTHONS:
            if not p.debug and (p.root != "/") == want_root and \
                    (not want_root or p.minor >= "3.14"):
                chosen.append(p)
                break
    return chosen


PYTHONS = _pythons()
_DOCS = {}


def _docs(python, sample, tmp_path_factory):
    """Every command's JSON document on one run of the sample, live and
    from a core: {(mode, command): document}."""
    key = (python.label, sample)
    if key in _DOCS:
        return _DOCS[key]
    docs = {}
    work = tmp_path_factory.mktemp("schema")
    with Sample(python, sample, str(work)) as s:
        targets = [("live", s.pid)]
        if shutil.which("gcore"):
            targets.append(("core", s.gcore(str(work))))
        for mode, target in targets:
            for cmd in COMMANDS:
                out = run_snarl(*cmd, "--format", "json", target)
                assert out.returncode in (0, 1), out.stderr
                docs[(mode, " ".join(cmd))] = json.loads(out.stdout)
            one = docs[(mode, "tasks")]["tasks"][0]["id"]
            out = run_snarl("task", one, "--format", "json", target)
            assert out.returncode == 0, out.stderr
            docs[(mode, "task")] = json.loads(out.stdout)
    _DOCS[key] = docs
    return docs


@pytest.mark.parametrize("wpython", PYTHONS, ids=[p.label for p in PYTHONS])
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_commands_json_matches_the_schema(wpython, sample, tmp_path_factory):
    docs = _docs(wpython, sample, tmp_path_factory)
    for (mode, cmd), doc in sorted(docs.items()):
        try:
            assert_valid(doc, "snarl-1.schema.json")
        except AssertionError as e:
            raise AssertionError("%s %s: %s" % (mode, cmd, e)) from None
    # The optional parts were there to be checked.
    check = docs[("live", "check")]
    assert check["tasks"] and check["resources"] and check["loops"] and "verdict" in check
    assert any(f.get("locals") for t in docs[("live", "task")]["tasks"] for f in t["stack"])


def test_the_checker_rejects_broken_documents():
    good = {"schema": "snarl/1",
            "target": {"kind": "live", "pid": 1, "python": "3.11.2", "executable": None,
                       "frozen": True},
            "threads": [], "warnings": [],
            "diagnoses": [{"kind": "lock-cycle", "tasks": ["0x10"], "resources": [],
                           "loop": None, "summary": "x.", "details": []}]}
    assert Checker("snarl-1.schema.json").check(good) == []
    breakages = {
        "no target": lambda d: d.pop("target"),
        "wrong schema": lambda d: d.update(schema="snarl/2"),
        "unknown kind": lambda d: d["diagnoses"][0].update(kind="deadlock"),
        "upper-case address": lambda d: d["diagnoses"][0].update(tasks=["0xABC"]),
        "pid as string": lambda d: d["target"].update(pid="1"),
        "bool as int": lambda d: d["target"].update(frozen=1),
    }
    for name, breakage in breakages.items():
        doc = copy.deepcopy(good)
        breakage(doc)
        assert Checker("snarl-1.schema.json").check(doc), name


def test_the_schemas_carry_the_version_the_engine_prints():
    """snarl/1 in snarl.h, in the schema files and in docs/json.md."""
    with open(os.path.join(ROOT, "src", "snarl.h"), encoding="utf-8") as f:
        version = re.search(r'#define SNARL_SCHEMA "([^"]+)"', f.read()).group(1)
    assert load("snarl-1.schema.json")["properties"]["schema"]["const"] == version
    watch = load("snarl-watch-1.schema.json")
    assert watch["properties"]["processes"]["items"]["properties"]["report"]["anyOf"][1] == \
        {"$ref": "snarl-1.schema.json"}
    with open(os.path.join(ROOT, "docs", "json.md"), encoding="utf-8") as f:
        text = f.read()
    for name in ("snarl-1.schema.json", "snarl-watch-1.schema.json", "snarl-watch/1"):
        assert name in text, name
