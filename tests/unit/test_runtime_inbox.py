"""Back-pressure in the runtime (tomproto/core/runtime.py): a full inbox holds frames un-released
and un-ACKed until the application reads, then delivers them in order; too many held frames are
refused; our own sends stop at `max_unacknowledged` and at `max_in_transit_per_peer` per next hop;
datagrams are delivered once, never ACKed, never held."""

from __future__ import annotations

import pytest

from tests.runtime_net import Net
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.framing import FrameRefusal
from tomproto.core.paths import Transport
from tomproto.core.runtime import RuntimeSettings
from tomproto.core.runtime_events import (
    EnvelopeRefused,
    InboxFull,
    MessagesWaiting,
    Purpose,
    RefusalReason,
    ReleaseFrame,
    RoomToSend,
    TransmitEnvelope,
)
from tomproto.errors import Backpressure
from tomproto.wire.envelope import MessageType

S = DeliveryStatus


def small_inbox(messages: int, *, inbox_bytes: int = 1 << 24, max_held_frames: int = 4096) -> Net:
    settings = RuntimeSettings(inbox_messages=messages, inbox_bytes=inbox_bytes, max_held_frames=max_held_frames)
    net = Net("ab", per_node={"b": settings})
    net["b"].reading = False
    return net


def test_a_full_inbox_holds_the_next_frame_without_ack_or_release() -> None:
    net = small_inbox(2)
    ids = [net.send("a", "b", b"m%d" % index) for index in range(3)]
    net.pump()
    assert net.rt("b").inbox_size == 2 and net.rt("b").held_frames == 1
    third = net.sent_by("a", Purpose.message)[2].wire
    assert [r.frame.data for r in net["b"].released].count(third) == 0  # still open at the transport
    assert len(net["b"].released) == 2
    assert [net["a"].statuses(i) for i in ids] == [[S.sent, S.delivered], [S.sent, S.delivered], [S.sent]]
    assert len(net.sent_by("b", Purpose.ack)) == 2
    (full,) = net["b"].facts(InboxFull)
    assert full.waiting == 1


def test_inbox_full_is_reported_once_while_frames_wait() -> None:
    net = small_inbox(1)
    for index in range(5):
        net.send("a", "b", b"m%d" % index)
    net.pump()
    assert net.rt("b").held_frames == 4
    assert len(net["b"].facts(InboxFull)) == 1


def test_reading_delivers_the_held_frames_in_order_acked_and_released() -> None:
    net = small_inbox(1)
    ids = [net.send("a", "b", b"m%d" % index) for index in range(4)]
    net.pump()
    assert net.rt("b").held_frames == 3
    for expected in range(4):
        (message,) = net.read("b", 1)
        assert message.plaintext == b"m%d" % expected
        net.pump()
    assert net.rt("b").held_frames == 0 and net.rt("b").inbox_size == 0
    assert len(net["b"].released) == 4 and all(r.refusal is None for r in net["b"].released)
    assert [net["a"].statuses(i)[-1] for i in ids] == [S.delivered] * 4
    assert net.rt("b").counters.delivered == 4


def test_a_held_frame_is_delivered_before_it_is_acked_and_released() -> None:
    net = small_inbox(1)
    net.send("a", "b", b"first")
    net.send("a", "b", b"second")
    net.pump()
    (first_release,) = net["b"].released
    message, outputs = net.rt("b").take_message(net.now)
    assert message is not None and message.plaintext == b"first"
    kinds = [type(o) for o in outputs]
    assert kinds == [MessagesWaiting, TransmitEnvelope, ReleaseFrame]  # in the inbox, ACKed, released
    release = outputs[-1]
    assert isinstance(release, ReleaseFrame) and release.refusal is None
    assert release.frame is not first_release.frame and release.frame.data == net.sent_by("a")[1].wire


def test_past_max_held_frames_a_frame_is_refused_as_unavailable_and_sent_again_later() -> None:
    net = small_inbox(1, max_held_frames=2)
    ids = [net.send("a", "b", b"m%d" % index) for index in range(4)]
    net.pump()
    assert net.rt("b").held_frames == 2
    refused = [r for r in net["b"].released if r.refusal is not None]
    assert [r.refusal for r in refused] == [FrameRefusal.unavailable]
    assert [e.reason for e in net["b"].facts(EnvelopeRefused)] == [RefusalReason.inbox_full]
    assert net.rt("b").counters.refused[RefusalReason.inbox_full] == 1
    net["b"].reading = True
    net.read("b")
    net.advance(31.0)  # the refused one is resent at its deadline
    assert net["b"].plaintexts() == [b"m0", b"m1", b"m2", b"m3"]
    assert [net["a"].statuses(i)[-1] for i in ids] == [S.delivered] * 4


def test_the_inbox_is_bounded_in_bytes_too() -> None:
    net = small_inbox(100, inbox_bytes=1000)
    for index in range(4):
        net.send("a", "b", bytes([index]) * 400)
    net.pump()
    assert 1 <= net.rt("b").inbox_size <= 2  # never over 1000 bytes (one message always fits)
    assert net.rt("b").held_frames == 4 - net.rt("b").inbox_size
    net["b"].reading = True
    net.read("b")
    assert [p[0] for p in net["b"].plaintexts()] == [0, 1, 2, 3]


def test_send_raises_backpressure_past_max_unacknowledged_and_room_to_send_comes_once() -> None:
    net = Net("ab", per_node={"a": RuntimeSettings(max_unacknowledged=3)})
    net.lose = lambda sent: sent.command.msg_type is MessageType.Ack
    for index in range(3):
        net.send("a", "b", b"m%d" % index)
    net.pump()
    transmissions = len(net.log)
    with pytest.raises(Backpressure):
        net.send("a", "b", b"too many")
    with pytest.raises(Backpressure):
        net.send("a", "b", b"still too many")
    assert len(net.log) == transmissions and len(net.rt("a").tracker.records) == 3
    assert net.rt("a").counters.backpressure == 2
    acks = net.sent_by("b", Purpose.ack)
    net.inject("a", "b", acks[0].wire)
    net.inject("a", "b", acks[1].wire)
    assert len(net["a"].facts(RoomToSend)) == 1
    net.lose = lambda sent: False
    net.send("a", "b", b"now")
    net.pump()
    assert net["b"].plaintexts()[-1] == b"now"


def test_no_more_than_max_in_transit_per_peer_transmissions_wait_per_next_hop() -> None:
    net = Net("abc", per_node={"a": RuntimeSettings(max_in_transit_per_peer=2)})
    runtime = net.rt("a")
    outputs = []
    for index in range(5):
        outputs += runtime.send(net["b"].id, b"m%d" % index, 0.0)[1]
    outputs += runtime.send(net["c"].id, b"to c", 0.0)[1]
    outstanding = [o for o in outputs if isinstance(o, TransmitEnvelope)]
    assert [c.next_hop for c in outstanding] == [net["b"].id, net["b"].id, net["c"].id]  # c is not stuck behind b
    # The driver reports each transmission in turn (the first one fails once): never more than 2 to b.
    reported = 0
    left: list[str] = []
    while outstanding:
        command = outstanding.pop(0)
        if reported == 0:
            more = runtime.transmit_failed(command.token, 0.1, "no route") + runtime.handle_timer(1.0)
        else:
            more = runtime.transmitted(command.token, 1.0)
            left.append(command.message_id)
        reported += 1
        outstanding += [o for o in more if isinstance(o, TransmitEnvelope)]
        assert sum(1 for o in outstanding if o.next_hop == net["b"].id) <= 2
    assert len(left) == 6 and len(set(left)) == 6


def test_a_datagram_is_delivered_once_and_never_acked() -> None:
    net = Net("ab")
    wire = net.seal("a", "b", payload=b"probe")
    net.inject("b", "a", wire, Transport.datagram)
    net.inject("b", "a", wire, Transport.datagram)
    assert net["b"].plaintexts() == [b"probe"]
    assert net.rt("b").counters.duplicates == 1
    assert net.sent_by("b", Purpose.ack) == [] and net.rt("b").counters.acks_sent == 0


def test_a_datagram_is_refused_when_the_inbox_is_full_it_cannot_wait() -> None:
    net = small_inbox(1)
    net.inject("b", "a", net.seal("a", "b", payload=b"fills it"), Transport.datagram)
    frame, _ = net.inject("b", "a", net.seal("a", "b", payload=b"no room"), Transport.datagram)
    assert net.rt("b").held_frames == 0
    assert net["b"].released[-1].frame is frame and net["b"].released[-1].refusal is not None
    assert net.rt("b").counters.refused[RefusalReason.inbox_full] == 1
