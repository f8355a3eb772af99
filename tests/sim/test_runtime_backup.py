"""Messages for a peer that is offline: kept by the sender, replicated on another peer, delivered
once (with their original ids) when the peer is back, by whichever holder is online then; and
nothing is kept past 24 hours."""

from __future__ import annotations

import time

from tests.sim.links import Impairment
from tests.sim.runtime_world import RuntimeNode, RuntimeWorld
from tomproto.core.backup import MAX_BACKUP_TTL_S
from tomproto.core.delivery import FINISHED_RECORD_TTL_S, DeliveryStatus
from tomproto.core.runtime_events import (
    BackupDelivered,
    BackupExpired,
    BackupReplicated,
    BackupStored,
    MessageResent,
    MessageStatusChanged,
)
from tomproto.core.transport_events import DialFailed

NETWORK = Impairment(delay_s=0.020, jitter_s=0.005)
AWAY_S = 600.0  # Bob is away ten minutes
GONE_S = 60.0  # by then Alice's connection to Bob has timed out (QUIC's idle timeout is 30 s)


def three(seed: int, *, transport: str = "quic") -> RuntimeWorld:
    world = RuntimeWorld(seed, ["alice", "bob", "carol"], transport=transport,  # type: ignore[arg-type]
                         impairment=NETWORK)  # fmt: skip
    world.connect(world["alice"], world["bob"])
    world.connect(world["alice"], world["carol"])
    return world


def kept_and_replicated(alice: RuntimeNode, carol: RuntimeNode, messages: list[str]) -> None:
    assert {e.message_id for e in alice.facts(BackupStored) if not e.replica} == set(messages)
    assert {(e.message_id, e.holder) for e in alice.facts(BackupReplicated)} == {(m, carol.node_id) for m in messages}
    assert {e.message_id for e in carol.facts(BackupStored) if e.replica} == set(messages)


def test_messages_for_a_peer_away_10_minutes_are_kept_replicated_and_delivered_once_when_it_is_back() -> None:
    with three(1) as world:
        alice, bob, carol = world["alice"], world["bob"], world["carol"]
        away_at = world.now + 1
        back_at = away_at + AWAY_S
        world.black_hole(bob, start_s=away_at, end_s=back_at)
        world.run_until(away_at + GONE_S)
        assert alice.core.connection_to(bob.node_id) is None
        messages = [alice.send(bob, b"while you were away %d" % index) for index in range(3)]
        world.run_until(world.now + 30)
        # No transport attempt got through: each message is kept, and replicated on Carol.
        assert all(alice.status(m) is DeliveryStatus.pending for m in messages)
        assert len(alice.facts(DialFailed)) >= 3
        kept_and_replicated(alice, carol, messages)
        world.run_while(lambda: any(alice.status(m) is not DeliveryStatus.delivered for m in messages),
                        back_at + 120)  # fmt: skip
        world.run_for(120)  # Carol's replicas reach Bob too, as duplicates
        assert sorted(bob.received_ids()) == sorted(messages)  # each once, with its original id
        assert {e.message_id for e in carol.facts(BackupDelivered)} == set(messages)
        assert len(alice.runtime.store) == len(carol.runtime.store) == 0
        delivered = [e for e in alice.facts(MessageStatusChanged) if e.status is DeliveryStatus.delivered]
        assert sorted(e.message_id for e in delivered) == sorted(messages)
        assert all(e.at_s >= back_at for e in delivered)


def test_when_the_sender_is_offline_too_a_replica_delivers_and_the_sender_ends_delivered_once_back() -> None:
    with three(2) as world:
        alice, bob, carol = world["alice"], world["bob"], world["carol"]
        away_at = world.now + 1
        back_at = away_at + AWAY_S
        world.black_hole(bob, start_s=away_at, end_s=back_at)
        world.run_until(away_at + GONE_S)
        messages = [alice.send(bob, b"while you were away %d" % index) for index in range(3)]
        world.run_until(world.now + 30)
        kept_and_replicated(alice, carol, messages)
        alice_back_at = back_at + 300
        world.black_hole(alice, start_s=away_at + AWAY_S / 2, end_s=alice_back_at)
        world.run_until(back_at + 200)
        # Carol's replicas reached Bob while Alice was away.
        assert sorted(bob.received_ids()) == sorted(messages)
        assert {message.from_backup for _, message in bob.inbox} == {carol.node_id}
        assert {e.message_id for e in carol.facts(BackupDelivered)} == set(messages)
        assert len(carol.runtime.store) == 0
        assert all(alice.status(m) is DeliveryStatus.pending for m in messages)
        # Alice is back: her own copies reach Bob as duplicates, and his ACKs reach her.
        world.run_while(lambda: any(alice.status(m) is not DeliveryStatus.delivered for m in messages),
                        alice_back_at + 120)  # fmt: skip
        world.run_for(60)
        assert sorted(bob.received_ids()) == sorted(messages)
        assert len(alice.runtime.store) == 0


def test_a_message_sent_as_its_recipient_vanishes_is_kept_for_it_once_the_resend_cannot_leave() -> None:
    """Regression: the first copy left on a connection that was already dead; the resend's three
    transport attempts failed; the message then had no deadline and no backup, and stayed Sent
    (it would have been resent 24 h later)."""
    with three(3) as world:
        alice, bob, carol = world["alice"], world["bob"], world["carol"]
        away_at = world.now + 1
        back_at = away_at + AWAY_S
        world.black_hole(bob, start_s=away_at, end_s=back_at)
        world.run_until(away_at + 1)
        message = alice.send(bob, b"are you there?")
        assert alice.status(message) is DeliveryStatus.sent  # the connection still looked alive
        world.run_until(away_at + 60)
        assert [e.resend for e in alice.facts(MessageResent)] == [1]
        kept_and_replicated(alice, carol, [message])
        world.run_while(lambda: alice.status(message) is not DeliveryStatus.delivered, back_at + 120)
        world.run_for(60)
        assert bob.received_ids() == [message]
        assert len(alice.runtime.store) == len(carol.runtime.store) == 0


def test_a_backup_for_a_peer_that_never_returns_expires_in_24_hours_and_the_message_fails() -> None:
    """On the frame network (24 virtual hours of QUIC would take minutes). It caught the holders'
    retry backoff overflowing a float after ~17 h of tries (OverflowError out of handle_timer)."""
    started = time.perf_counter()
    with three(4, transport="frames") as world:
        alice, bob, carol = world["alice"], world["bob"], world["carol"]
        world.remove(bob)  # Bob's machine is gone for good
        world.run_for(GONE_S)
        messages = [alice.send(bob, b"anyone? %d" % index) for index in range(2)]
        world.run_until(world.now + 30)
        kept_and_replicated(alice, carol, messages)
        stored_at = max(entry.at_s for entry in alice.timed(BackupStored))
        world.run_until(stored_at + MAX_BACKUP_TTL_S + 1)
        assert [alice.status(m) for m in messages] == [DeliveryStatus.failed] * len(messages)
        for holder in (alice, carol):
            expired = holder.timed(BackupExpired)
            assert sorted(e.event.message_id for e in expired) == sorted(messages)  # type: ignore[attr-defined]
            assert all(e.at_s <= stored_at + MAX_BACKUP_TTL_S + 1 for e in expired)
            assert len(holder.runtime.store) == 0
        failed = [e for e in alice.facts(MessageStatusChanged) if e.status is DeliveryStatus.failed]
        assert all(e.at_s <= stored_at + MAX_BACKUP_TTL_S for e in failed)
        # An hour later even the record of the failure is gone.
        world.run_for(FINISHED_RECORD_TTL_S + 5)
        assert not any(m in alice.runtime.tracker for m in messages)
        assert alice.runtime.tracker.unfinished == 0
    print(f"\n24 virtual hours on the frame network in {time.perf_counter() - started:.1f} s wall")
