"""NATs map, filter and forget as their type says (RFC 4787 terms), through the network."""

from __future__ import annotations

import pytest

from tests.sim.hosts import Address
from tests.sim.links import Impairment
from tests.sim.nat import (
    EIM_ADF,
    EIM_APDF,
    EIM_EIF,
    PORT_MAX,
    PORT_MIN,
    SYMMETRIC,
    Filtering,
    Mapping,
    NatBehaviour,
)
from tests.sim.network import SimNetwork
from tests.sim.recorder import Recorder, send_at

PUBLIC_IP = "203.0.113.1"
INSIDE: Address = ("192.168.1.10", 5000)
S1: Address = ("198.51.100.1", 3478)
S2: Address = ("198.51.100.2", 3478)
S2_OTHER_PORT: Address = ("198.51.100.2", 9000)
STRANGER: Address = ("198.51.100.3", 9999)


class World:
    """One host behind a NAT of the given behaviour, and four public hosts."""

    def __init__(self, behaviour: NatBehaviour, seed: int = 1) -> None:
        self.network = SimNetwork(seed, default=Impairment(delay_s=0.010))
        self.nat = self.network.add_nat(PUBLIC_IP, behaviour)
        self.inside = Recorder()
        self.network.attach(self.inside, INSIDE, nat=self.nat)
        self.public = {address: Recorder() for address in (S1, S2, S2_OTHER_PORT, STRANGER)}
        for address, recorder in self.public.items():
            self.network.attach(recorder, address)

    def send_out(self, when_s: float, destination: Address) -> None:
        send_at(self.network, self.inside, when_s, b"out", destination)

    def send_in(self, when_s: float, source: Address, destination: Address) -> None:
        send_at(self.network, self.public[source], when_s, b"in", destination)

    def seen_from(self, address: Address) -> list[Address]:
        """The sources `address` saw datagrams from, in order."""
        return [source for _, _, source in self.public[address].received]


def test_endpoint_independent_mapping_keeps_one_public_port_for_every_destination() -> None:
    world = World(EIM_EIF)
    world.send_out(0.0, S1)
    world.send_out(0.1, S2)
    world.send_out(0.2, S2_OTHER_PORT)
    world.network.run_until(1.0)
    sources = world.seen_from(S1) + world.seen_from(S2) + world.seen_from(S2_OTHER_PORT)
    assert len(sources) == 3
    assert len(set(sources)) == 1
    assert sources[0][0] == PUBLIC_IP


def test_endpoint_independent_filtering_lets_a_new_peer_in_once_mapped() -> None:
    world = World(EIM_EIF)
    world.send_out(0.0, S1)
    world.network.run_until(0.5)
    mapped = world.seen_from(S1)[0]
    world.send_in(1.0, STRANGER, mapped)
    world.network.run_until(2.0)
    assert [(data, source) for _, data, source in world.inside.received] == [(b"in", STRANGER)]


def test_address_dependent_filtering_drops_a_new_peer_but_not_another_port_of_a_known_one() -> None:
    world = World(EIM_ADF)
    world.send_out(0.0, S2)
    world.network.run_until(0.5)
    mapped = world.seen_from(S2)[0]
    world.send_in(1.0, STRANGER, mapped)
    world.send_in(1.0, S2_OTHER_PORT, mapped)
    world.network.run_until(2.0)
    assert world.inside.sources == {S2_OTHER_PORT}
    assert world.network.counters.nat_filtered == 1


def test_address_and_port_dependent_filtering_lets_only_the_exact_endpoint_in() -> None:
    world = World(EIM_APDF)
    world.send_out(0.0, S2)
    world.network.run_until(0.5)
    mapped = world.seen_from(S2)[0]
    world.send_in(1.0, S2_OTHER_PORT, mapped)
    world.send_in(1.0, S2, mapped)
    world.network.run_until(2.0)
    assert world.inside.sources == {S2}
    assert world.network.counters.nat_filtered == 1


def test_a_symmetric_nat_picks_a_new_public_port_for_each_destination() -> None:
    world = World(SYMMETRIC)
    for when_s, destination in [(0.0, S1), (0.1, S2), (0.2, S2_OTHER_PORT), (0.3, S1)]:
        world.send_out(when_s, destination)
    world.network.run_until(1.0)
    s1_first, s1_again = world.seen_from(S1)
    (s2,) = world.seen_from(S2)
    (s2_other,) = world.seen_from(S2_OTHER_PORT)
    assert s1_first == s1_again  # the same destination keeps its mapping
    assert len({s1_first[1], s2[1], s2_other[1]}) == 3


def test_an_address_dependent_mapping_shares_a_port_between_ports_of_one_ip_only() -> None:
    world = World(NatBehaviour(Mapping.ADDRESS_DEPENDENT, Filtering.ADDRESS_DEPENDENT))
    for when_s, destination in [(0.0, S1), (0.1, S2), (0.2, S2_OTHER_PORT)]:
        world.send_out(when_s, destination)
    world.network.run_until(1.0)
    (s1,), (s2,), (s2_other,) = world.seen_from(S1), world.seen_from(S2), world.seen_from(S2_OTHER_PORT)
    assert s2 == s2_other
    assert s1 != s2


def test_a_datagram_to_an_unmapped_public_port_is_dropped_and_counted() -> None:
    world = World(EIM_EIF)
    world.send_in(0.0, STRANGER, (PUBLIC_IP, 40000))
    world.network.run_until(1.0)
    assert world.inside.received == []
    assert world.network.counters.nat_unmapped == 1


def test_a_mapping_expires_after_its_idle_timeout_unless_outbound_traffic_refreshes_it() -> None:
    world = World(NatBehaviour(mapping_timeout_s=30.0))
    world.send_out(0.0, S1)
    world.network.run_until(1.0)
    mapped = world.seen_from(S1)[0]
    world.send_in(29.0, S1, mapped)  # 29 s after the last outbound datagram: still mapped
    world.send_in(31.0, S1, mapped)  # 31 s after it (inbound never refreshes): gone
    world.network.run_until(32.0)
    assert len(world.inside.received) == 1
    assert world.network.counters.nat_unmapped == 1
    world.send_out(40.0, S1)  # a new mapping, on a new port
    world.send_out(65.0, S1)  # refreshes it
    world.network.run_until(66.0)
    _, renewed, refreshed = world.seen_from(S1)
    assert renewed == refreshed != mapped
    world.send_in(94.0, STRANGER, renewed)  # 29 s after the refresh, 54 s after the mapping was made
    world.network.run_until(95.0)
    assert world.inside.sources == {S1, STRANGER}


def test_public_ports_are_allocated_in_sequence_from_a_seeded_start() -> None:
    def ports(seed: int) -> list[int]:
        world = World(SYMMETRIC, seed=seed)
        for when_s, destination in [(0.0, S1), (0.1, S2), (0.2, STRANGER)]:
            world.send_out(when_s, destination)
        world.network.run_until(1.0)
        return [world.seen_from(address)[0][1] for address in (S1, S2, STRANGER)]

    first = ports(1)
    assert ports(1) == first
    assert ports(2) != first
    assert all(PORT_MIN <= port <= PORT_MAX for port in first)
    assert [(port - first[0]) % (PORT_MAX - PORT_MIN + 1) for port in first] == [0, 1, 2]


def test_an_explicit_first_port_is_the_first_port_used() -> None:
    network = SimNetwork(1)
    nat = network.add_nat(PUBLIC_IP, EIM_EIF, first_port=PORT_MAX)
    assert nat.outbound(INSIDE, S1, 0.0) == (PUBLIC_IP, PORT_MAX)
    assert nat.outbound(("192.168.1.11", 5000), S1, 0.0) == (PUBLIC_IP, PORT_MIN)  # wraps


@pytest.mark.parametrize("hairpinning", [False, True])
def test_hairpinning_is_off_unless_asked_for_and_then_shows_the_public_source(hairpinning: bool) -> None:
    network = SimNetwork(1)
    nat = network.add_nat(PUBLIC_IP, NatBehaviour(hairpinning=hairpinning))
    alice, bob, server = Recorder(), Recorder(), Recorder()
    network.attach(alice, ("192.168.1.2", 5000), nat=nat)
    network.attach(bob, ("192.168.1.3", 5000), nat=nat)
    network.attach(server, S1)
    send_at(network, alice, 0.0, b"hello", S1)
    send_at(network, bob, 0.0, b"hello", S1)
    network.run_until(1.0)
    alice_public, bob_public = (source for _, _, source in server.received)
    send_at(network, alice, 1.0, b"hairpin", bob_public)
    network.run_until(2.0)
    if hairpinning:
        [(arrival_s, data, source)] = bob.received
        assert (data, source) == (b"hairpin", alice_public)
        assert arrival_s == pytest.approx(1.01)
    else:
        assert bob.received == []
        assert network.counters.no_hairpin == 1


def test_hosts_behind_one_nat_reach_each_other_by_private_address_without_it() -> None:
    network = SimNetwork(1)
    nat = network.add_nat(PUBLIC_IP, SYMMETRIC)
    alice, bob = Recorder(), Recorder()
    network.attach(alice, ("192.168.1.2", 5000), nat=nat)
    network.attach(bob, ("192.168.1.3", 5000), nat=nat)
    send_at(network, alice, 0.0, b"lan", ("192.168.1.3", 5000))
    network.run_until(1.0)
    assert bob.sources == {("192.168.1.2", 5000)}
    assert nat.live_mappings(network.now) == 0
