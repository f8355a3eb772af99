"""Two hosts behind EIM NATs talk through a relay on a public address, across 5 % loss each way.
The relay is a machine of the relay core's shape (`handle` → list of Outgoing, `sweep`,
`next_deadline`) attached through MachineHost; the network sweeps it at its deadlines."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from tests.sim.hosts import Address, MachineHost
from tests.sim.links import Impairment
from tests.sim.nat import EIM_EIF
from tests.sim.network import SimNetwork

RELAY: Address = ("198.51.100.7", 4433)
EXPIRY_S = 10.0
KEEPALIVE_S = 4.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    data: bytes
    address: Address
    socket: object = None


class ToyRelay:
    """b"R" + name registers the source; b"F" + name + payload forwards b"D" + payload to it.
    A registration not renewed within EXPIRY_S is swept."""

    def __init__(self) -> None:
        self.registered: dict[bytes, tuple[Address, float]] = {}
        self.sweeps: list[float] = []

    def handle(self, data: bytes, source: Address, now: float) -> list[Outgoing]:
        if data[:1] == b"R":
            self.registered[data[1:]] = (source, now)
            return [Outgoing(b"OK", source)]
        if data[:1] == b"F" and data[1:2] in self.registered:
            return [Outgoing(b"D" + data[2:], self.registered[data[1:2]][0])]
        return []

    def sweep(self, now: float) -> list[Outgoing]:
        self.sweeps.append(now)
        self.registered = {name: entry for name, entry in self.registered.items() if now - entry[1] < EXPIRY_S}
        return []

    def next_deadline(self) -> float | None:
        return min((at_s + EXPIRY_S for _, at_s in self.registered.values()), default=None)


class Peer:
    """Registers with the relay every KEEPALIVE_S (which keeps its NAT mapping alive too), and
    sends `count` numbered messages to `peer` through it, one every 10 ms from 1 s."""

    def __init__(self, name: bytes, peer: bytes, count: int) -> None:
        self.name, self.peer, self.count = name, peer, count
        self.received: list[tuple[bytes, Address]] = []
        self.sent = 0
        self._register_at = 0.0
        self._message_at = 1.0
        self._outbox: list[tuple[bytes, Address]] = []

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        if data[:1] == b"D":
            self.received.append((data[1:], source))

    def handle_timer(self, now: float) -> None:
        if now >= self._register_at:
            self._outbox.append((b"R" + self.name, RELAY))
            self._register_at = now + KEEPALIVE_S
        if now >= self._message_at and self.sent < self.count:
            self._outbox.append((b"F" + self.peer + self.sent.to_bytes(4, "big"), RELAY))
            self.sent += 1
            self._message_at = now + 0.010

    def next_deadline(self) -> float | None:
        return min(self._register_at, self._message_at) if self.sent < self.count else self._register_at

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        outbox, self._outbox = self._outbox, []
        return outbox


def test_two_hosts_behind_eim_nats_reach_each_other_through_a_relay_across_loss() -> None:
    network = SimNetwork(2024, default=Impairment(delay_s=0.025, jitter_s=0.005, loss=0.05))
    relay = ToyRelay()
    network.attach(MachineHost(relay), RELAY)
    home_a = network.add_nat("203.0.113.1", EIM_EIF)
    home_b = network.add_nat("203.0.113.2", EIM_EIF)
    alice, bob = Peer(b"a", b"b", 1000), Peer(b"b", b"a", 1000)
    network.attach(alice, ("192.168.1.2", 5000), nat=home_a)
    network.attach(bob, ("192.168.1.2", 5000), nat=home_b)  # the same private address, another home

    network.run_until(15.0)

    assert {address[0] for address, _ in relay.registered.values()} == {"203.0.113.1", "203.0.113.2"}
    # A message crosses two lossy hops: it arrives with probability 0.95².
    delivered = 0.95**2
    for receiver in (alice, bob):
        assert {source for _, source in receiver.received} == {RELAY}
        spread = 4 * math.sqrt(1000 * delivered * (1 - delivered))
        assert abs(len(receiver.received) - 1000 * delivered) <= spread
    assert network.counters.lost > 0
    assert network.counters.nat_unmapped == network.counters.nat_filtered == 0


def test_the_network_sweeps_the_relay_at_its_deadline_once_a_host_goes_silent() -> None:
    network = SimNetwork(1)
    relay = ToyRelay()
    network.attach(MachineHost(relay), RELAY)
    nat = network.add_nat("203.0.113.1", EIM_EIF)
    alice = Peer(b"a", b"b", 0)
    network.attach(alice, ("192.168.1.2", 5000), nat=nat)
    network.run_until(5.0)
    assert set(relay.registered) == {b"a"}
    network.detach(alice)  # last registration at 4 s, as received at 4.01 s
    network.run_until(30.0)
    assert relay.registered == {}
    assert relay.sweeps and relay.sweeps[-1] == pytest.approx(4.01 + EXPIRY_S)
