"""Each test tier reports its wall time against its budget at the end of every run.

The budgets are what `.ci/run` plans for (CI has 90 minutes, and aims for 25 in all). Going over
one is not a test failure (timing goals are never asserted), but the line says so, so a tier that
slowly gets heavier is seen on the day it crosses its budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["TIER_BUDGETS_S", "TierClock"]

# Wall seconds on a 2-core CI machine with the lab's tools (.ci/run says the same). Measured when
# this was written, on a quiet machine: unit 23 s, cli 55 s, sim 26 s, integration 110 s, lab 227 s;
# the group failover (issue 12) then added ~70 s to sim (two runs of 100 seeds are its acceptance)
# and a 4-process kill -9 run to integration.
TIER_BUDGETS_S = {"unit": 60, "cli": 90, "sim": 150, "integration": 300, "lab": 600}


class TierClock:
    """Wall time of each tier: from its first test's start to its last test's end."""

    def __init__(self, tests_directory: Path) -> None:
        self._tests = tests_directory
        self.rootpath = tests_directory.parent  # test ids are relative to pytest's root
        self._spans: dict[str, tuple[float, float]] = {}  # test id -> (start, stop) over its phases
        self._tier: dict[str, str] = {}

    def record(self, report: pytest.TestReport) -> None:
        start, stop = self._spans.get(report.nodeid, (report.start, report.stop))
        self._spans[report.nodeid] = (min(start, report.start), max(stop, report.stop))
        if report.nodeid not in self._tier:
            path = (self.rootpath / report.nodeid.split("::", 1)[0]).resolve()
            parts = path.relative_to(self._tests).parts if path.is_relative_to(self._tests) else ()
            self._tier[report.nodeid] = parts[0] if len(parts) > 1 else "other"

    def lines(self) -> list[str]:
        lines = []
        for tier in [*TIER_BUDGETS_S, "other"]:
            spans = [span for nodeid, span in self._spans.items() if self._tier[nodeid] == tier]
            if not spans:
                continue
            wall_s = max(stop for _, stop in spans) - min(start for start, _ in spans)
            budget = TIER_BUDGETS_S.get(tier)
            verdict = "" if budget is None else f" (budget {budget} s{', OVER' if wall_s > budget else ''})"
            lines.append(f"{tier} tier: {len(spans)} tests in {wall_s:.2f} s wall{verdict}")
        return lines
