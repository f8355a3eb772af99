"""The simulation tier reports its own wall time: it is meant to stay fast (virtual seconds in
milliseconds), and a figure printed on every run shows when it stops being so."""

from __future__ import annotations

from pathlib import Path

import pytest

_SIM_DIRECTORY = Path(__file__).resolve().parent
# nodeid -> (start, stop) wall-clock seconds, over all of its phases (setup, call, teardown).
_spans: dict[str, tuple[float, float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    start, stop = _spans.get(report.nodeid, (report.start, report.stop))
    _spans[report.nodeid] = (min(start, report.start), max(stop, report.stop))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    spans = [span for nodeid, span in _spans.items() if _is_sim_test(config.rootpath, nodeid)]
    if not spans:
        return
    wall_s = max(stop for _, stop in spans) - min(start for start, _ in spans)
    terminalreporter.write_line(f"sim tier: {len(spans)} tests in {wall_s:.2f} s wall")


def _is_sim_test(rootpath: Path, nodeid: str) -> bool:
    return (rootpath / nodeid.split("::", 1)[0]).resolve().is_relative_to(_SIM_DIRECTORY)
