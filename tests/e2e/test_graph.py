"""`snarl graph`: the deadlock is what the eye lands on.

In DOT (and so SVG) and Mermaid alike, the nodes of each deadlock (the
cycle diagnoses: await-cycle, lock-cycle, lock-reacquire, wake-cycle) are
marked as such, and exactly the edges between two nodes of the same
deadlock are drawn red; the other findings' nodes (all-asleep) are marked
apart. `--format svg` runs Graphviz's dot, and says so when it is missing.
Checked on samples with each shape of cycle, against the findings of the
JSON document of the same process.
"""
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import pythons
from harness import Sample, run_snarl

SAMPLES = ("diag_lock_cycle.py", "diag_await_cycle.py", "diag_wake_cycle.py",
           "diag_lock_reacquire.py")
DEADLOCK_KINDS = ("await-cycle", "lock-cycle", "lock-reacquire", "wake-cycle")
DOT_EDGE = re.compile(r'^\s*"(0x[0-9a-f]+)" -> "(0x[0-9a-f]+)"(?: \[(.*)\])?;$')
DOT_NODE_MARK = re.compile(r'^\s*"(0x[0-9a-f]+)" \[color=(red|orange)')
MERMAID_EDGE = re.compile(r"^\s*[tr](0x[0-9a-f]+) (-->|-\.->|-- held by -->|-- could wake -->) "
                          r"[tr](0x[0-9a-f]+)$")
MERMAID_CLASS = re.compile(r"^\s*class [tr](0x[0-9a-f]+) (deadlock|finding)$")

_RUNS = {}


def _host_python():
    for p in pythons.PYTHONS:
        if p.root == "/" and not p.debug:
            return p
    pytest.skip("no host interpreter")


def _run(sample, tmp_path_factory):
    """JSON, DOT, Mermaid and SVG of one run of the sample."""
    if sample not in _RUNS:
        work = tmp_path_factory.mktemp("graph")
        with Sample(_host_python(), sample, str(work)) as s:
            run = {"json": run_snarl("graph", "--format", "json", s.pid),
                   "dot": run_snarl("graph", s.pid),
                   "mermaid": run_snarl("graph", "--format", "mermaid", s.pid)}
            if shutil.which("dot"):
                run["svg"] = run_snarl("graph", "--format", "svg", s.pid)
        for name, out in run.items():
            assert out.returncode == 0, (name, out.stderr)
        _RUNS[sample] = run
    return _RUNS[sample]


def _deadlocks(run):
    """node id -> index of its deadlock diagnosis; ids of other findings."""
    doc = json.loads(run["json"].stdout)
    member, other = {}, set()
    for i, d in enumerate(doc["diagnoses"]):
        for node in d["tasks"] + d["resources"]:
            if d["kind"] in DEADLOCK_KINDS:
                member[node] = i
            else:
                other.add(node)
    assert member, "the sample shows no deadlock"
    return member, other - set(member)


def _inside(member, a, b):
    return a in member and b in member and member[a] == member[b]


@pytest.mark.parametrize("sample", SAMPLES)
def test_dot_draws_exactly_the_deadlock_edges_red(sample, tmp_path_factory):
    run = _run(sample, tmp_path_factory)
    member, other = _deadlocks(run)
    text = run["dot"].stdout.decode()
    edges = [DOT_EDGE.match(line) for line in text.splitlines()]
    edges = [m for m in edges if m]
    assert edges
    wrong = []
    for m in edges:
        red = "color=red" in (m.group(3) or "")
        if red != _inside(member, m.group(1), m.group(2)):
            wrong.append(m.group(0).strip())
    assert not wrong, "\n".join(wrong)
    marks = {m.group(1): m.group(2) for m in map(DOT_NODE_MARK.match, text.splitlines()) if m}
    assert {n for n, c in marks.items() if c == "red"} == set(member)
    assert {n for n, c in marks.items() if c == "orange"} == other
    assert text.count("subgraph cluster_finding_") == len(set(member.values()))


@pytest.mark.parametrize("sample", SAMPLES)
def test_mermaid_styles_exactly_the_deadlock_links(sample, tmp_path_factory):
    run = _run(sample, tmp_path_factory)
    member, other = _deadlocks(run)
    lines = run["mermaid"].stdout.decode().splitlines()
    assert lines[0] == "flowchart LR"
    edges = [m for m in map(MERMAID_EDGE.match, lines) if m]
    want = [i for i, m in enumerate(edges) if _inside(member, m.group(1), m.group(3))]
    styled = [ln for ln in lines if ln.strip().startswith("linkStyle ")]
    assert len(styled) == 1, styled
    got = [int(x) for x in styled[0].split()[1].split(",")]
    assert got == want
    classes = {}
    for m in map(MERMAID_CLASS.match, lines):
        if m:
            classes.setdefault(m.group(1), set()).add(m.group(2))
    assert {n for n, c in classes.items() if "deadlock" in c} == set(member)
    assert {n for n, c in classes.items() if c == {"finding"}} == other


@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz's dot not installed")
@pytest.mark.parametrize("sample", SAMPLES[:1])
def test_svg_is_the_dot_graph_rendered(sample, tmp_path_factory):
    run = _run(sample, tmp_path_factory)
    svg = ET.fromstring(run["svg"].stdout)
    assert svg.tag.endswith("svg")
    labels = [el.text for el in svg.iter() if el.tag.endswith("text") and el.text]
    assert labels.count("deadlock: lock-cycle") == 3, labels
    assert 'stroke="red"' in run["svg"].stdout.decode()


def test_svg_without_graphviz_says_so(snarl, tmp_path):
    """The check comes before the target is read: any PID will do."""
    out = subprocess.run([snarl, "graph", "--format", "svg", str(os.getpid())],
                         capture_output=True, env=dict(os.environ, PATH=str(tmp_path)),
                         timeout=60)
    assert out.returncode == 2
    assert b"Graphviz" in out.stderr and b"--format dot" in out.stderr
    assert out.stdout == b""


def test_svg_is_only_for_graph(snarl):
    out = run_snarl("check", "--format", "svg", os.getpid())
    assert out.returncode == 2 and b"svg is for 'graph'" in out.stderr
