"""The node's transport core on its own rules, in virtual time: hostile packets never raise and
are counted, a dial to a silent peer fails in time, two peers dialling each other at once keep
one connection, and a handshake left half-open is forgotten."""

from __future__ import annotations

import random
from collections.abc import Callable

from tests.sim.links import Impairment
from tests.sim.world import A_PUBLIC, B_PUBLIC, RELAY, World
from tomproto.core.admission import AdmissionSettings
from tomproto.core.endpoint import DRAIN_GRACE_S, EndpointCore
from tomproto.core.introductions import MAX_PENDING_INTRODUCTIONS
from tomproto.core.quic import TransportSettings
from tomproto.core.transport_events import DialFailed, DialSucceeded, PeerConnected
from tomproto.errors import DialTimeout
from tomproto.identity import Identity, NodeId
from tomproto.relay import protocol as wire


def hostile_packets(rng: random.Random, count: int) -> list[bytes]:
    """Garbage of every shape the core tells apart: QUIC long and short headers, Initials of
    1200 bytes, every relay kind, punches, reset notices, and random bytes."""
    kinds = sorted(wire.RELAY_KINDS | {wire.PUNCH, wire.PUNCH_ACK, 0x01, 0x00, 0x3F})
    packets = []
    for index in range(count):
        shape = index % 5
        if shape == 0:  # a long header Initial of QUIC v1, garbage inside
            packets.append(bytes([0xC0]) + b"\x00\x00\x00\x01" + rng.randbytes(rng.choice([20, 1200, 1300])))
        elif shape == 1:  # a short header for some connection id
            packets.append(bytes([0x40 | rng.randrange(64)]) + rng.randbytes(rng.randrange(1, 80)))
        elif shape == 2:  # a control kind with a body of any length
            packets.append(bytes([rng.choice(kinds)]) + rng.randbytes(rng.choice([0, 1, 32, 33, 65, 90, 137, 300])))
        elif shape == 3:  # RELAYED carrying garbage (as if from a registered peer)
            packets.append(bytes([wire.RELAYED]) + rng.randbytes(32) + rng.randbytes(rng.randrange(0, 1300)))
        else:
            packets.append(rng.randbytes(rng.randrange(0, 1500)))
    return packets


def test_hostile_packets_never_raise_are_counted_and_leave_bounded_state() -> None:
    rng = random.Random(1)
    core = EndpointCore(Identity.from_seed(rng.randbytes(32)), TransportSettings(), now=0.0,
                        random_bytes=rng.randbytes, relay_address=RELAY)  # fmt: skip
    core.register_with_relay(0.0)
    now = 0.0
    for index, packet in enumerate(hostile_packets(rng, 5000)):
        now += 0.001
        source = RELAY if index % 2 else ("198.51.100.99", 1000 + index % 50)
        core.receive_datagram(packet, source, now)
        core.datagrams_to_send()
        if index % 100 == 0:
            deadline = core.next_deadline()
            if deadline is not None and deadline <= now:
                core.handle_timer(now)
    counters = core.counters
    assert counters.datagrams_received == 5000
    assert counters.malformed_packets > 500 and counters.punches_refused > 0
    assert not any(isinstance(event, PeerConnected) for event in iter(core.next_event, None))
    assert len(core._introductions) <= MAX_PENDING_INTRODUCTIONS
    assert core.connections() == []  # garbage Initials open no connection


def test_a_dial_to_a_silent_peer_fails_with_a_dial_timeout_at_the_handshake_timeout() -> None:
    with World(5, behind_nats=False) as world:
        world.network.partition([A_PUBLIC], [B_PUBLIC])
        world.at(1.0, world.alice, lambda now: world.alice.core.dial(world.bob.identity.node_id, B_PUBLIC, now))
        world.run_until(20.0)
        (failed,) = world.alice.timed(DialFailed)
        assert isinstance(failed.event, DialFailed) and isinstance(failed.event.error, DialTimeout)
        assert failed.at_s == 1.0 + world.settings.handshake_timeout_s
        assert world.alice.core.connections() == [] and not world.alice.core._connections


def dialler(core: EndpointCore, peer: NodeId, address: tuple[str, int]) -> Callable[[float], object]:
    return lambda now: core.dial(peer, address, now)


def test_two_peers_dialling_each_other_at_once_keep_one_connection_on_both_sides() -> None:
    for seed in range(10):
        with World(seed, behind_nats=False, impairment=Impairment(delay_s=0.015, jitter_s=0.003)) as world:
            alice, bob = world.alice, world.bob
            world.at(1.0, alice, dialler(alice.core, bob.identity.node_id, B_PUBLIC))
            world.at(1.0, bob, dialler(bob.core, alice.identity.node_id, A_PUBLIC))
            world.run_until(1.0 + DRAIN_GRACE_S + 5)
            a_side = alice.core.connection_to(bob.identity.node_id)
            b_side = bob.core.connection_to(alice.identity.node_id)
            assert a_side is not None and b_side is not None
            lower_is_alice = alice.identity.node_id < bob.identity.node_id
            assert alice.core.info(a_side).dialer is lower_is_alice, seed
            assert bob.core.info(b_side).dialer is not lower_is_alice, seed
            # Each dial was answered once (with the connection kept at that moment); after the
            # grace, the connection both sides dropped is gone on both.
            assert len(alice.timed(DialSucceeded)) == 1 and len(bob.timed(DialSucceeded)) == 1, seed
            assert len(alice.core._connections) == 1 and len(bob.core._connections) == 1, seed


def test_a_handshake_left_half_open_is_forgotten() -> None:
    settings = TransportSettings(admission=AdmissionSettings(half_open_timeout_s=3.0))
    with World(9, behind_nats=False, settings=settings) as world:
        # Bob hears Alice's Initial, but nothing Bob sends reaches Alice: the handshake stalls.
        world.network.partition_where(lambda source, destination: source == B_PUBLIC and destination == A_PUBLIC)
        world.at(1.0, world.alice, lambda now: world.alice.core.dial(world.bob.identity.node_id, B_PUBLIC, now))
        world.run_until(1.0 + settings.admission.half_open_timeout_s + 0.5)
        assert world.bob.core.counters.half_open_timeouts == 1
        # Alice's Initials keep coming until her own dial gives up; each is forgotten in turn.
        world.run_until(1.0 + settings.handshake_timeout_s + settings.admission.half_open_timeout_s + 0.5)
        assert world.bob.core.counters.half_open_timeouts >= 1
        assert not world.bob.core._connections and not world.bob.core._half_open
