"""Floods of forged packets, in real processes over loopback: the flood comes from 127.0.0.2
(tomstress.benchmarks.flooder, its own process), the users from 127.0.0.1.

What users care about: a running ping loses nothing, a new user gets in during the flood, and
the target's memory stays put. The counters the target prints at the end show that the flood
really went through admission (Retries, refused tokens, budgets), not around it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.processes import START_TIMEOUT_S, finish, start_ping, start_relay, start_responder
from tomstress.benchmarks.children import read_json_line, wait_or_kill

FLOOD_RATE_PER_S = 2500
FLOOD_S = 4.0
MIN_FLOOD_RATE_PER_S = 2000
MIN_FLOOD_S = 3.0
MAX_RSS_GROWTH_KIB = 50 * 1024
STOP_GRACE_S = 10.0
pytestmark = pytest.mark.slow


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def start_flooder(target: str, kind: str) -> subprocess.Popen[str]:
    flooder = subprocess.Popen(
        [sys.executable, "-m", "tomstress.benchmarks.flooder", "--target", target, "--kind", kind,
         "--rate", str(FLOOD_RATE_PER_S), "--duration", str(FLOOD_S), "--source", "127.0.0.2"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    read_json_line(flooder, "ready", START_TIMEOUT_S)  # built: the flood starts now
    return flooder


def flood_report(flooder: subprocess.Popen[str]) -> dict[str, Any]:
    report = read_json_line(flooder, "done", START_TIMEOUT_S)
    wait_or_kill(flooder, STOP_GRACE_S)
    assert report["elapsed_s"] >= MIN_FLOOD_S and report["rate_per_s"] >= MIN_FLOOD_RATE_PER_S, report
    return report


def stop(process: subprocess.Popen[str], event: str) -> dict[str, Any]:
    process.send_signal(signal.SIGTERM)
    try:
        return read_json_line(process, event, STOP_GRACE_S)
    finally:
        wait_or_kill(process, STOP_GRACE_S)


def assert_every_probe_ok(ping: subprocess.Popen[str], count: int) -> dict[str, Any]:
    code, summary, stderr = finish(ping)
    assert code == 0, stderr
    assert summary is not None and summary["reached"] is True, stderr
    assert summary["probes"]["sent"] == summary["probes"]["ok"] == count, summary["probes"]
    return summary


def test_a_responder_flooded_with_forged_initials_keeps_its_users_and_its_memory(tmp_path: Path) -> None:
    responder = start_responder()
    try:
        running = start_ping(
            "--connect", responder.node_id, "--target-addr", responder.address,
            "--count", "140", "--interval", "50ms", "--timeout", "5s", "--name", "running",
            output_dir=tmp_path,
        )  # fmt: skip
        before = memory_kib(responder.process.pid)
        flooder = start_flooder(responder.address, "quic")
        time.sleep(1.0)  # well into the flood
        newcomer = start_ping(
            "--connect", responder.node_id, "--target-addr", responder.address,
            "--count", "10", "--interval", "100ms", "--timeout", "5s", "--name", "newcomer",
            output_dir=tmp_path,
        )  # fmt: skip
        report = flood_report(flooder)
        assert_every_probe_ok(newcomer, 10)
        assert_every_probe_ok(running, 140)
        after = memory_kib(responder.process.pid)
        assert after["VmHWM"] - before["VmRSS"] < MAX_RSS_GROWTH_KIB, (before, after)
        admission = stop(responder.process, "stopped")["admission"]
    finally:
        responder.kill()
    assert report["by_kind"]["token"] > 0 and admission["tokens_refused"] > 0
    assert admission["retries_sent"] > 0
    # Forged Initials from one host hold a few handshakes at most; the rest got Retries or nothing.
    accepted = admission["decisions"].get("accepted_unvalidated", 0)
    assert accepted < report["sent"] / 100, admission
    assert admission["refused_per_source"].get("127.0.0.2", 0) > 0


def test_a_ping_works_when_the_responder_demands_a_retry_for_every_connection(tmp_path: Path) -> None:
    responder = start_responder(0, None, "--address-validation", "always")
    try:
        ping = start_ping(
            "--connect", responder.node_id, "--target-addr", responder.address,
            "--count", "20", "--interval", "20ms", "--timeout", "5s",
            output_dir=tmp_path,
        )  # fmt: skip
        assert_every_probe_ok(ping, 20)
        admission = stop(responder.process, "stopped")["admission"]
    finally:
        responder.kill()
    assert admission["decisions"] == {"retry_always": 1, "accepted_validated": 1}
    assert admission["retries_sent"] == 1


def test_a_relay_flooded_with_registrations_keeps_relaying_and_registers_newcomers(tmp_path: Path) -> None:
    relay, relay_port = start_relay()
    relay_address = f"127.0.0.1:{relay_port}"
    responder = None
    try:
        responder = start_responder(0, None, "--relay", relay_address)
        # --relay-only: on loopback a punch would succeed at once and take the ping off the relay.
        running = start_ping(
            "--connect", responder.node_id, "--relay", relay_address, "--relay-only",
            "--count", "140", "--interval", "50ms", "--timeout", "5s", "--name", "running",
            output_dir=tmp_path,
        )  # fmt: skip
        before = memory_kib(relay.pid)
        flooder = start_flooder(relay_address, "relay")
        time.sleep(1.0)
        newcomer = start_ping(  # registers with the relay during the flood, then pings through it
            "--connect", responder.node_id, "--relay", relay_address, "--relay-only",
            "--count", "10", "--interval", "100ms", "--timeout", "5s", "--name", "newcomer",
            output_dir=tmp_path,
        )  # fmt: skip
        report = flood_report(flooder)
        for ping, count in ((newcomer, 10), (running, 140)):
            summary = assert_every_probe_ok(ping, count)
            assert summary["path"]["outcome"] == "relay_only", summary["path"]
        after = memory_kib(relay.pid)
        assert after["VmHWM"] - before["VmRSS"] < MAX_RSS_GROWTH_KIB, (before, after)
        events = stop(relay, "stopped")["events"]
    finally:
        if responder is not None:
            responder.kill()
        if relay.poll() is None:
            relay.kill()
            wait_or_kill(relay, STOP_GRACE_S)
    assert events["challenges"] > 0 and events["hello_unpadded"] > 0
    assert events["refused_unknown_challenge"] > 0  # made-up challenges: one HMAC each
    # The flooder answered its challenges with bad signatures; few were ever checked.
    assert report["answered_challenges"] > 0
    assert events.get("refused_verification_budget", 0) > 0
    assert events.get("refused_bad_signature", 0) <= 20 + 10 * (FLOOD_S + 1), events
    assert events["registered"] >= 3  # the responder, the running ping and the newcomer
