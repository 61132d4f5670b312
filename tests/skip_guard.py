"""A pytest plugin: under CI (`CI` set, as `.ci/run` runs), a skipped test fails the run.

CI installs every extra and has ../shared beside it, so there a test that skips is a test that
did not run, and a green run would claim more than it showed. The only skips allowed are the
tests marked `gpu`, which no CPU machine can run. Locally a skip stays a skip. Either way the
summary prints the count, and names the unexpected ones.
"""

from __future__ import annotations

import os

import pytest

ALLOWED_SKIP_MARKERS = ("gpu",)

_SKIPS: dict[str, list[str]] = {"allowed": [], "unexpected": []}


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped on CPU machines")


def pytest_runtest_logreport(report):
    """Count the skips (xdist's controller receives every worker's reports, so it counts all)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    allowed = any(marker in report.keywords for marker in ALLOWED_SKIP_MARKERS)
    _SKIPS["allowed" if allowed else "unexpected"].append(report.nodeid)


def _controller() -> bool:
    return not os.environ.get("PYTEST_XDIST_WORKER")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _controller() and os.environ.get("CI") and _SKIPS["unexpected"] \
            and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _controller():
        return
    unexpected, allowed = _SKIPS["unexpected"], _SKIPS["allowed"]
    rule = " (CI: an unexpected skip fails the run)" if os.environ.get("CI") else ""
    terminalreporter.write_line(f"skips: {len(unexpected)} unexpected, {len(allowed)} GPU-only"
                                f"{rule}")
    for nodeid in unexpected[:20]:
        terminalreporter.write_line(f"  skipped: {nodeid}")
