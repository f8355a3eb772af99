"""Does tom-stress tell the truth? Known impairments in the lab, against independent measures.

- delay: ICMP `ping` from each home to the public segment crosses the same delayed links, so
  the truth of the direct path is the sum of the two; tom-stress's direct-path RTT p50 is
  compared with it;
- loss: a known loss per link and direction gives a known round-trip loss, 1 - (1 - p)^4 for
  two links; datagram probes must find it inside their 99 % interval;
- outage: side a's link down for a known time must show as one outage of that length.
Used by tests/lab and by `python -m tomstress.benchmarks.labtruth`.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tomproto.durations import parse_duration
from tomstress.archive import read_archive
from tomstress.lab.netns import RELAY_IP
from tomstress.lab.session import Impairments, LabSession, dropped_packets, schedule_outages, start, stop
from tomstress.stats import wilson_interval

__all__ = ["icmp_rtts_ms", "ping_in_lab", "delay_truth", "loss_truth", "outage_truth"]

_ICMP_TIME = re.compile(r"time=([0-9.]+) ms")


def icmp_rtts_ms(session: LabSession, role: str, count: int = 50, interval_s: float = 0.05) -> list[float]:
    return _icmp_rtts(_start_icmp(session, role, count, interval_s), count * interval_s + 30)


def _start_icmp(session: LabSession, role: str, count: int, interval_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *session.topology.exec_prefix(role),
            "ping", "-n", "-c", str(count), "-i", f"{interval_s}", "-W", "2", RELAY_IP,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _icmp_rtts(process: subprocess.Popen[str], timeout_s: float) -> list[float]:
    try:
        stdout, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, _ = process.communicate()
    return [float(match) for match in _ICMP_TIME.findall(stdout)]


def ping_in_lab(session: LabSession, *arguments: str, timeout_s: float = 300) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as output_dir:
        result = subprocess.run(
            session.command(["ping", *arguments, "--json", "--no-live", "--output-dir", output_dir]),
            capture_output=True, text=True, timeout=timeout_s, env=session.environment(),
        )  # fmt: skip
        if not result.stdout.strip():
            raise RuntimeError(f"ping in the lab printed no summary: {result.stderr[-500:]}")
        summary: dict[str, Any] = json.loads(result.stdout)
        events = read_archive(Path(summary["archive"]))
    summary["events"] = events
    return summary


def delay_truth(delay_s: float = 0.010, count: int = 1000, interval: str = "10ms") -> dict[str, Any]:
    """tom-stress's direct-path RTT against ICMP echo from each home to the public segment, run
    at the same time (so that both find the machine, the delayers included, equally busy)."""
    session = start("home-home", Impairments(delay_s=delay_s))
    run_s = count * parse_duration(interval)
    try:
        icmp = [
            _start_icmp(session, role, count=max(50, int(run_s / 0.02)), interval_s=0.02)
            for role in ("home-a", "home-b")
        ]
        session.processes += icmp  # stopped with the lab if the ping fails
        summary = ping_in_lab(session, "--count", str(count), "--interval", interval, "--timeout", "2s")
        icmp_a, icmp_b = (_icmp_rtts(process, run_s + 30) for process in icmp)
    finally:
        stop(session)
    truth = statistics.median(icmp_a) + statistics.median(icmp_b)
    direct = summary["rtt_ms_by_path"].get("direct", {})
    network = summary["stack"]["network_rtt_ms_by_path"].get("direct", {})
    measured = direct.get("p50")
    tolerance = max(1.0, 0.02 * truth)
    return {
        "delay_each_way_ms": delay_s * 1000,
        "interval": interval,
        "icmp_p50_ms": {"home_a_to_pub": statistics.median(icmp_a), "home_b_to_pub": statistics.median(icmp_b)},
        "icmp_n": [len(icmp_a), len(icmp_b)],
        "truth_ms": round(truth, 3),
        "tom_stress_direct_p50_ms": measured,
        "direct_n": direct.get("n"),
        "difference_ms": None if measured is None else round(measured - truth, 3),
        "tolerance_ms": round(tolerance, 3),
        "within_tolerance": measured is not None and abs(measured - truth) <= tolerance,
        "stack_p50_ms": {key: summary["stack"][key] for key in ("send_p50_ms", "receive_p50_ms", "responder_p50_ms")},
        "network_direct_p50_ms": network.get("p50"),
        "network_difference_ms": None if network.get("p50") is None else round(network["p50"] - truth, 3),
        "path": summary["path"],
        "probes": summary["probes"],
    }


def loss_truth(loss: float = 0.02, count: int = 3000, interval: str = "10ms") -> dict[str, Any]:
    session = start("home-home", Impairments(loss=loss))
    try:
        summary = ping_in_lab(session, "--datagram", "--count", str(count), "--interval", interval, "--timeout", "1s")
        dropped = dropped_packets(session)
    finally:
        stop(session)
    probes = summary["probes"]
    failed = probes["lost"] + probes["late"] + probes["send_error"]
    low, high = wilson_interval(failed, probes["sent"], 0.99)
    expected = 1 - (1 - loss) ** 4
    return {
        "loss_per_link_and_direction": loss,
        "expected_round_trip_loss": round(expected, 5),
        "sent": probes["sent"],
        "not_answered": failed,
        # Each unanswered probe lost exactly one packet (a lost request has no reply); probes
        # still sent through the relay at the start are not in this count.
        "probe_packets_dropped_on_direct_path": dropped["direct_large"],
        "packets_dropped": dropped["all"],
        "measured_loss": round(failed / probes["sent"], 5),
        "interval_99": [round(low, 5), round(high, 5)],
        "interval_width_pp": round((high - low) * 100, 3),
        "contains_expected": low <= expected <= high,
        "interval_99_9": [round(bound, 5) for bound in wilson_interval(failed, probes["sent"], 0.999)],
        "stayed_direct": summary["path"]["path_changes"] == 1 and summary["path"]["outcome"] == "direct",
        "path": summary["path"],
        "quic_packets": summary["quic"],
    }


def outage_truth(
    duration_s: float = 5.0, at_s: float = 4.0, count: int = 150, interval: str = "100ms"
) -> dict[str, Any]:
    import time

    session = start("home-home", Impairments(outages=((at_s, duration_s),)))
    try:
        started = time.monotonic()
        session.processes += schedule_outages(session, started)
        summary = ping_in_lab(session, "--datagram", "--count", str(count), "--interval", interval, "--timeout", "1s")
    finally:
        stop(session)
    availability = summary["availability"]
    return {
        "outage_s": duration_s,
        "outages": availability["outages"],
        "outage_count": availability["outage_count"],
        "longest_outage_s": availability["longest_outage_s"],
        "within_one_second": (
            availability["outage_count"] == 1 and abs(availability["longest_outage_s"] - duration_s) <= 1.0
        ),
        "recovered": bool(availability["outages"]) and all(outage["recovered"] for outage in availability["outages"]),
        "path": summary["path"],
        "probes": summary["probes"],
    }
