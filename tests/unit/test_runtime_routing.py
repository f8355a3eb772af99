"""The runtime's routing and delivery rules (tomproto/core/runtime.py, spec/protocol.md §5), on
runtimes wired in memory (tests/runtime_net.py): delivered once and ACKed, resent at 30 s with
the same bytes, Failed at ~90 s, duplicates re-ACKed, ACKs applied once and only from the peer
that may send them, stale and future envelopes refused."""

from __future__ import annotations

from tests.runtime_net import Net, Sent
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.liveness import PeerStatus, PeerStatusChanged
from tomproto.core.runtime_events import (
    DuplicateReceived,
    EnvelopeForwarded,
    MessageResent,
    MessageStatusChanged,
    Purpose,
    RefusalReason,
)
from tomproto.sealing import verify_envelope
from tomproto.wire.codec import encode
from tomproto.wire.envelope import MessageType
from tomproto.wire.payloads import AckPayload, AckType, ReadReceiptPayload

S = DeliveryStatus


def test_a_message_is_delivered_once_and_its_sender_sees_delivered() -> None:
    net = Net("ab")
    message_id = net.send("a", "b", b"hello")
    net.pump()
    assert net["b"].plaintexts() == [b"hello"]
    assert net["b"].inbox[0].message_id == message_id
    assert net["a"].statuses(message_id) == [S.sent, S.delivered]
    assert net.rt("a").tracker.unfinished == 0
    assert all(release.refusal is None for release in net["b"].released)


def test_through_a_relay_the_sender_sees_relayed_then_delivered_and_the_ack_comes_back_the_same_way() -> None:
    net = Net("abc")
    message_id = net.send("a", "c", b"via b", via=("b",))
    net.pump()
    assert net["c"].plaintexts() == [b"via b"]
    assert net["a"].statuses(message_id) == [S.sent, S.relayed, S.delivered]
    forwarded = [s for s in net.sent_by("b", Purpose.forward) if s.command.message_id == message_id]
    assert [s.command.next_hop for s in forwarded] == [net["c"].id]
    assert verify_envelope(forwarded[0].wire).ttl == verify_envelope(net.sent_by("a")[0].wire).ttl - 1
    (ack,) = net.sent_by("c", Purpose.ack)
    assert ack.command.next_hop == net["b"].id  # back along the reversed via
    assert net.rt("b").counters.forwarded == 2  # the message, then c's ACK


def test_an_unacknowledged_message_is_resent_at_30_s_with_the_same_bytes_twice_then_fails_at_90_s() -> None:
    net = Net("ab")
    message_id = net.send("a", "b", b"lost")
    net.lose = lambda sent: sent.source == "a"
    net.advance(89.9)
    tries = net.sent_by("a", Purpose.message)
    assert [s.at_s for s in tries] == [0.0, 30.0, 60.0]
    assert len({s.wire for s in tries}) == 1 and {s.command.message_id for s in tries} == {message_id}
    assert [e.resend for e in net["a"].facts(MessageResent)] == [1, 2]
    assert net.status("a", message_id) is S.sent
    net.advance(90.0)
    assert net["a"].statuses(message_id)[-1] is S.failed
    net.advance(300.0)
    assert len(net.sent_by("a", Purpose.message)) == 3  # never a third resend
    assert net.rt("a").counters.failed == 1 and net.rt("a").tracker.unfinished == 0


def test_a_resend_that_cannot_leave_is_kept_for_the_recipient_not_left_waiting() -> None:
    """The first copy left and was lost, then the recipient went away: the resend's transport
    attempts fail, so the message goes to the backup store (spec §7: kept when every transport
    attempt fails), and fails only when its backup expires."""
    net = Net("ab")
    message_id = net.send("a", "b", b"x")
    net.lose = lambda sent: True  # the first transmission leaves and is lost
    net.pump()
    net.unreachable = lambda sent: True  # then b cannot be reached at all
    net.advance(120.0)
    assert [e.resend for e in net["a"].facts(MessageResent)] == [1]
    assert message_id in net.rt("a").store
    assert net.rt("a").tracker.get(message_id).status is S.sent  # type: ignore[union-attr]
    assert not [e for e in net["a"].facts(MessageStatusChanged) if e.status is S.failed]


def test_when_the_first_ack_is_lost_the_resend_is_a_duplicate_dropped_and_re_acked() -> None:
    net = Net("ab")
    lost: list[Sent] = []

    def lose_first_ack(sent: Sent) -> bool:
        if sent.command.msg_type is MessageType.Ack and not lost:
            lost.append(sent)
            return True
        return False

    net.lose = lose_first_ack
    message_id = net.send("a", "b", b"once")
    net.advance(29.0)
    assert net.status("a", message_id) is S.sent
    net.advance(31.0)
    assert net["b"].plaintexts() == [b"once"]  # not twice
    (duplicate,) = net["b"].facts(DuplicateReceived)
    assert duplicate.message_id == message_id and duplicate.sender == net["a"].id
    assert net.rt("b").counters.duplicates == 1
    assert net["a"].statuses(message_id) == [S.sent, S.delivered]


def test_an_ack_replayed_is_applied_once() -> None:
    net = Net("ab")
    net.lose = lambda sent: sent.command.msg_type is MessageType.Ack
    message_id = net.send("a", "b", b"x")
    net.pump()
    (ack,) = net.sent_by("b", Purpose.ack)
    net.lose = lambda sent: False
    for _ in range(3):
        net.inject("a", "b", ack.wire)
    assert net["a"].statuses(message_id) == [S.sent, S.delivered]
    assert net.rt("a").counters.refused.total() == 0


def test_a_read_receipt_moves_delivered_to_read() -> None:
    net = Net("ab")
    message_id = net.send("a", "b", b"read me")
    net.pump()
    net.carry_out("b", net.rt("b").mark_read(net["b"].inbox[0], net.now))
    net.pump()
    assert net["a"].statuses(message_id) == [S.sent, S.delivered, S.read]


def test_an_ack_or_receipt_from_a_peer_that_is_not_the_recipient_is_refused() -> None:
    net = Net("abc")
    net.lose = lambda sent: sent.source == "a"
    message_id = net.send("a", "b", b"x")
    net.pump()
    forged = [
        net.seal("c", "a", MessageType.Ack, encode(AckPayload(message_id, AckType.RecipientReceived))),
        net.seal("c", "a", MessageType.ReadReceipt, encode(ReadReceiptPayload(message_id, net.wall_ms()))),
        net.seal("c", "a", MessageType.Ack, encode(AckPayload(message_id, AckType.RelayForwarded))),  # not in via
    ]
    for wire in forged:
        net.inject("a", "c", wire)
    assert net["a"].statuses(message_id) == [S.sent]
    assert [r.reason for r in net["a"].refusals()] == [RefusalReason.forged_ack] * 3
    assert net.rt("a").counters.refused[RefusalReason.forged_ack] == 3
    # The real recipient's ACK still counts afterwards.
    net.inject("a", "b", net.seal("b", "a", MessageType.Ack, encode(AckPayload(message_id, AckType.RecipientReceived))))
    assert net["a"].statuses(message_id) == [S.sent, S.delivered]


def test_an_ack_after_failed_does_not_revive_the_message() -> None:
    net = Net("ab")
    net.lose = lambda sent: sent.command.msg_type is MessageType.Ack
    message_id = net.send("a", "b", b"x")
    net.advance(90.0)
    assert net["a"].statuses(message_id)[-1] is S.failed
    late_ack = net.sent_by("b", Purpose.ack)[-1]
    net.inject("a", "b", late_ack.wire)
    assert net["a"].statuses(message_id)[-1] is S.failed
    assert net.status("a", message_id) is S.failed


def test_a_replay_within_the_dedup_window_is_a_duplicate_and_after_it_is_stale() -> None:
    net = Net("ab")
    wire = net.seal("a", "b", payload=b"pay me once")
    net.inject("b", "a", wire)
    net.advance(300.0)
    net.inject("b", "a", wire)
    assert net.rt("b").counters.duplicates == 1
    net.advance(601.0)  # the id:from entry (10 min) has expired by now
    frame, _ = net.inject("b", "a", wire)
    assert net["b"].plaintexts() == [b"pay me once"]
    assert net["b"].refusals()[-1].reason is RefusalReason.stale
    assert net["b"].released[-1].frame is frame and net["b"].released[-1].refusal is not None


def test_a_future_dated_envelope_is_remembered_until_it_would_be_stale() -> None:
    net = Net("ab")
    wire = net.seal("a", "b", payload=b"early", at_s=290.0)  # a sender clock 290 s ahead: accepted
    net.inject("b", "a", wire)
    net.advance(700.0)  # 10 min are over, but the envelope is only 410 s old: still fresh
    net.inject("b", "a", wire)
    assert net["b"].plaintexts() == [b"early"]
    assert net.rt("b").counters.duplicates == 1


def test_envelopes_are_fresh_up_to_540_s_old_and_300_s_ahead() -> None:
    net = Net("ab")
    net.now = 1_000.0
    for at_s in (1_000.0 - 539.0, 1_000.0 + 299.0):
        net.inject("b", "a", net.seal("a", "b", payload=b"ok", at_s=at_s))
    for at_s in (1_000.0 - 541.0, 1_000.0 + 301.0):
        net.inject("b", "a", net.seal("a", "b", payload=b"no", at_s=at_s))
    assert net["b"].plaintexts() == [b"ok", b"ok"]
    assert [r.reason for r in net["b"].refusals()] == [RefusalReason.stale, RefusalReason.from_the_future]


def test_forwarding_an_envelope_not_addressed_to_us_goes_straight_to_its_recipient() -> None:
    net = Net("abc")
    wire = net.seal("a", "c", payload=b"for c")
    net.inject("b", "a", wire)
    (forwarded,) = net["b"].facts(EnvelopeForwarded)
    assert forwarded.next_hop == net["c"].id and forwarded.recipient == net["c"].id
    net.pump()
    assert net["c"].plaintexts() == [b"for c"] and net["b"].inbox == []


def test_heartbeats_keep_quiet_peers_online_and_a_silent_peer_goes_stale_offline_and_forgotten() -> None:
    net = Net("ab")
    net.send("a", "b", b"hi")
    net.advance(200.0)
    changes = [(c.peer, c.status) for c in net["a"].facts(PeerStatusChanged)]
    assert changes == [(net["b"].id, PeerStatus.online)]  # heartbeats kept b online for 200 s
    assert net.sent_by("a", Purpose.heartbeat) and net.sent_by("b", Purpose.heartbeat)
    net.lose = lambda sent: sent.source == "b"  # b falls silent at 200 s
    net.advance(400.0)
    silent = [(c.status, c.at_s - 200.0) for c in net["a"].facts(PeerStatusChanged)[1:]]
    assert [status for status, _ in silent] == [PeerStatus.stale, PeerStatus.offline, PeerStatus.forgotten]
    for (_, after_s), limit_s in zip(silent, (20.0, 45.0, 135.0), strict=True):
        assert limit_s <= after_s < limit_s + 5.0 + 1.0  # within a tick (and the last word heard)
