"""`tom-stress lab`: each topology through the command itself, and the truth checks (delay, loss,
outage) against independent measures (tomstress.lab.truth)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.needs import NETFILTERQUEUE
from tomstress.archive import read_archive
from tomstress.lab.session import Impairments, start, stop
from tomstress.lab.truth import delay_truth, icmp_rtts_ms, loss_truth, outage_truth, ping_in_lab
from tomstress.natreport import ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT, NO_NAT

TOM_STRESS = [sys.executable, "-m", "tomstress"]


def lab_run(topology: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOM_STRESS, "lab", "run", topology, "--", *arguments], capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize(
    ("topology", "verdict", "outcome"),
    [
        ("lan", NO_NAT, "direct"),
        ("home-home", ENDPOINT_INDEPENDENT, "direct"),
        ("cgnat", ENDPOINT_INDEPENDENT, "direct"),
        ("symmetric", ADDRESS_AND_PORT_DEPENDENT, "relay_only"),
    ],
)
def test_each_topology_pings_through_the_lab_and_nat_report_names_its_nat(
    topology: str, verdict: str, outcome: str, tmp_path
) -> None:
    report = lab_run(topology, "nat-report", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["verdict"] == verdict
    ping = lab_run(
        topology, "ping", "--count", "10", "--interval", "100ms", "--json", "--no-live", "--output-dir", str(tmp_path)
    )
    assert ping.returncode == 0, ping.stderr
    summary = json.loads(ping.stdout)
    assert summary["probes"]["ok"] == 10
    assert summary["path"]["outcome"] == outcome
    first_event = read_archive(Path(summary["archive"]))[0]
    assert first_event["config"]["lab"]["topology"] == topology  # the lab is in the archive


@pytest.mark.needs(NETFILTERQUEUE)
def test_the_delayer_adds_exactly_the_asked_delay() -> None:
    session = start("home-home", Impairments(delay_s=0.010))
    try:
        rtts = icmp_rtts_ms(session, "home-a", count=30, interval_s=0.05)
    finally:
        stop(session)
    assert len(rtts) == 30
    assert abs(statistics.median(rtts) - 20.0) <= 1.0  # 10 ms each way through the delayer


@pytest.mark.needs(NETFILTERQUEUE)
def test_ten_ms_each_way_is_found_by_ping_and_its_excess_is_our_own_measured_stack() -> None:
    # 100 probes/s. Every probe is now a routed message the runtime acknowledges, about twice the
    # packets and CPU per probe of a bare transport ping; at 200/s on two cores shared with the
    # lab's userspace delayers, QUIC's pacer and stream limit turned that load into queueing
    # (RTT p50 0.2-0.8 s on a 41 ms path): the stack's cost at that rate is issue 15's business,
    # and this test is about the network's part, which must match the truth at a rate the
    # machine sustains.
    result = delay_truth(delay_s=0.010, count=1000, interval="10ms")
    assert result["probes"]["ok"] == 1000 and result["direct_n"] >= 950
    truth, tolerance = result["truth_ms"], result["tolerance_ms"]
    # What the network took (the RTT less the time both stacks held each probe) is the truth.
    assert abs(result["network_direct_p50_ms"] - truth) <= tolerance, result
    # The application RTT never beats the network, and exceeds it by our stack's measured time.
    stack_ms = sum(result["stack_p50_ms"].values())
    assert -tolerance <= result["difference_ms"] <= stack_ms + tolerance, result


def test_two_percent_loss_per_link_direction_is_found_by_datagram_probes() -> None:
    result = loss_truth(loss=0.02, count=2500)
    assert result["sent"] == 2500
    # The exact check: every probe packet the lab dropped is an unanswered probe, and nothing
    # else is (bar the few probes sent through the relay before the path went direct).
    assert 0 <= result["not_answered"] - result["probe_packets_dropped_on_direct_path"] <= 2, result
    assert result["interval_width_pp"] < 3.0
    # The expected 1 - 0.98^4 = 7.76 %: inside the 99 % interval in 99 runs of 100 (the closing
    # figures, `python -m tomstress.benchmarks.labtruth`); the test asks the 99.9 % one, so that
    # chance alone fails it once in a thousand runs, not once in a hundred.
    low, high = result["interval_99_9"]
    assert low <= result["expected_round_trip_loss"] <= high, result


def test_a_five_second_outage_is_one_outage_of_five_seconds_and_the_path_recovers() -> None:
    result = outage_truth(duration_s=5.0, at_s=4.0, count=150)
    assert result["within_one_second"], result["outages"]
    assert result["recovered"]
    assert result["probes"]["sent"] == 150


def test_ping_in_lab_records_the_impairments() -> None:
    session = start("home-home", Impairments(loss=0.01))
    try:
        summary = ping_in_lab(session, "--count", "5", "--interval", "50ms")
    finally:
        stop(session)
    start_event = summary["events"][0]
    assert start_event["config"]["lab"]["impairments"]["loss"] == 0.01
