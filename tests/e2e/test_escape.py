"""Every byte that comes from a target is escaped before it is printed:
stdout and stderr are valid UTF-8 without a control character a terminal
would obey, whatever a task is named or a file is called. The interpreter
says what the name really is (the sample prints its repr)."""
import json
import os
import subprocess
import sys
import unicodedata

import pytest

import pythons
from harness import SNARL

# A task name with an ANSI "clear screen", a newline, a byte that is not
# UTF-8 (os.fsdecode's surrogate), a right-to-left override.
NAME = "evil\x1b[2J\nname\udcff\u202eend"
# Python's backslashreplace, with the surrogate as the byte it stands for.
ESCAPED = "evil\\x1b[2J\\x0aname\\xff\\u202eend"
PROGRAM = """
import asyncio
async def main():
    ev = asyncio.Event()
    t = asyncio.create_task(ev.wait(), name=%r)
    await asyncio.sleep(0)
    print(repr(t.get_name()), flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
""" % NAME

HOST_PYTHONS = [p for p in pythons.PYTHONS if p.root == "/" and not p.debug]


def _clean(data):
    text = data.decode("utf-8")  # raises on anything that is not UTF-8
    bad = [c for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t"]
    assert not bad, (bad, text)
    assert "\u202e" not in text
    return text


@pytest.fixture(scope="module")
def target():
    if not HOST_PYTHONS:
        pytest.skip("no release interpreter at this machine's root")
    p = subprocess.Popen(list(HOST_PYTHONS[0].argv) + ["-c", PROGRAM], stdout=subprocess.PIPE,
                         text=True)
    assert eval(p.stdout.readline()) == NAME  # the interpreter's word for the name
    yield p.pid
    p.kill()
    p.wait()


@pytest.mark.parametrize("command", ["tasks", "tree", "check", "stacks", "graph"])
def test_a_name_full_of_control_characters_is_printed_escaped(target, command):
    r = subprocess.run([SNARL, command, "--format", "text" if command != "graph" else "dot",
                        str(target)], capture_output=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    out = _clean(r.stdout)
    _clean(r.stderr)
    if command in ("tasks", "tree"):
        assert ESCAPED in out, out


def test_json_stays_valid_and_carries_the_escaped_name(target):
    r = subprocess.run([SNARL, "tasks", "--format", "json", str(target)], capture_output=True,
                       timeout=120)
    doc = json.loads(_clean(r.stdout))
    assert ESCAPED in [t["name"] for t in doc["tasks"]]


def test_an_argument_with_control_characters_is_quoted_escaped(snarl):
    bad = os.fsdecode(b"/nonexistent/\x1b[2J\xff.core")
    r = subprocess.run([SNARL, "check", bad], capture_output=True, timeout=60)
    assert r.returncode == 2
    err = _clean(r.stderr)
    assert "\\x1b[2J\\xff.core" in err, err
