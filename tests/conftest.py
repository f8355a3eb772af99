"""Test tiers: a test marked `needs(...)` is skipped, naming what is missing, unless CI asks for
every tier (tests/needs.py), in which case it fails. Each tier's wall time is printed against its
budget (tests/tiers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.needs import REQUIRE_ALL_VARIABLE, explain, missing, require_all
from tests.tiers import TierClock

_clock = TierClock(Path(__file__).resolve().parent)


def pytest_configure(config: pytest.Config) -> None:
    _clock.rootpath = config.rootpath
    config.addinivalue_line("markers", "needs(*needs): machine requirements (tests/needs.py); skipped when absent")


def pytest_runtest_setup(item: pytest.Item) -> None:
    needs = tuple(need for marker in item.iter_markers("needs") for need in marker.args)
    absent = missing(needs)
    if not absent:
        return
    reason = explain(absent)
    if require_all():
        pytest.fail(f"{reason}; {REQUIRE_ALL_VARIABLE} is set, so a test that cannot run fails", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _clock.record(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    for line in _clock.lines():
        terminalreporter.write_line(line)
