"""Anti-spam (tomproto/core/antispam.py): 10 envelopes a second per anonymous sender, bursts of
20; Ack, Heartbeat and ReadReceipt exempt; a granted peer is held to its own budget until the grant
ends, never to an unlimited one. Refusals through the runtime are in test_runtime_hostile.py."""

from __future__ import annotations

from tomproto.core.antispam import SpamGuard, anonymous_rate_per_s
from tomproto.identity import NodeId
from tomproto.wire.envelope import MessageType

A = NodeId(bytes([1]) * 32)
B = NodeId(bytes([2]) * 32)
CHAT = MessageType.Chat


def admitted(guard: SpamGuard, sender: NodeId, count: int, at_s: float, msg_type: MessageType = CHAT) -> int:
    return sum(guard.admit(sender, msg_type, at_s) for _ in range(count))


def test_the_anonymous_rate_is_10_a_second_growing_with_reputation() -> None:
    assert anonymous_rate_per_s() == 10.0
    assert anonymous_rate_per_s(10.0) == 30.0
    assert anonymous_rate_per_s(1e9) < 50.0


def test_an_anonymous_sender_gets_a_burst_of_20_then_10_a_second() -> None:
    guard = SpamGuard()
    assert admitted(guard, A, 25, 0.0) == 20
    assert admitted(guard, A, 5, 0.05) == 0  # half a token so far
    assert admitted(guard, A, 5, 0.1) == 1
    assert admitted(guard, A, 30, 1.1) == 10
    assert admitted(guard, A, 50, 100.0) == 20  # the bucket refills; nobody is banned


def test_each_sender_has_its_own_bucket() -> None:
    guard = SpamGuard()
    assert admitted(guard, A, 100, 0.0) == 20
    assert admitted(guard, B, 20, 0.0) == 20


def test_acks_heartbeats_and_read_receipts_are_exempt_and_cost_nothing() -> None:
    guard = SpamGuard()
    for msg_type in (MessageType.Ack, MessageType.Heartbeat, MessageType.ReadReceipt):
        assert admitted(guard, A, 1_000, 0.0, msg_type) == 1_000
    assert admitted(guard, A, 25, 0.0) == 20  # the exempt ones took nothing from the bucket
    assert admitted(guard, A, 5, 0.0, MessageType.BackupDeliver) == 0  # not exempt


def test_a_granted_peer_gets_its_whole_burst_and_no_more() -> None:
    guard = SpamGuard()
    assert guard.grant(A, 100.0, 300.0, until_s=60.0, now=0.0)
    assert admitted(guard, A, 300, 0.0) == 300  # a campaign's burst passes entirely
    assert admitted(guard, A, 10, 0.0) == 0  # a grant is never unlimited
    assert admitted(guard, A, 200, 1.0) == 100  # its own rate, not the anonymous one


def test_a_grant_ends_at_its_time_and_the_anonymous_bucket_applies_again() -> None:
    guard = SpamGuard()
    guard.grant(A, 1_000.0, 1_000.0, until_s=10.0, now=0.0)
    assert admitted(guard, A, 500, 9.999) == 500
    assert guard.granted(A, 10.0) is None
    assert admitted(guard, A, 500, 10.0) == 20


def test_a_revoked_grant_ends_at_once() -> None:
    guard = SpamGuard()
    guard.grant(A, 1_000.0, 1_000.0, until_s=10.0, now=0.0)
    guard.revoke(A)
    assert admitted(guard, A, 100, 1.0) == 20


def test_the_table_of_grants_is_bounded_but_ended_grants_make_room() -> None:
    guard = SpamGuard(max_grants=1)
    assert guard.grant(A, 10.0, 10.0, until_s=5.0, now=0.0)
    assert not guard.grant(B, 10.0, 10.0, until_s=5.0, now=1.0)
    assert guard.grant(A, 20.0, 20.0, until_s=9.0, now=1.0)  # a peer's grant can be renewed
    assert guard.grant(B, 10.0, 10.0, until_s=20.0, now=9.0)  # A's ended
