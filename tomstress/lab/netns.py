"""Field networks in network namespaces (spec/lab-and-packaging.md).

    pub      bridge br0 203.0.113.1/24 and .2/24: the relay lives here (two IPs, for nat-report)
    nat-X    wan 203.0.113.1X/24 on br0, lan 192.0.2.1/24   -> home-X 192.0.2.2/24
    (cgnat)  side a: home-a -> nat-a (lan 192.0.2.1, wan 100.64.0.2/24) -> cgn-a (100.64.0.1,
             wan 203.0.113.10) -> pub: two NAT layers, like a 4G carrier's
    (lan)    no NAT: home-a 203.0.113.10 and home-b 203.0.113.20 sit on br0 themselves

Topologies: `lan`, `home-home` (port-preserving NATs both sides), `cgnat` (two layers on side a),
`symmetric` (side a `--random-fully`), `symmetric-both`. Both homes use the same private range,
like two real homes. Each NAT drops unsolicited inbound packets in INPUT and FORWARD, as a home
router does; without the INPUT rule an early punch creates a conntrack entry and MASQUERADE picks
another port. Every command is bounded in time; `teardown` removes everything, also after a
failure. Documentation address ranges only; nothing leaves the namespaces.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

__all__ = [
    "Topology", "build", "build_home_home", "teardown", "TOPOLOGIES", "PORT_PRESERVING", "SYMMETRIC",
    "RELAY_IP", "RELAY_IP_2", "LabError", "run",
]  # fmt: skip

PORT_PRESERVING = "port_preserving"
SYMMETRIC = "symmetric"
RELAY_IP = "203.0.113.1"
RELAY_IP_2 = "203.0.113.2"
WAN_IPS = {"a": "203.0.113.10", "b": "203.0.113.20"}
COMMAND_TIMEOUT_S = 20

# topology name -> NAT layers per side, outermost last (empty: no NAT)
TOPOLOGIES: dict[str, dict[str, tuple[str, ...]]] = {
    "lan": {"a": (), "b": ()},
    "home-home": {"a": (PORT_PRESERVING,), "b": (PORT_PRESERVING,)},
    "cgnat": {"a": (PORT_PRESERVING, PORT_PRESERVING), "b": (PORT_PRESERVING,)},
    "symmetric": {"a": (SYMMETRIC,), "b": (PORT_PRESERVING,)},
    "symmetric-both": {"a": (SYMMETRIC,), "b": (SYMMETRIC,)},
}


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
    name: str
    layers: dict[str, tuple[str, ...]]
    namespaces: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def exec_prefix(self, role: str) -> list[str]:
        """Prepend to a command to run it inside the namespace of `role`."""
        return ["ip", "netns", "exec", self.ns(role)]

    def edge(self, side: str) -> str | None:
        """The namespace role whose `wan` link faces the public segment (None: no NAT)."""
        layers = self.layers[side]
        if not layers:
            return None
        return f"cgn-{side}" if len(layers) == 2 else f"nat-{side}"

    def iptables(self, role: str, *rule: str) -> None:
        run(*self.exec_prefix(role), "iptables", *rule)

    def block_direct(self, side: str) -> None:
        """Black-hole everything between this side's edge and the other side (the relay stays)."""
        self._direct_rules(side, "-I")

    def unblock_direct(self, side: str) -> None:
        self._direct_rules(side, "-D")

    def _direct_rules(self, side: str, action: str) -> None:
        edge = self.edge(side)
        if edge is None:
            raise LabError(f"side {side} has no NAT to put a drop rule on")
        other = WAN_IPS["b" if side == "a" else "a"]
        for chain, direction in (("FORWARD", "-s"), ("FORWARD", "-d"), ("INPUT", "-s")):
            self.iptables(edge, action, chain, direction, other, "-j", "DROP")

    def flush_conntrack(self) -> None:
        for name in self.namespaces:
            subprocess.run(
                ["ip", "netns", "exec", name, "conntrack", "-F"], capture_output=True, timeout=COMMAND_TIMEOUT_S
            )


def _namespace(topology: Topology, role: str) -> str:
    name = topology.ns(role)
    run("ip", "netns", "add", name)
    topology.namespaces.append(name)
    run("ip", "-n", name, "link", "set", "lo", "up")
    return name


def _link(outer: str, outer_if: str, outer_ip: str, inner: str, inner_if: str, inner_ip: str) -> None:
    run("ip", "link", "add", outer_if, "netns", outer, "type", "veth", "peer", "name", inner_if, "netns", inner)
    run("ip", "-n", outer, "addr", "add", outer_ip, "dev", outer_if)
    run("ip", "-n", inner, "addr", "add", inner_ip, "dev", inner_if)
    run("ip", "-n", outer, "link", "set", outer_if, "up")
    run("ip", "-n", inner, "link", "set", inner_if, "up")


def _nat(topology: Topology, role: str, kind: str) -> None:
    run("ip", "netns", "exec", topology.ns(role), "sysctl", "-qw", "net.ipv4.ip_forward=1")
    masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
    if kind == SYMMETRIC:
        masquerade.append("--random-fully")
    topology.iptables(role, *masquerade)
    unsolicited = ["-m", "conntrack", "!", "--ctstate", "ESTABLISHED,RELATED", "-j", "DROP"]
    topology.iptables(role, "-A", "INPUT", "-i", "wan", *unsolicited)
    topology.iptables(role, "-A", "FORWARD", "-i", "wan", *unsolicited)


def _attach_to_pub(topology: Topology, role: str, side: str) -> None:
    """Give `role` a `wan` link on the public bridge with this side's public address."""
    pub, name = topology.ns("pub"), topology.ns(role)
    run("ip", "link", "add", "wan", "netns", name, "type", "veth", "peer", "name", f"to-{side}", "netns", pub)
    run("ip", "-n", pub, "link", "set", f"to-{side}", "master", "br0", "up")
    run("ip", "-n", name, "addr", "add", f"{WAN_IPS[side]}/24", "dev", "wan")
    run("ip", "-n", name, "link", "set", "wan", "up")


def build(name: str, prefix: str | None = None) -> Topology:
    if name not in TOPOLOGIES:
        raise LabError(f"unknown topology {name!r}: choose from {', '.join(TOPOLOGIES)}")
    topology = Topology(prefix or f"ts{os.getpid()}", name, TOPOLOGIES[name])
    try:
        pub = _namespace(topology, "pub")
        run("ip", "-n", pub, "link", "add", "br0", "type", "bridge")
        for address in (RELAY_IP, RELAY_IP_2):
            run("ip", "-n", pub, "addr", "add", f"{address}/24", "dev", "br0")
        run("ip", "-n", pub, "link", "set", "br0", "up")
        for side, layers in topology.layers.items():
            home = _namespace(topology, f"home-{side}")
            if not layers:
                _attach_to_pub(topology, f"home-{side}", side)
                continue
            nat = _namespace(topology, f"nat-{side}")
            _link(nat, "lan", "192.0.2.1/24", home, "eth0", "192.0.2.2/24")
            run("ip", "-n", home, "route", "add", "default", "via", "192.0.2.1")
            if len(layers) == 1:
                _attach_to_pub(topology, f"nat-{side}", side)
            else:  # a carrier-grade NAT in front of the home NAT (100.64.0.0/10, RFC 6598)
                cgn = _namespace(topology, f"cgn-{side}")
                _link(cgn, "cgn", "100.64.0.1/24", nat, "wan", "100.64.0.2/24")
                run("ip", "-n", nat, "route", "add", "default", "via", "100.64.0.1")
                _attach_to_pub(topology, f"cgn-{side}", side)
                _nat(topology, f"cgn-{side}", layers[1])
            _nat(topology, f"nat-{side}", layers[0])
    except BaseException:
        teardown(topology)
        raise
    return topology


def build_home_home(nat_a: str = PORT_PRESERVING, nat_b: str = PORT_PRESERVING, prefix: str | None = None) -> Topology:
    name = {(PORT_PRESERVING, PORT_PRESERVING): "home-home", (SYMMETRIC, PORT_PRESERVING): "symmetric",
            (SYMMETRIC, SYMMETRIC): "symmetric-both"}[(nat_a, nat_b)]  # fmt: skip
    return build(name, prefix)


def teardown(topology: Topology) -> None:
    """Delete the namespaces (their interfaces, rules and processes' sockets go with them)."""
    for name in reversed(topology.namespaces):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT_S)
    topology.namespaces.clear()
