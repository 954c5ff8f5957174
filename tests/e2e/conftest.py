import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402

import debuggers  # noqa: E402
import pythons  # noqa: E402


@pytest.fixture(scope="module")
def host():
    """A stuck sample under a release interpreter at this machine's root,
    and its core: for the debugger and extension tests."""
    python = debuggers.host_python(pythons.PYTHONS)
    if not python:
        pytest.skip("no release interpreter at this machine's root")
    with debuggers.HostTarget(python) as target:
        yield target
