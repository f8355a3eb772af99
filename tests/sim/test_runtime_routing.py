"""Relaying over QUIC: a message to a peer we cannot reach goes through another node, named in
`via` or chosen by the runtime; the route's limits (4 relays, a hop budget) hold."""

from __future__ import annotations

import pytest

from tests.sim.links import Impairment
from tests.sim.runtime_world import NodeSpec, RuntimeWorld, envelope_of
from tomproto.core.delivery import DELIVERY_DEADLINE_S, MAX_RESENDS, DeliveryStatus
from tomproto.core.outbound import TRANSPORT_RETRY_DELAYS_S
from tomproto.core.runtime import MAX_VIA
from tomproto.core.runtime_events import (
    EnvelopeForwarded,
    EnvelopeRefused,
    MessageStatusChanged,
    Purpose,
    RefusalReason,
)
from tomproto.core.transport_events import DialFailed
from tomproto.wire.envelope import MessageType

NETWORK = Impairment(delay_s=0.020, jitter_s=0.005)


def statuses(world: RuntimeWorld, name: str, message: str) -> list[DeliveryStatus]:
    return [e.status for e in world[name].facts(MessageStatusChanged) if e.message_id == message]


def test_a_message_via_a_relay_reaches_a_peer_the_sender_cannot_reach_once_relayed_then_delivered() -> None:
    with RuntimeWorld(1, ["alice", "bob", "carol"], impairment=NETWORK) as world:
        alice, bob, carol = world["alice"], world["bob"], world["carol"]
        world.cut(alice, carol)
        message = alice.send(carol, b"through bob", via=[bob])
        world.run_while(lambda: alice.status(message) is not DeliveryStatus.delivered, world.now + 10)
        world.run_for(DELIVERY_DEADLINE_S + 5)
        assert carol.received_ids() == [message]
        assert statuses(world, "alice", message) == [DeliveryStatus.sent, DeliveryStatus.relayed,
                                                     DeliveryStatus.delivered]  # fmt: skip
        forwarded = bob.facts(EnvelopeForwarded)
        # Bob forwarded the message to Carol, and Carol's ACK back to Alice (reversed via).
        assert (forwarded[0].message_id, forwarded[0].next_hop) == (message, carol.node_id)
        assert [e.next_hop for e in forwarded[1:]] == [alice.node_id]
        # Alice never tried Carol for it. (Her heartbeats may: Carol's ACK made Carol Online.)
        assert [tx.next_hop for _, tx in alice.transmissions if tx.message_id == message] == [bob.node_id]


def test_a_message_to_an_unreachable_peer_goes_through_an_online_relay_peer_by_itself() -> None:
    with RuntimeWorld(2, [NodeSpec("alice", relays=("bob",)), "bob", "carol"], impairment=NETWORK) as world:
        alice, bob, carol = world["alice"], world["bob"], world["carol"]
        world.cut(alice, carol)
        world.connect(alice, bob)  # Bob is online for Alice, and she knows him as a relay
        sent_at = world.now
        message = alice.send(carol, b"find a way")
        world.run_while(lambda: alice.status(message) is not DeliveryStatus.delivered, world.now + 20)
        world.run_for(DELIVERY_DEADLINE_S + 5)
        # The direct attempt timed out; the next one went through Bob, same id.
        first_failure = alice.timed(DialFailed)[0]
        assert first_failure.event.peer == carol.node_id  # type: ignore[attr-defined]
        attempts = [(at_s, tx.next_hop) for at_s, tx in alice.transmissions if tx.message_id == message]
        assert [hop for _, hop in attempts] == [carol.node_id, bob.node_id]
        assert attempts[1][0] - first_failure.at_s == pytest.approx(TRANSPORT_RETRY_DELAYS_S[0])
        assert carol.received_ids() == [message]
        _, inbound = carol.inbox[0]
        assert inbound.envelope.via == (bob.node_id.hex,)
        assert bob.facts(EnvelopeForwarded)[0].message_id == message
        assert statuses(world, "alice", message) == [DeliveryStatus.sent, DeliveryStatus.relayed,
                                                     DeliveryStatus.delivered]  # fmt: skip
        delivered_at = next(e.at_s for e in alice.facts(MessageStatusChanged) if e.status is DeliveryStatus.delivered)
        assert delivered_at - sent_at < 10  # a 5 s dial timeout, then 0.5 s, then the way round


def test_an_envelope_naming_more_than_4_relays_is_refused_and_counted() -> None:
    with RuntimeWorld(3, ["alice", "bob", "carol"], impairment=NETWORK) as world:
        alice, bob, carol = world["alice"], world["bob"], world["carol"]
        hops = (bob.node_id.hex, *(world.random_bytes(32).hex() for _ in range(MAX_VIA)))
        envelope, wire = alice.runtime.seal(carol.node_id, MessageType.Chat, b"too far", world.now, via=hops)
        alice.send_raw(bob, wire)
        world.run_for(5)
        refused = bob.facts(EnvelopeRefused)
        assert [(e.reason, e.message_id) for e in refused] == [(RefusalReason.via_too_long, envelope.id)]
        assert bob.runtime.counters.refused[RefusalReason.via_too_long] == 1
        assert bob.releases["rejected"] == 1
        assert not bob.facts(EnvelopeForwarded) and not carol.inbox


def test_ttl_drops_by_one_at_each_relay_and_a_relay_refuses_an_envelope_with_none_left() -> None:
    with RuntimeWorld(4, ["alice", "bob", "dave", "carol"], impairment=NETWORK) as world:
        alice, bob, dave, carol = world["alice"], world["bob"], world["dave"], world["carol"]
        world.cut(alice, carol)
        # Through Bob then Dave with 5 hops: Bob passes it on with 4, Dave with 3.
        message = alice.send(carol, b"two relays", via=[bob, dave], ttl=5)
        world.run_while(lambda: alice.status(message) is not DeliveryStatus.delivered, world.now + 10)
        for relay, ttl in ((bob, 4), (dave, 3)):
            forwards = [tx for _, tx in relay.transmissions if tx.purpose is Purpose.forward]
            assert [envelope_of(tx).ttl for tx in forwards if tx.message_id == message] == [ttl]
        assert carol.received_ids() == [message]
        assert carol.inbox[0][1].envelope.ttl == 3
        assert statuses(world, "alice", message) == [DeliveryStatus.sent, DeliveryStatus.relayed,
                                                     DeliveryStatus.delivered]  # fmt: skip
        # With 1 hop: Bob passes it on with 0, and Dave refuses it (each of its three copies).
        starved = alice.send(carol, b"out of hops", via=[bob, dave], ttl=1)
        world.run_while(lambda: alice.status(starved) is not DeliveryStatus.failed,
                        world.now + (MAX_RESENDS + 1) * DELIVERY_DEADLINE_S + 5)  # fmt: skip
        refused = [e for e in dave.facts(EnvelopeRefused) if e.message_id == starved]
        assert [e.reason for e in refused] == [RefusalReason.ttl_exhausted] * (1 + MAX_RESENDS)
        assert dave.runtime.counters.refused[RefusalReason.ttl_exhausted] == 1 + MAX_RESENDS
        assert carol.received_ids() == [message]
        assert statuses(world, "alice", starved) == [DeliveryStatus.sent, DeliveryStatus.relayed,
                                                     DeliveryStatus.failed]  # fmt: skip


def test_the_same_seed_gives_the_same_runtime_events_and_another_seed_does_not() -> None:
    def run(seed: int) -> list[str]:
        with RuntimeWorld(seed, ["alice", "bob", "carol"], impairment=Impairment(delay_s=0.02, loss=0.05)) as world:
            world.cut(world["alice"], world["carol"])
            world["alice"].send(world["carol"], b"hello", via=[world["bob"]])
            world["carol"].send(world["bob"], b"hi")
            world.run_for(10)
            return [f"{entry.at_s:.9f} {entry.node} {entry.event!r}" for entry in world.log]

    first, again, other = run(5), run(5), run(6)
    assert len(first) > 10
    assert first == again
    assert first != other
