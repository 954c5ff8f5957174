"""Reports which CPython header sets tests/layout checked, which it skipped
and why, and the point-release differences it let pass, at the end of the
pytest run (the lines are collected by test_layout.py)."""
import pytest

REPORT_KEY = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def layout_report(request):
    return request.config.stash.setdefault(REPORT_KEY, [])


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(REPORT_KEY, None)
    if lines:
        terminalreporter.section("layout tables vs CPython headers")
        for line in lines:
            terminalreporter.write_line(line)
