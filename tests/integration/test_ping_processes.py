"""`tom-stress ping` against a `tom-stress responder` in another process, over loopback."""

from __future__ import annotations

import io
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from tests.integration.processes import finish, start_ping, start_relay, start_responder, udp_echo_min_rtt_ms
from tomproto.identity import Identity
from tomproto.transport import MAX_DATAGRAM_BYTES
from tomstress.archive import read_archive, validate_archive
from tomstress.render import print_brief_summary, print_summary


@pytest.fixture
def responder():
    process = start_responder()
    yield process
    process.kill()


def wait_for_ok_probes(directory: Path, count: int, timeout_s: float = 30.0) -> None:
    """Until the run's archive holds `count` answered probes (it is written as the run goes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answered = sum(
            line.count('"ev":"probe"') and line.count('"outcome":"ok"')
            for archive in directory.glob("*.jsonl") for line in archive.read_text().splitlines()
        )  # fmt: skip
        if answered >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} answered probes after {timeout_s:.0f} s")


def probe_events(archive: str) -> list[dict]:
    return [event for event in read_archive(Path(archive)) if event["ev"] == "probe"]


def test_100_probes_all_ok_and_no_rtt_beats_a_plain_udp_echo(responder, tmp_path: Path) -> None:
    ping = start_ping(
        "--connect", responder.node_id, "--target-addr", responder.address,
        "--count", "100", "--interval", "20ms", "--timeout", "5s",
        output_dir=tmp_path,
    )  # fmt: skip
    code, summary, stderr = finish(ping)
    assert code == 0, stderr
    assert summary is not None
    assert summary["probes"]["sent"] == summary["probes"]["ok"] == 100
    assert summary["rtt_ms"]["n"] == 100
    floor_ms = udp_echo_min_rtt_ms(summary["size"]["wire_bytes"])
    validate_archive(Path(summary["archive"]))
    probes = probe_events(summary["archive"])
    assert sorted(event["seq"] for event in probes) == list(range(100))
    for event in probes:
        assert event["outcome"] == "ok"
        assert floor_ms <= event["rtt_ms"] < 5000, event
        assert event["path_sent"] == event["path_received"] == "direct", event  # known even for fast replies
    assert summary["rtt_ms"]["min"] >= floor_ms
    # Each reply follows up the responder's whole hold of the one before (PTP-style two-step),
    # which leaves the network's part of the RTT: what is left when both stacks are taken out.
    holds = [event for event in read_archive(Path(summary["archive"])) if event["ev"] == "responder_hold"]
    assert {event["seq"] for event in holds} >= set(range(99))
    network = summary["stack"]["network_rtt_ms"]
    assert network["n"] >= 99
    assert 0 < network["p50"] < summary["rtt_ms"]["p50"]


@pytest.mark.parametrize(
    ("criterion", "expected_code", "message"),
    [
        ((), 0, None),  # the peer was reached, and no loss criterion was given
        (("--max-loss", "5"), 1, "error: probe loss "),  # ... and the run says why it exits 1
    ],
)
def test_a_responder_killed_mid_run_turns_probes_into_lost_and_the_summary_still_comes(
    responder, tmp_path: Path, criterion: tuple[str, ...], expected_code: int, message: str | None
) -> None:
    ping = start_ping(
        "--connect", responder.node_id, "--target-addr", responder.address,
        "--count", "40", "--interval", "100ms", "--timeout", "1s", *criterion,
        output_dir=tmp_path,
    )  # fmt: skip
    wait_for_ok_probes(tmp_path, 5)  # not a fixed sleep: a loaded machine starts Python slowly
    responder.kill()
    code, summary, stderr = finish(ping)
    assert code == expected_code, stderr
    if message is not None:
        assert message in stderr and "is over --max-loss 5 %" in stderr, stderr
    else:
        assert "--max-loss" not in stderr
    assert summary is not None
    probes = summary["probes"]
    assert probes["sent"] == 40 == probes["ok"] + probes["late"] + probes["lost"] + probes["send_error"]
    assert probes["ok"] >= 5
    assert probes["lost"] + probes["send_error"] >= 15
    assert summary["availability"]["outage_count"] >= 1
    validate_archive(Path(summary["archive"]))
    assert len(probe_events(summary["archive"])) == 40


def test_a_restarted_responder_with_the_same_identity_is_reached_again_within_5_s(tmp_path: Path) -> None:
    identity = tmp_path / "responder.key"
    first = start_responder(identity=identity)
    port = first.port
    ping = start_ping(
        "--connect", first.node_id, "--target-addr", first.address,
        "--count", "80", "--interval", "100ms", "--timeout", "2s",
        output_dir=tmp_path,
    )  # fmt: skip
    second = None
    try:
        time.sleep(2.0)
        first.kill()
        time.sleep(1.0)
        second = start_responder(port=port, identity=identity)
        restarted_wall = time.time()
        code, summary, stderr = finish(ping)
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert code == 0, stderr
    assert summary is not None

    def wall(event: dict) -> float:
        return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()

    answered_after = [
        wall(e) for e in probe_events(summary["archive"]) if e["outcome"] == "ok" and wall(e) > restarted_wall
    ]
    assert answered_after, "no probe was answered after the restart"
    assert min(answered_after) - restarted_wall <= 5.0
    assert summary["probes"]["sent"] == 80


def test_dialling_a_node_id_that_the_listener_does_not_hold_fails_clearly(responder, tmp_path: Path) -> None:
    stranger = Identity.generate().node_id.hex
    ping = start_ping(
        "--connect", stranger, "--target-addr", responder.address, "--count", "3", "--timeout", "2s",
        output_dir=tmp_path,
    )  # fmt: skip
    code, summary, stderr = finish(ping)
    assert code == 3
    assert "not the NodeId dialled" in stderr
    assert responder.node_id in stderr and stranger in stderr
    assert summary is not None and summary["reached"] is False
    validate_archive(Path(summary["archive"]))


def test_local_ping_with_datagram_probes(tmp_path: Path) -> None:
    ping = start_ping(
        "--local", "--datagram", "--count", "30", "--interval", "20ms", "--timeout", "2s", output_dir=tmp_path
    )
    code, summary, stderr = finish(ping)
    assert code == 0, stderr
    assert summary is not None and summary["transport"] == "datagram"
    assert summary["probes"]["ok"] + summary["probes"]["lost"] == 30
    assert summary["probes"]["ok"] >= 25  # loopback rarely drops a datagram
    assert summary["quic"]["packets_sent"] > 0
    assert summary["size"]["wire_bytes"] <= 1168


def test_datagram_probes_of_the_largest_accepted_size_all_come_back(tmp_path: Path) -> None:
    # Envelope sizes vary from seal to seal: near the limit some seals do not fit a datagram, and
    # are sealed again rather than queued (a queued one would block every datagram after it).
    refused = start_ping("--local", "--datagram", "--count", "1", "--size", "2000", output_dir=tmp_path)
    code, _, stderr = finish(refused)
    assert code == 2
    largest = re.search(r"use --size (\d+) or less", stderr)
    assert largest is not None, stderr
    ping = start_ping(
        "--local", "--datagram", "--size", largest.group(1), "--count", "300", "--interval", "5ms", "--timeout", "2s",
        output_dir=tmp_path,
    )  # fmt: skip
    code, summary, stderr = finish(ping)
    assert code == 0, stderr
    assert summary is not None
    assert summary["probes"]["sent"] == 300
    assert summary["probes"]["send_error"] == 0
    assert summary["probes"]["ok"] >= 290  # loopback rarely drops a datagram; a blocked queue loses all after it
    assert max(event["wire_size"] for event in probe_events(summary["archive"])) <= MAX_DATAGRAM_BYTES


@pytest.mark.parametrize(("signum", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_an_interrupted_continuous_run_still_writes_its_summary(
    tmp_path: Path, signum: int, code: int, name: str
) -> None:
    ping = start_ping("--local", "--continuous", "--interval", "50ms", "--timeout", "1s", output_dir=tmp_path)
    wait_for_ok_probes(tmp_path, 5)
    ping.send_signal(signum)
    returncode, summary, stderr = finish(ping)
    assert returncode == code, stderr
    assert summary is not None and summary["interrupted"] is True
    probes = summary["probes"]
    assert probes["ok"] >= 5
    assert probes["sent"] == probes["ok"] + probes["late"] + probes["lost"] + probes["send_error"]
    events = read_archive(Path(summary["archive"]))
    assert [event["ev"] for event in events][-2:] == ["interrupted", "summary"]
    assert events[-2]["signal"] == name
    validate_archive(Path(summary["archive"]))


def test_an_ipv6_responder_is_pinged_at_its_bracketed_address(tmp_path: Path) -> None:
    responder = start_responder(host="::1")
    try:
        ping = start_ping(
            "--connect", responder.node_id, "--target-addr", responder.address, "-c", "10", "-i", "20ms",
            output_dir=tmp_path,
        )  # fmt: skip
        code, summary, stderr = finish(ping)
    finally:
        responder.kill()
    assert code == 0, stderr
    assert summary is not None and summary["probes"]["ok"] == 10
    assert summary["target_addr"] == f"[::1]:{responder.port}" == responder.address


def test_a_relay_named_by_host_name_is_reached_and_named_in_the_summary(tmp_path: Path) -> None:
    relay, port = start_relay()
    responder = None
    try:
        # Packets come back from an IP: a relay given by name must be looked up once, at the start.
        responder = start_responder(0, None, "--relay", f"localhost:{port}")
        ping = start_ping(
            "--connect", responder.node_id, "--relay", f"localhost:{port}", "--relay-only", "-c", "5", "-i", "50ms",
            output_dir=tmp_path,
        )  # fmt: skip
        code, summary, stderr = finish(ping)
    finally:
        if responder is not None:
            responder.kill()
        relay.kill()
        relay.wait(timeout=10)
    assert code == 0, stderr
    assert summary is not None and summary["probes"]["ok"] == 5
    assert summary["relay"] == f"127.0.0.1:{port}" and summary["path"]["outcome"] == "relay_only"
    # The printed summaries name the relay (once they said "at None") and the path.
    for render in (print_summary, print_brief_summary):
        printed = io.StringIO()
        render(summary, Console(file=printed, width=200))
        assert f"via relay 127.0.0.1:{port}" in printed.getvalue() and "path: relay_only" in printed.getvalue()
