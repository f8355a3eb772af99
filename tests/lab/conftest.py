"""Lab fixtures: namespaces built by the tests, torn down even when a test fails.

Every test here needs root, iproute2, iptables, conntrack and ping (tests/needs.py: skipped with
the reason when they are missing, failed under CI's TOM_TESTS_REQUIRE_ALL); the delay tests also
need the lab extra. .ci/run installs all of it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.needs import LAB
from tomstress.lab.session import RELAYS, Impairments, LabSession, relay_stats, start, start_responder, stop

__all__ = ["Lab", "stop_process"]


@dataclass
class Lab:
    session: LabSession

    @property
    def topology(self):
        return self.session.topology

    def relay_stats(self) -> dict[str, Any]:
        return relay_stats(self.session)

    def start_responder(self) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        """A fresh responder behind side b (the session's first one is stopped first)."""
        for process in self.session.processes[self.session.relay_index + 1 :]:
            stop_process(process)
        process = start_responder(self.session)
        return process, {"node_id": self.session.responder_id}

    def ping_command(self, node_id: str, *arguments: str, output_dir: str) -> list[str]:
        return self.session.command(
            ["ping", "--connect", node_id, "--relay", RELAYS[0], "--json", "--no-live", "--output-dir", output_dir,
             *arguments]
        )  # fmt: skip


def stop_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in item.nodeid:
            item.add_marker(pytest.mark.needs(*LAB))


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    session = start(getattr(request, "param", "home-home"), Impairments())
    try:
        yield Lab(session)
    finally:
        stop(session)
