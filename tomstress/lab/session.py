"""A running lab: a topology, its impairments, a relay in the public segment and a responder
behind side b; commands run behind side a (`tom-stress lab run`, `lab up`/`lab down`)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tomstress.lab.netns import RELAY_IP, RELAY_IP_2, LabError, Topology, build, run, teardown
from tomstress.local import own_command

__all__ = ["Impairments", "LabSession", "start", "stop", "start_responder", "relay_stats", "schedule_outages",
           "dropped_packets", "STATE_DIR", "RELAYS"]  # fmt: skip

RELAYS = [f"{RELAY_IP}:7478", f"{RELAY_IP}:7479", f"{RELAY_IP_2}:7478"]
STATE_DIR = Path("/run/tom-stress-lab")
READY_TIMEOUT_S = 30
# Random loss jumps to LOSS_CHAIN, whose first rule counts the large packets of the direct path
# (see dropped_packets) before both rules drop.
LOSS_CHAIN = "TOM_LOSS"
LARGE_PACKET_BYTES = 400
RELAY_NET = "203.0.113.0/30"  # RELAY_IP and RELAY_IP_2
_LOSS_HOOKS = (("raw", "PREROUTING", "-i", "-s"), ("mangle", "POSTROUTING", "-o", "-d"))  # arriving, leaving


@dataclass(frozen=True)
class Impairments:
    """Applied to every side's public-facing link, in each direction."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0  # probability per packet and direction
    rate: str | None = None  # tc rate, e.g. "10mbit"
    outages: tuple[tuple[float, float], ...] = ()  # (at_s, duration_s) on side a's link

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LabSession:
    topology: Topology
    impairments: Impairments
    responder_id: str = ""
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    relay_index: int = 0

    def links(self) -> list[tuple[str, str]]:
        """(namespace role, interface) of each side's link to the public segment."""
        return [(self.topology.edge(side) or f"home-{side}", "wan") for side in ("a", "b")]

    def describe(self) -> dict[str, Any]:
        return {"topology": self.topology.name, "impairments": self.impairments.describe(), "relays": RELAYS,
                "responder": self.responder_id, "namespaces": list(self.topology.namespaces)}  # fmt: skip

    def command(self, arguments: list[str]) -> list[str]:
        """A tom-stress command to run behind side a, completed with the lab's peer and relay."""
        arguments = list(arguments)
        if arguments[:1] == ["ping"] and "--connect" not in arguments and "--local" not in arguments:
            arguments += ["--connect", self.responder_id, "--relay", RELAYS[0]]
        if arguments[:1] == ["nat-report"] and "--relay" not in arguments:
            for relay in RELAYS:
                arguments += ["--relay", relay]
        return [*self.topology.exec_prefix("home-a"), *own_command(), *arguments]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "TOM_LAB": json.dumps(self.describe())}


def dropped_packets(session: LabSession) -> dict[str, int]:
    """What the loss rules have dropped so far, in all and `direct_large`: packets of at least
    LARGE_PACKET_BYTES that did not come from or go to a relay. On the direct path only probes
    and their replies are that long (acks, keep-alives and punches stay under 200 bytes, and
    handshakes go through the relay), so this counts the probe packets the lab dropped there."""
    dropped = {"all": 0, "direct_large": 0}
    if session.impairments.loss <= 0:
        return dropped
    for role, _ in session.links():
        for table, *_ in _LOSS_HOOKS:
            listing = run(
                *session.topology.exec_prefix(role), "iptables", "-t", table, "-L", LOSS_CHAIN, "-v", "-x", "-n"
            )
            packets = [int(line.split()[0]) for line in listing.splitlines()[2:] if line.strip()]
            dropped["direct_large"] += packets[0]
            dropped["all"] += sum(packets)
    return dropped


def _read_json_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None  # noqa: S101
    ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT_S)
    if not ready:
        raise LabError("a lab process did not start in time")
    line: dict[str, Any] = json.loads(process.stdout.readline())
    return line


def _apply(session: LabSession) -> None:
    impairments = session.impairments
    for role, interface in session.links():
        prefix = session.topology.exec_prefix(role)
        if impairments.loss > 0:
            statistic = ["-m", "statistic", "--mode", "random", "--probability", f"{impairments.loss:.6f}"]
            for table, hook, direction, far_end in _LOSS_HOOKS:
                iptables = [*prefix, "iptables", "-t", table]
                run(*iptables, "-N", LOSS_CHAIN)
                run(*iptables, "-A", LOSS_CHAIN, "-m", "length", "--length", f"{LARGE_PACKET_BYTES}:65535",
                    "!", far_end, RELAY_NET, "-j", "DROP")  # fmt: skip
                run(*iptables, "-A", LOSS_CHAIN, "-j", "DROP")
                run(*iptables, "-A", hook, direction, interface, *statistic, "-j", LOSS_CHAIN)
        if impairments.rate:  # egress on both ends of the link: both directions are limited
            side = "a" if role.endswith("-a") else "b"
            for where, device in ((prefix, interface), (session.topology.exec_prefix("pub"), f"to-{side}")):
                run(*where, "tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", impairments.rate,
                    "burst", "32kbit", "latency", "400ms")  # fmt: skip
    if impairments.delay_s > 0 or impairments.jitter_s > 0:
        from tomstress.lab.delayer import start_delayers  # needs NetfilterQueue: only when asked

        session.processes += start_delayers(session)


def start_responder(session: LabSession) -> subprocess.Popen[str]:
    """A (new) responder behind side b, registered with the relay; its NodeId goes in the session."""
    responder = subprocess.Popen(
        [*session.topology.exec_prefix("home-b"), *own_command(), "responder", "--listen", "0.0.0.0:7400",
         "--relay", RELAYS[0], "--quiet"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    session.processes.append(responder)
    session.responder_id = _read_json_line(responder)["node_id"]
    return responder


def relay_stats(session: LabSession) -> dict[str, Any]:
    """The relay's counters (it prints them on SIGUSR1)."""
    relay = session.processes[session.relay_index]
    relay.send_signal(signal.SIGUSR1)
    while True:
        line = _read_json_line(relay)
        if line.get("event") == "stats":
            return line


def start(topology_name: str, impairments: Impairments, prefix: str | None = None) -> LabSession:
    topology = build(topology_name, prefix)
    session = LabSession(topology, impairments)
    try:
        _apply(session)
        relay = subprocess.Popen(
            [*topology.exec_prefix("pub"), *own_command(), "relay", *[arg for r in RELAYS for arg in ("--listen", r)],
             "--stats-interval", "1h"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        session.relay_index = len(session.processes)
        session.processes.append(relay)
        _read_json_line(relay)
        start_responder(session)
    except BaseException:
        stop(session)
        raise
    return session


def schedule_outages(session: LabSession, started_at: float) -> list[subprocess.Popen[str]]:
    """Take side a's public link down at each outage's time, for its duration (a tunnel)."""
    role, interface = session.links()[0]
    namespace = session.topology.ns(role)
    steps, clock = [], time.monotonic() - started_at
    for at, duration in sorted(session.impairments.outages):
        steps.append(f"sleep {max(0.0, at - clock):.3f}; ip -n {namespace} link set {interface} down; "
                     f"sleep {duration:.3f}; ip -n {namespace} link set {interface} up")  # fmt: skip
        clock = max(clock, at) + duration
    if not steps:
        return []
    return [subprocess.Popen(["sh", "-c", "; ".join(steps)], text=True)]


def stop(session: LabSession) -> None:
    for process in reversed(session.processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    teardown(session.topology)
