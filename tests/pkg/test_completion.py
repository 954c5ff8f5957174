"""Shell completion (completions/): bash's run for real on command lines;
zsh's parsed and its process lister run. Both offer the PID of a running
Python process (and not of other processes), and know every option
`snarl --help` and `snarl watch --help` print and every diagnosis kind the
engine accepts for --fail-on (its own error message lists them), so a new
option or kind that the completion lacks fails here.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SNARL = os.path.join(ROOT, "build", "snarl")
BASH = os.path.join(ROOT, "completions", "snarl.bash")
ZSH = os.path.join(ROOT, "completions", "_snarl")
TIMEOUT = 60


def _run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, **kw)


@pytest.fixture(scope="module")
def help_texts():
    if not os.access(SNARL, os.X_OK):
        pytest.fail("build/snarl is missing: run make first")
    main = _run([SNARL, "--help"]).stdout
    watch = _run([SNARL, "watch", "--help"]).stdout
    bogus = _run([SNARL, "check", "--fail-on", "no-such-kind", str(os.getpid())]).stderr
    kinds = re.search(r"kinds: ([a-z, -]+)", bogus)
    assert kinds, bogus
    return {"main": set(re.findall(r"(--[a-z-]+)", main.split("options:")[1])),
            "watch": set(re.findall(r"(--[a-z-]+)", watch.split("options:")[1].split("\n\n")[0])),
            "kinds": {k.strip() for k in kinds.group(1).split(",")}}


@pytest.fixture
def sleeper():
    """A Python process and a process that is not Python."""
    py = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    other = subprocess.Popen(["sleep", "600"])
    yield py.pid, other.pid
    for p in (py, other):
        p.kill()
        p.wait()


def _bash_complete(*words):
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _snarl; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    out = _run(["bash", "-c", script, "bash", BASH] + list(words), cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_bash_offers_python_pids_and_not_others(sleeper):
    py, other = sleeper
    targets = _bash_complete("snarl", "check", "")
    assert str(py) in targets and str(other) not in targets
    # the first word may also be a command
    assert {"check", "stacks", "tasks", "tree", "graph", "task", "watch"} <= set(
        _bash_complete("snarl", ""))


def test_bash_knows_every_option_and_kind(help_texts):
    assert set(_bash_complete("snarl", "--")) >= help_texts["main"]
    assert set(_bash_complete("snarl", "watch", "--")) >= help_texts["watch"]
    kinds = {k for k in _bash_complete("snarl", "--fail-on", "")}
    assert kinds == help_texts["kinds"]
    assert _bash_complete("snarl", "--fail-on", "lock-cycle,all") == ["lock-cycle,all-asleep"]
    assert set(_bash_complete("snarl", "graph", "--format", "")) == {
        "dot", "svg", "mermaid", "json", "text"}
    assert set(_bash_complete("snarl", "stacks", "--format", "")) == {"text", "json"}
    assert set(_bash_complete("snarl", "watch", "--format", "")) == {"text", "json"}
    # after watch's --, the command: a program on PATH
    assert "sleep" in _bash_complete("snarl", "watch", "--timeout", "5", "--", "slee")


needs_zsh = pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed")


@needs_zsh
def test_zsh_file_parses_and_lists_python_pids(sleeper):
    assert _run(["zsh", "-n", ZSH]).returncode == 0
    py, other = sleeper
    script = ('eval "$(sed -n "/^_snarl_python_pids()/,/^}/p" "$1")"; _snarl_python_pids; '
              'print -rl -- $reply')
    out = _run(["zsh", "-f", "-c", script, "zsh", ZSH])
    assert out.returncode == 0, out.stderr
    pids = dict(line.split(":", 1) for line in out.stdout.splitlines())
    assert str(py) in pids and str(other) not in pids
    assert pids[str(py)] == "%s -c import time; time.sleep(600)" % sys.executable


@needs_zsh
def test_zsh_knows_every_option_and_kind(help_texts):
    with open(ZSH, encoding="utf-8") as f:
        text = f.read()
    watch = text[text.index("_snarl_watch() {"):text.index("_snarl() {")]
    main = text[text.index("_snarl() {"):]
    def lacks(spec, options):  # an _arguments spec names the option: '--x[', {-h,--x}...
        return {o for o in options if not re.search(r"""['"{,)]%s[=\[,}]""" % o, spec)}

    assert lacks(main, help_texts["main"]) == set()
    assert lacks(watch, help_texts["watch"]) == set()
    kinds = set(re.findall(r"'([a-z-]+)\[", text[text.index("_snarl_kinds() {"):]))
    assert help_texts["kinds"] <= kinds
