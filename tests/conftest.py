"""Test-wide rules.

With PVTEST_REQUIRE_REAL_TOOLS=1 (set by `make test` and CI) a skipped integration
test is a failure: a test that claims a real component (fsck.fat, mtools, isoinfo,
libvirtd, QEMU) must really run it there, not skip because it is missing.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from builder import interrupts


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("PVTEST_REQUIRE_REAL_TOOLS") == "1"
        and item.get_closest_marker("integration") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"integration test skipped where real tools are required: {reason}"


@pytest.fixture(autouse=True)
def _no_signal_of_an_earlier_test() -> Generator[None, None, None]:
    """Each test starts with no stop signal noted and the work not finished: a command
    run in this process (cli.main calls interrupts.finish()) would otherwise make a
    later test's signal count for nothing."""
    interrupts.reset()
    yield
    interrupts.reset()
