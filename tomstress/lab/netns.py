"""Two homes behind NATs and a public segment, in network namespaces (spec/lab-and-packaging.md).

    pub    bridge br0, 203.0.113.1/24: the relay lives here
    nat-a  wan 203.0.113.10/24 on br0, lan 192.0.2.1/24   -> home-a 192.0.2.2/24
    nat-b  wan 203.0.113.20/24 on br0, lan 192.0.2.1/24   -> home-b 192.0.2.2/24

Both homes use the same private range, like two real homes. A NAT is port-preserving
MASQUERADE (endpoint-independent mapping: punching works) or `--random-fully` (symmetric:
punching fails). Each NAT drops unsolicited inbound packets in INPUT and FORWARD, as a home
router does; without the INPUT rule an early punch creates a conntrack entry and MASQUERADE picks
another port. Every command is bounded in time; `teardown` removes everything, also after a
failure. Documentation address ranges only; nothing leaves the namespaces.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

__all__ = ["Topology", "build_home_home", "teardown", "PORT_PRESERVING", "SYMMETRIC", "RELAY_IP", "LabError"]

PORT_PRESERVING = "port_preserving"
SYMMETRIC = "symmetric"
RELAY_IP = "203.0.113.1"
WAN_IPS = {"a": "203.0.113.10", "b": "203.0.113.20"}
COMMAND_TIMEOUT_S = 20


class LabError(RuntimeError):
    """A lab command failed (missing privileges or tools, or a kernel without the feature)."""


def run(*command: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LabError(f"{' '.join(command)}: {error}") from None
    if result.returncode != 0:
        raise LabError(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


@dataclass
class Topology:
    prefix: str
    nat_kinds: dict[str, str]
    namespaces: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def exec_prefix(self, role: str) -> list[str]:
        """Prepend to a command to run it inside the namespace of `role`."""
        return ["ip", "netns", "exec", self.ns(role)]

    def wan_ip(self, side: str) -> str:
        return WAN_IPS[side]

    def iptables(self, side: str, *rule: str) -> None:
        run(*self.exec_prefix(f"nat-{side}"), "iptables", *rule)

    def block_direct(self, side: str) -> None:
        """Black-hole everything between this NAT and the other NAT (the relay stays reachable)."""
        other = WAN_IPS["b" if side == "a" else "a"]
        for rule in (("FORWARD", "-s", other), ("FORWARD", "-d", other), ("INPUT", "-s", other)):
            self.iptables(side, "-I", rule[0], rule[1], rule[2], "-j", "DROP")

    def unblock_direct(self, side: str) -> None:
        other = WAN_IPS["b" if side == "a" else "a"]
        for rule in (("FORWARD", "-s", other), ("FORWARD", "-d", other), ("INPUT", "-s", other)):
            self.iptables(side, "-D", rule[0], rule[1], rule[2], "-j", "DROP")

    def flush_conntrack(self) -> None:
        for side in ("a", "b"):
            subprocess.run(
                [*self.exec_prefix(f"nat-{side}"), "conntrack", "-F"],
                capture_output=True,
                timeout=COMMAND_TIMEOUT_S,
            )


def _namespace(topology: Topology, role: str) -> str:
    name = topology.ns(role)
    run("ip", "netns", "add", name)
    topology.namespaces.append(name)
    run("ip", "-n", name, "link", "set", "lo", "up")
    return name


def build_home_home(nat_a: str = PORT_PRESERVING, nat_b: str = PORT_PRESERVING, prefix: str | None = None) -> Topology:
    topology = Topology(prefix or f"ts{os.getpid()}", {"a": nat_a, "b": nat_b})
    try:
        pub = _namespace(topology, "pub")
        run("ip", "-n", pub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", pub, "addr", "add", f"{RELAY_IP}/24", "dev", "br0")
        run("ip", "-n", pub, "link", "set", "br0", "up")
        for side in ("a", "b"):
            nat, home = _namespace(topology, f"nat-{side}"), _namespace(topology, f"home-{side}")
            run("ip", "link", "add", "wan", "netns", nat, "type", "veth", "peer", "name", f"to-{side}", "netns", pub)
            run("ip", "-n", pub, "link", "set", f"to-{side}", "master", "br0", "up")
            run("ip", "-n", nat, "addr", "add", f"{WAN_IPS[side]}/24", "dev", "wan")
            run("ip", "-n", nat, "link", "set", "wan", "up")
            run("ip", "link", "add", "lan", "netns", nat, "type", "veth", "peer", "name", "eth0", "netns", home)
            run("ip", "-n", nat, "addr", "add", "192.0.2.1/24", "dev", "lan")
            run("ip", "-n", nat, "link", "set", "lan", "up")
            run("ip", "-n", home, "addr", "add", "192.0.2.2/24", "dev", "eth0")
            run("ip", "-n", home, "link", "set", "eth0", "up")
            run("ip", "-n", home, "route", "add", "default", "via", "192.0.2.1")
            run("ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
            if topology.nat_kinds[side] == SYMMETRIC:
                masquerade.append("--random-fully")
            topology.iptables(side, *masquerade)
            unsolicited = ["-m", "conntrack", "!", "--ctstate", "ESTABLISHED,RELATED", "-j", "DROP"]
            topology.iptables(side, "-A", "INPUT", "-i", "wan", *unsolicited)
            topology.iptables(side, "-A", "FORWARD", "-i", "wan", *unsolicited)
    except BaseException:
        teardown(topology)
        raise
    return topology


def teardown(topology: Topology) -> None:
    """Delete the namespaces (their interfaces, rules and processes' sockets go with them)."""
    for name in reversed(topology.namespaces):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT_S)
    topology.namespaces.clear()
