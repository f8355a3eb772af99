"""Hole punching through NATs in namespaces: direct when the NATs allow it, relay when they don't,
and back and forth when the direct path dies and returns."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.lab.conftest import Lab, stop_process
from tomstress.archive import read_archive, validate_archive

TRIES = 20


def pair_bytes(stats: dict, node_id: str) -> int:
    return sum(pair["bytes"] for pair in stats["pairs"] if node_id in (pair["from"], pair["to"]))


def accounted(probes: dict) -> bool:
    return probes["sent"] == probes["ok"] + probes["late"] + probes["lost"] + probes["send_error"]


def test_port_preserving_nats_start_on_the_relay_and_go_direct_every_time(lab: Lab, tmp_path: Path) -> None:
    for attempt in range(TRIES):
        lab.topology.flush_conntrack()
        responder, info = lab.start_responder()
        try:
            ping = subprocess.Popen(
                lab.ping_command(info["node_id"], "--count", "25", "--interval", "100ms", "--timeout", "2s",
                                 output_dir=str(tmp_path)),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.5)  # well after the switch to direct
            during = pair_bytes(lab.relay_stats(), info["node_id"])
            stdout, stderr = ping.communicate(timeout=60)
            after = pair_bytes(lab.relay_stats(), info["node_id"])
        finally:
            stop_process(responder)
        assert ping.returncode == 0, stderr
        summary = json.loads(stdout)
        path = summary["path"]
        assert (path["initial"], path["outcome"]) == ("relay", "direct"), f"attempt {attempt}: {path}"
        assert path["time_to_direct_s"] is not None
        assert accounted(summary["probes"]) and summary["probes"]["sent"] == 25
        assert summary["probes"]["lost"] == 0
        assert during > 0  # the handshake went through the relay...
        assert after == during  # ...and nothing more once direct (keep-alives are not relayed)
        validate_archive(Path(summary["archive"]))


@pytest.mark.parametrize("lab", ["symmetric"], indirect=True)
def test_a_symmetric_nat_keeps_traffic_on_the_relay_without_losing_a_probe(lab: Lab, tmp_path: Path) -> None:
    responder, info = lab.start_responder()
    try:
        result = subprocess.run(
            lab.ping_command(info["node_id"], "--count", "30", "--interval", "100ms", "--timeout", "2s",
                             output_dir=str(tmp_path)),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        stop_process(responder)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["path"]["outcome"] == "relay_only"
    assert summary["path"]["punch_attempts"] > 0
    assert summary["probes"]["ok"] == summary["probes"]["sent"] == 30
    assert summary["path"]["probes_by_path_sent"] == {"relay": 30}


def wall(event: dict) -> float:
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def test_a_black_holed_direct_path_falls_back_to_the_relay_and_returns(lab: Lab, tmp_path: Path) -> None:
    responder, info = lab.start_responder()
    try:
        ping = subprocess.Popen(
            lab.ping_command(info["node_id"], "--count", "160", "--interval", "100ms", "--timeout", "2s",
                             output_dir=str(tmp_path)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2.5)
        blocked_at = time.time()
        lab.topology.block_direct("a")
        time.sleep(5.0)
        lab.topology.unblock_direct("a")
        unblocked_at = time.time()
        stdout, stderr = ping.communicate(timeout=90)
    finally:
        stop_process(responder)
    assert ping.returncode == 0, stderr
    summary = json.loads(stdout)
    assert accounted(summary["probes"]) and summary["probes"]["sent"] == 160
    events = read_archive(Path(summary["archive"]))
    changes = [(wall(event), event["from"], event["to"]) for event in events if event["ev"] == "path_change"]
    fallbacks = [at for at, old, new in changes if (old, new) == ("direct", "relay") and at >= blocked_at]
    returns = [at for at, old, new in changes if (old, new) == ("relay", "direct") and at >= unblocked_at]
    assert fallbacks and fallbacks[0] - blocked_at <= 5.0, changes
    assert returns, changes
    # Probes sent while the path was dying are late or lost, never missing from the archive.
    assert len([event for event in events if event["ev"] == "probe"]) == 160
    assert summary["path"]["time_on_path_s"]["relay"] > 1.0
