"""pytest glue: the interpreter matrix as a parameter, the snarl binary, and
a report of which interpreters ran and which were not found."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import pythons  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNARL = os.path.join(ROOT, "build", "snarl")


def pytest_generate_tests(metafunc):
    if "python" in metafunc.fixturenames:
        metafunc.parametrize("python", pythons.PYTHONS, ids=[p.label for p in pythons.PYTHONS])


@pytest.fixture(scope="session")
def snarl():
    if not os.access(SNARL, os.X_OK):
        pytest.fail("build/snarl is missing: run make first")
    return SNARL


def pytest_sessionstart(session):
    missing = pythons.missing_required()
    if missing and os.environ.get("CI"):
        raise pytest.UsageError(
            "interpreters missing for the CI matrix: %s (run scripts/provision-pythons.sh)"
            % ", ".join(missing))


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    tr.section("interpreter matrix")
    for p in pythons.PYTHONS:
        tr.write_line("ran: %-28s %s" % (p.label, " ".join(p.argv)))
    for minor in ("3.%d" % m for m in pythons.MINORS):
        if minor not in {p.minor for p in pythons.PYTHONS}:
            tr.write_line("not found: %s" % minor)
