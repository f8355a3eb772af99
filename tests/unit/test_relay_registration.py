"""A node's registration with tom-relay, on a virtual clock: the client machine and the relay's
core wired together by a link that can lose packets and rebind the node's NAT mapping. No socket,
no sleep."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.relaying import register_with
from tomproto.core.endpoint import EndpointCore
from tomproto.core.quic import TransportSettings
from tomproto.core.relay_registration import (
    ObservedAddressChanged,
    Registered,
    RegistrationEvent,
    RegistrationRefused,
    RegistrationState,
    RegistrationTimedOut,
    RelayRegistration,
)
from tomproto.core.relay_server import RelayCore, RelaySettings
from tomproto.core.transport_events import RelayRegistrationFailed
from tomproto.errors import RelayRefused
from tomproto.identity import Identity
from tomproto.relay import protocol as wire

T = 1_000.0
RELAY_ADDRESS = ("203.0.113.1", 7478)
NODE_ADDRESS = ("198.51.100.20", 40000)  # as the relay sees the node (after its NAT)
CANDIDATES = [("192.168.1.20", 7400), ("10.0.0.20", 7400)]

Drop = Callable[[bytes], bool]


def never(data: bytes) -> bool:
    return False


class Link:
    """The node's machine and a relay core, with zero delay; `drop_up` and `drop_down` decide
    which packets to and from the relay are lost."""

    def __init__(
        self, core: RelayCore, client: RelayRegistration, drop_up: Drop = never, drop_down: Drop = never
    ) -> None:
        self.core, self.client = core, client
        self.drop_up, self.drop_down = drop_up, drop_down
        self.address = NODE_ADDRESS
        self.now = T
        self.sent: list[tuple[float, bytes]] = []
        self.events: list[RegistrationEvent] = []

    def pump(self) -> None:
        while datagrams := self.client.datagrams_to_send():
            for data in datagrams:
                self.sent.append((self.now, data))
                if self.drop_up(data):
                    continue
                for answer in self.core.handle(data, self.address, self.now):
                    if answer.address == self.address and not self.drop_down(answer.data):
                        self.client.receive(answer.data, self.now)
        while (event := self.client.next_event()) is not None:
            self.events.append(event)

    def start(self) -> None:
        self.client.start(self.now)
        self.pump()

    def run_until(self, until_s: float) -> None:
        """Fire every timer of both sides due up to `until_s`, in time order."""
        for _ in range(100_000):  # a timer that never moves on fails here, not by hanging
            deadline = self.client.next_deadline()
            due = min(self.core.next_deadline(), deadline if deadline is not None else float("inf"))
            if due > until_s:
                self.now = until_s
                return
            self.now = max(self.now, due)
            if self.core.next_deadline() <= self.now:
                self.core.sweep(self.now)
            self.client.handle_timer(self.now)
            self.pump()
        raise AssertionError(f"the timers are still due at {self.now - T:g} s")

    def times_sent(self, kind: int) -> list[float]:
        return [at - T for at, data in self.sent if data[0] == kind]


def relay(**settings: object) -> RelayCore:
    return RelayCore(Identity.generate(), RelaySettings(**settings), secret=b"s" * 32, now=T)  # type: ignore[arg-type]


def link(core: RelayCore | None = None, drop_up: Drop = never, drop_down: Drop = never) -> Link:
    client = RelayRegistration(Identity.generate(), RELAY_ADDRESS, CANDIDATES)
    return Link(core or relay(), client, drop_up, drop_down)


def dropping(kind: int, count: int) -> Drop:
    """Lose the first `count` packets of `kind`."""
    lost = [0]

    def drop(data: bytes) -> bool:
        if data[0] == kind and lost[0] < count:
            lost[0] += 1
            return True
        return False

    return drop


def test_the_handshake_registers_us_with_our_candidates_and_tells_the_address_the_relay_sees() -> None:
    net = link()
    net.start()
    assert net.client.state is RegistrationState.registered
    assert net.events == [Registered(NODE_ADDRESS, T)]
    assert net.client.observed_address == NODE_ADDRESS and net.client.relay_id == net.core.identity.node_id.raw
    assert [data[0] for _, data in net.sent] == [wire.HELLO, wire.REGISTER]
    # The relay hands our candidates to a peer that calls us, after the address it sees.
    peer_address = ("192.0.2.99", 1)
    register_with(net.core, Identity.generate(), peer_address, T)
    _, to_peer = net.core.handle(wire.call(net.client.identity.node_id.raw), peer_address, T)
    assert wire.parse_call_from(to_peer.data) == (net.client.identity.node_id.raw, (NODE_ADDRESS, *CANDIDATES))


def test_a_lost_hello_is_sent_again_a_second_later() -> None:
    net = link(drop_up=dropping(wire.HELLO, 2))
    net.start()
    net.run_until(T + 10)
    assert net.times_sent(wire.HELLO) == [0.0, 1.0, 2.0]
    assert net.events[0] == Registered(NODE_ADDRESS, T + 2)


def test_a_lost_registration_or_answer_costs_one_more_hello() -> None:
    net = link(drop_up=dropping(wire.REGISTER, 1), drop_down=dropping(wire.REGISTERED, 1))
    net.start()
    net.run_until(T + 10)
    assert net.times_sent(wire.HELLO) == [0.0, 1.0, 2.0]
    assert net.times_sent(wire.REGISTER) == [0.0, 1.0, 2.0]
    assert [event for event in net.events if isinstance(event, Registered)] == [Registered(NODE_ADDRESS, T + 2)]


def test_a_silent_relay_times_out_after_the_timeout_and_then_nothing_more_is_sent() -> None:
    net = link(drop_up=lambda data: True)
    net.start()
    net.run_until(T + 60)
    assert net.times_sent(wire.HELLO) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert net.events == [RegistrationTimedOut(5.0)]
    assert net.client.state is RegistrationState.timed_out and net.client.next_deadline() is None


def test_a_refusal_is_final_and_says_why() -> None:
    core = relay(max_nodes=1)
    occupant = link(core)
    occupant.address = ("192.0.2.50", 1)
    occupant.start()
    net = link(core)
    net.start()
    net.run_until(T + 60)
    assert net.events == [RegistrationRefused("relay full")]
    assert net.client.state is RegistrationState.refused and net.client.refusal == "relay full"
    assert net.times_sent(wire.HELLO) == [0.0]


def test_rate_limited_keeps_asking_until_the_relay_has_room() -> None:
    core = relay(verifications_per_s=1.0, verification_burst=1.0)
    neighbour = link(core)  # same host, another port: same verification budget
    neighbour.address = (NODE_ADDRESS[0], NODE_ADDRESS[1] + 1)
    neighbour.start()
    net = link(core)
    net.start()
    assert net.client.state is RegistrationState.registering and net.events == []
    net.run_until(T + 10)
    assert net.events == [Registered(NODE_ADDRESS, T + 1)]
    assert core.events["refused_verification_budget"] == 1


def test_not_registered_while_registered_registers_again() -> None:
    net = link(relay(keepalive_s=5))
    net.start()
    net.core = relay(keepalive_s=5)  # the relay restarted: it knows nobody
    net.run_until(T + 5)
    assert net.times_sent(wire.KEEPALIVE) == [5.0]
    assert net.times_sent(wire.HELLO) == [0.0, 5.0]
    assert net.events == [Registered(NODE_ADDRESS, T), Registered(NODE_ADDRESS, T + 5)]
    assert net.client.identity.node_id.hex in net.core.stats()["nodes"]


@pytest.mark.parametrize(("relay_keepalive_s", "expected_s"), [(4, 4), (60, 15), (0, 1)])
def test_keepalives_follow_the_relays_interval_clamped_to_1_to_15_s(relay_keepalive_s: int, expected_s: int) -> None:
    net = link(relay(keepalive_s=relay_keepalive_s))
    net.start()
    net.run_until(T + 3 * expected_s)
    assert net.client.keepalive_s == expected_s
    assert net.times_sent(wire.KEEPALIVE) == [float(expected_s * n) for n in (1, 2, 3)]


def test_keepalives_hold_the_registration_long_past_the_relays_expiry() -> None:
    net = link(relay(keepalive_s=15, expiry_s=60))
    net.start()
    net.run_until(T + 600)
    assert net.client.identity.node_id.hex in net.core.stats()["nodes"]
    assert net.events == [Registered(NODE_ADDRESS, T)] and net.times_sent(wire.HELLO) == [0.0]


def test_a_nat_rebinding_is_noticed_registered_again_and_reported() -> None:
    net = link(relay(keepalive_s=10))
    net.start()
    net.address = ("198.51.100.20", 51234)  # the NAT gave us another port
    net.run_until(T + 10)
    assert net.events == [
        Registered(NODE_ADDRESS, T),
        Registered(net.address, T + 10),
        ObservedAddressChanged(net.address),
    ]
    assert net.client.observed_address == net.address
    assert net.core.stats()["nodes"][net.client.identity.node_id.hex]["address"] == "198.51.100.20:51234"


def test_a_keepalive_answer_with_another_address_is_an_observed_address_change() -> None:
    net = link()
    net.start()
    net.client.receive(wire.keepalive_ack(NODE_ADDRESS), T + 1)
    net.client.receive(wire.keepalive_ack(("198.51.100.21", 40000)), T + 2)
    net.pump()
    assert net.events[1:] == [ObservedAddressChanged(("198.51.100.21", 40000))]


def test_a_registered_that_answers_no_register_of_ours_is_ignored() -> None:
    client = RelayRegistration(Identity.generate(), RELAY_ADDRESS, [])
    client.start(T)
    client.receive(wire.registered(("203.0.113.66", 1), 15, 60), T)  # spoofed from the relay's address
    assert client.state is RegistrationState.registering and client.next_event() is None


def test_a_duplicated_challenge_is_answered_once_and_a_late_refusal_does_not_undo_the_registration() -> None:
    core = relay()
    client = RelayRegistration(Identity.generate(), RELAY_ADDRESS, [])
    client.start(T)
    [hello] = client.datagrams_to_send()
    [challenge] = core.handle(hello, NODE_ADDRESS, T)
    client.receive(challenge.data, T)
    client.receive(challenge.data, T)
    [registration] = client.datagrams_to_send()
    [answer] = core.handle(registration, NODE_ADDRESS, T)
    client.receive(answer.data, T)
    [refused] = core.handle(registration, NODE_ADDRESS, T)  # as if it had been sent twice
    client.receive(refused.data, T)
    assert client.state is RegistrationState.registered and client.refusal is None


_STATES = ["idle", "registering", "registered"]


@settings(max_examples=200, deadline=None)
@given(state=st.sampled_from(_STATES), packets=st.lists(st.binary(max_size=120), max_size=8),
       kinds=st.lists(st.sampled_from(sorted(wire.RELAY_KINDS)), max_size=8))  # fmt: skip
def test_garbage_from_the_relays_address_never_raises_and_leaves_a_consistent_machine(
    state: str, packets: list[bytes], kinds: list[int]
) -> None:
    net = link()
    if state == "registered":
        net.start()
    elif state == "registering":
        net.client.start(T)
    for index, data in enumerate(packets):
        kind = kinds[index % len(kinds)] if kinds else None
        net.client.receive(data if kind is None else bytes([kind]) + data, T)
        waiting = net.client.state in (RegistrationState.registering, RegistrationState.registered)
        assert (net.client.next_deadline() is not None) == waiting
    if state == "idle":
        assert net.client.state is RegistrationState.idle and net.client.datagrams_to_send() == []


# -- as the node's transport core reports it ----------------------------------------------------


def test_the_node_names_an_ipv6_relay_in_brackets_when_refused() -> None:
    relay = ("2001:db8::1", 7478)
    core = EndpointCore(Identity.generate(), TransportSettings(), now=T, random_bytes=os.urandom, relay_address=relay,
                        candidates=[("2001:db8::20", 7400)])  # fmt: skip
    core.register_with_relay(T)
    assert [data[0] for data, address in core.datagrams_to_send() if address == relay] == [wire.HELLO]
    core.receive_datagram(wire.refused(wire.Refusal.full, "relay full"), relay, T + 0.01)
    event = core.next_event()
    assert isinstance(event, RelayRegistrationFailed) and isinstance(event.error, RelayRefused)
    assert str(event.error) == "relay [2001:db8::1]:7478 refused us: relay full"
