"""The backup exchange through runtimes (tomproto/core/backup_exchange.py, spec/protocol.md §7):
a message no transport attempt could deliver is kept and replicated, delivered once with its
original id when the recipient is back, every holder's copy then dropped; nothing kept past 24 h."""

from __future__ import annotations

import pytest

from tests.runtime_net import Net
from tomproto.core.backup import MAX_BACKUP_TTL_S
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.runtime import RuntimeSettings
from tomproto.core.runtime_events import BackupDelivered, BackupExpired, BackupReplicated, BackupStored, RoomToSend
from tomproto.errors import Backpressure

S = DeliveryStatus


def offline_recipient(net: Net) -> str:
    """a knows b (online); c cannot be reached; a sends c a message: its id."""
    net.send("a", "b", b"hello b")
    net.pump()
    net.unreachable = lambda sent: sent.command.next_hop == net["c"].id
    return net.send("a", "c", b"while you were away")


def test_an_undeliverable_message_is_kept_replicated_and_delivered_once_when_the_recipient_is_back() -> None:
    net = Net("abc")
    message_id = offline_recipient(net)
    net.advance(2.0)  # attempts at 0, 0.5 and 1.5 s all fail
    (kept,) = net["a"].facts(BackupStored)
    assert kept.message_id == message_id and not kept.replica
    (replica,) = net["b"].facts(BackupStored)
    assert replica.message_id == message_id and replica.replica and replica.sender == net["a"].id
    assert [r.holder for r in net["a"].facts(BackupReplicated)] == [net["b"].id]
    assert net.status("a", message_id) is S.pending
    net.advance(30.0)  # the holders keep trying; still unreachable
    assert net["c"].inbox == []

    net.unreachable = lambda sent: False
    net.carry_out("a", net.rt("a").peer_connected(net["c"].id, net.now))  # c is back
    net.advance(120.0)  # ... and b's next attempt reaches it too
    (message,) = net["c"].inbox
    assert message.message_id == message_id and message.plaintext == b"while you were away"
    assert message.from_backup in (net["a"].id, net["b"].id)
    assert net.rt("c").counters.duplicates >= 1  # the other holder's copy: dropped, confirmed
    assert net["a"].statuses(message_id)[-1] is S.delivered
    assert len(net.rt("a").store) == 0 and len(net.rt("b").store) == 0
    assert [d.message_id for d in net["b"].facts(BackupDelivered)] == [message_id]


def test_a_backup_lives_24_hours_at_most_and_then_the_message_fails() -> None:
    net = Net("abc", per_node={"a": RuntimeSettings(backup_ttl_s=2 * MAX_BACKUP_TTL_S)})
    message_id = offline_recipient(net)
    net.advance(2.0)
    (kept,) = net["a"].facts(BackupStored)
    stored_at_s = 1.5  # the third attempt's failure
    assert kept.expires_at_ms == net.wall_ms(stored_at_s + MAX_BACKUP_TTL_S)
    for at_s in (MAX_BACKUP_TTL_S - 1.0, MAX_BACKUP_TTL_S, stored_at_s + MAX_BACKUP_TTL_S):
        net.now = at_s
        for name in "ab":
            net.carry_out(name, net.rt(name).handle_timer(at_s))
        net.pump()
        if at_s < MAX_BACKUP_TTL_S:
            assert net["a"].statuses(message_id) == []
    assert net["a"].statuses(message_id) == [S.failed]  # nothing waits past 24 h
    assert len(net.rt("a").store) == 0 and len(net.rt("b").store) == 0  # nor any copy
    assert {e.message_id for e in net["a"].facts(BackupExpired)} == {message_id}
    assert net.rt("a").tracker.unfinished == 0


def test_messages_kept_for_an_offline_peer_do_not_hold_other_sends_back() -> None:
    net = Net("abc", per_node={"a": RuntimeSettings(max_unacknowledged=2)})
    net.unreachable = lambda sent: sent.command.next_hop == net["c"].id
    first = net.send("a", "c", b"one")
    net.send("a", "c", b"two")
    with pytest.raises(Backpressure):
        net.send("a", "b", b"not yet")
    net.advance(2.0)  # every attempt failed: both wait in the backup store
    assert len(net.rt("a").store) == 2 and net.rt("a").tracker.unfinished == 0
    assert net["a"].facts(RoomToSend)
    net.send("a", "b", b"to b")
    net.pump()
    assert net["b"].plaintexts() == [b"to b"]
    net.unreachable = lambda sent: False
    net.carry_out("a", net.rt("a").peer_connected(net["c"].id, net.now))
    net.pump()
    assert sorted(net["c"].plaintexts()) == [b"one", b"two"]
    assert net.status("a", first) is S.delivered and net.rt("a").tracker.unfinished == 0


def test_a_message_is_not_kept_when_backups_are_off() -> None:
    net = Net("abc", per_node={"a": RuntimeSettings(backup=False)})
    message_id = offline_recipient(net)
    net.advance(2.0)
    assert net["a"].statuses(message_id) == [S.failed]
    assert len(net.rt("a").store) == 0 and net["b"].facts(BackupStored) == []
