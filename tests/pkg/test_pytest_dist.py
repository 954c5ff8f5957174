"""The pytest plugin as a Python distribution (plugin/pyproject.toml): `pip
install --no-build-isolation ./plugin` into a fresh venv that sees the
system's packages (python3 -m venv --system-site-packages), with no package
index. Then pytest loads it by its pytest11 entry point, with no -p and no
PYTHONPATH: its options are in `pytest --help`, `-p pytest_snarl` (the
README's way from a source tree) still works beside it, and a test of the
hanging suite (tests/e2e/data/hang_suite.py) past --snarl-timeout fails
with snarl's report naming the tasks the test recorded.

Needs Debian's python3 with venv, pip, setuptools, wheel and pytest;
skipped with the reason otherwise (not under CI=true).
"""
import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SNARL = os.path.join(ROOT, "build", "snarl")
SUITE = os.path.join(ROOT, "tests", "e2e", "data", "hang_suite.py")
SYSTEM_PYTHON = "/usr/bin/python3"
SECTION = "snarl: why the test hangs"
# Creating the venv, pip's build and install, one hanging test of 3 s.
STEP_TIMEOUT = 300


def _missing(reason):
    if os.environ.get("CI") == "true":
        pytest.fail("CI must have this: " + reason)
    pytest.skip(reason)


def _run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT, **kw)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        _missing("no %s" % SYSTEM_PYTHON)
    have = _run([SYSTEM_PYTHON, "-c", "import venv, setuptools, wheel, pytest, ensurepip"])
    if have.returncode != 0:
        _missing("%s lacks venv, setuptools, wheel or pytest (python3-venv python3-setuptools "
                 "python3-wheel python3-pytest): %s" % (SYSTEM_PYTHON, have.stderr.strip()))
    base = tmp_path_factory.mktemp("dist")
    env_dir = base / "venv"
    out = _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(env_dir)])
    assert out.returncode == 0, out.stderr
    # A copy of plugin/, as a user has it: pip builds in the tree it is given.
    src = base / "plugin"
    shutil.copytree(os.path.join(ROOT, "plugin"), src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    python = str(env_dir / "bin" / "python")
    out = _run([python, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                "--disable-pip-version-check", str(src)],
               env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
    assert out.returncode == 0, "pip install ./plugin failed:\n%s\n%s" % (out.stdout, out.stderr)
    return python


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHON"))}
    env.update(extra)
    return env


def test_the_distribution_declares_its_pytest11_entry_point(venv):
    out = _run([venv, "-c", "import importlib.metadata as m; "
                "print(*sorted('%s=%s' % (e.name, e.value) for e in "
                "m.entry_points(group='pytest11') if e.value == 'pytest_snarl'))"],
               env=_clean_env(), cwd="/")
    assert out.stdout.split() == ["pytest_snarl=pytest_snarl"], out.stderr
    where = _run([venv, "-c", "import pytest_snarl; print(pytest_snarl.__file__)"],
                 env=_clean_env(), cwd="/").stdout.strip()
    assert where.startswith(os.path.dirname(os.path.dirname(venv))), where
    # One version for the distribution and the snarl it belongs with.
    version = _run([venv, "-c", "import importlib.metadata as m; print(m.version('pytest-snarl'))"],
                   env=_clean_env(), cwd="/").stdout.strip()
    if os.access(SNARL, os.X_OK):
        assert _run([SNARL, "--version"]).stdout == "snarl %s\n" % version


def test_pytest_loads_it_without_being_told(venv, tmp_path):
    auto = _run([venv, "-m", "pytest", "--help"], env=_clean_env(), cwd=str(tmp_path))
    assert auto.returncode == 0, auto.stderr
    assert "--snarl-timeout=SECONDS" in auto.stdout and "--snarl-path" in auto.stdout
    # The README's -p pytest_snarl names the same plugin: not loaded twice
    # (which pytest refuses), the same help.
    out = _run([venv, "-m", "pytest", "-p", "pytest_snarl", "--help"], env=_clean_env(),
               cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout == auto.stdout
    # And it can be switched off by that name.
    out = _run([venv, "-m", "pytest", "-p", "no:pytest_snarl", "--help"], env=_clean_env(),
               cwd=str(tmp_path))
    assert out.returncode == 0 and "--snarl-timeout" not in out.stdout, out.stderr


def test_a_hanging_test_fails_with_the_report(venv, tmp_path):
    if not os.access(SNARL, os.X_OK):
        pytest.fail("build/snarl is missing: run make first")
    truth = tmp_path / "truth"
    truth.mkdir()
    out = _run([venv, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-p",
                "no:timeout", "-W", "ignore::pytest.PytestUnknownMarkWarning",
                "--rootdir", str(tmp_path), "-k", "snarl_timeout", SUITE],
               env=_clean_env(SNARL=SNARL, HANG_TRUTH_DIR=str(truth)), cwd=str(tmp_path))
    log = out.stdout + out.stderr
    assert out.returncode == 1, log
    assert "snarl: %s (reports on tests that time out)" % SNARL in log
    assert log.count(SECTION) == 1 and "all-asleep" in log, log
    with open(truth / "test_waits_forever_under_snarl_timeout.json", encoding="utf-8") as f:
        ids = json.load(f)
    for name, task_id in ids.items():
        assert "task '%s' (%s)" % (name, task_id) in log, (name, task_id)
