"""Lab fixtures: namespaces built by the tests, torn down even when a test fails.

These tests need root, iproute2, iptables and conntrack (.ci/run installs them)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tomstress.lab.netns import PORT_PRESERVING, RELAY_IP, SYMMETRIC, Topology, build_home_home, teardown

PYTHON_TOM_STRESS = [sys.executable, "-m", "tomstress"]
PYTHON_TOM_RELAY = [sys.executable, "-c", "from tomproto.relay.cli import main; main()"]
RELAY = f"{RELAY_IP}:7478"
READ_TIMEOUT_S = 20


def read_json_line(process: subprocess.Popen[str], timeout_s: float = READ_TIMEOUT_S) -> dict[str, Any]:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    if not ready:
        raise TimeoutError("no line from the process")
    return json.loads(process.stdout.readline())


@dataclass
class Lab:
    topology: Topology
    relay: subprocess.Popen[str]
    processes: list[subprocess.Popen[str]]

    def relay_stats(self) -> dict[str, Any]:
        self.relay.send_signal(signal.SIGUSR1)
        while True:
            line = read_json_line(self.relay)
            if line.get("event") == "stats":
                return line

    def start_responder(self) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        process = subprocess.Popen(
            [*self.topology.exec_prefix("home-b"), *PYTHON_TOM_STRESS, "responder",
             "--listen", "0.0.0.0:7400", "--relay", RELAY, "--quiet"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.processes.append(process)
        return process, read_json_line(process)

    def ping_command(self, node_id: str, *arguments: str, output_dir: str) -> list[str]:
        return [
            *self.topology.exec_prefix("home-a"), *PYTHON_TOM_STRESS, "ping", "--connect", node_id,
            "--relay", RELAY, "--json", "--no-live", "--output-dir", output_dir, *arguments,
        ]  # fmt: skip


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    nat_a = getattr(request, "param", PORT_PRESERVING)
    topology = build_home_home(nat_a=nat_a, prefix=f"tl{os.getpid() % 100000}")
    processes: list[subprocess.Popen[str]] = []
    try:
        relay = subprocess.Popen(
            [*topology.exec_prefix("pub"), *PYTHON_TOM_RELAY, "--listen", RELAY, "--stats-interval", "3600"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        processes.append(relay)
        read_json_line(relay)
        yield Lab(topology, relay, processes)
    finally:
        for process in processes:
            stop(process)
        teardown(topology)


__all__ = ["Lab", "stop", "SYMMETRIC", "PORT_PRESERVING"]
