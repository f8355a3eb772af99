"""The delivery tracker (tomproto/core/delivery.py): status only moves forward, Failed only from
below Delivered, finished records forgotten, nothing older than 24 h, `unfinished` exact. The
resends themselves, through the runtime, are in test_runtime_routing.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tomproto.core.delivery import (
    DELIVERY_DEADLINE_S,
    FINISHED_RECORD_TTL_S,
    MAX_RECORD_AGE_S,
    DeliveryStatus,
    DeliveryTracker,
    TrackedMessage,
)
from tomproto.identity import NodeId

PEER = NodeId(bytes([7]) * 32)
S = DeliveryStatus


def tracked(tracker: DeliveryTracker, message_id: str, at_s: float = 0.0) -> TrackedMessage:
    record = TrackedMessage(message_id, PEER, "Chat", None, b"wire", at_s)
    tracker.track(record)
    return record


def test_status_only_moves_forward() -> None:
    tracker = DeliveryTracker()
    tracked(tracker, "m")
    assert tracker.sent("m", 0.0) is not None
    assert tracker.advance("m", S.relayed, 1.0) is not None
    assert tracker.advance("m", S.sent, 2.0) is None
    assert tracker.advance("m", S.relayed, 2.0) is None  # not a step either
    assert tracker.advance("m", S.read, 3.0) is not None  # a step may skip (the ACK was lost)
    assert tracker.advance("m", S.delivered, 4.0) is None
    assert tracker.get("m").status is S.read  # type: ignore[union-attr]


def test_failed_is_reached_only_from_below_delivered() -> None:
    tracker = DeliveryTracker()
    tracked(tracker, "m")
    tracker.sent("m", 0.0)
    tracker.advance("m", S.delivered, 1.0)
    assert tracker.advance("m", S.failed, 90.0) is None
    assert tracker.get("m").status is S.delivered  # type: ignore[union-attr]
    tracked(tracker, "pending")
    assert tracker.advance("pending", S.failed, 1.0) is not None


def test_an_ack_after_failed_does_not_revive_the_message() -> None:
    tracker = DeliveryTracker()
    tracked(tracker, "m")
    tracker.sent("m", 0.0)
    tracker.advance("m", S.failed, 90.0)
    assert tracker.advance("m", S.delivered, 91.0) is None
    assert tracker.advance("m", S.read, 92.0) is None
    assert tracker.sent("m", 93.0) is None
    assert tracker.get("m").status is S.failed  # type: ignore[union-attr]
    assert tracker.unfinished == 0


def test_a_sent_message_is_due_30_s_after_each_transmission() -> None:
    tracker = DeliveryTracker()
    record = tracked(tracker, "m")
    assert tracker.next_deadline() == MAX_RECORD_AGE_S  # not sent yet: only the 24 h cap
    tracker.sent("m", 5.0)
    assert tracker.next_deadline() == 5.0 + DELIVERY_DEADLINE_S
    assert tracker.due(34.9) == []
    assert tracker.due(35.0) == [record]
    tracker.resent(record)
    assert record.resends == 1
    tracker.sent("m", 36.0)
    assert tracker.next_deadline() == 36.0 + DELIVERY_DEADLINE_S


def test_a_delivered_message_has_no_deadline_and_drops_its_bytes() -> None:
    tracker = DeliveryTracker()
    record = tracked(tracker, "m")
    tracker.sent("m", 0.0)
    tracker.advance("m", S.delivered, 1.0)
    assert tracker.due(MAX_RECORD_AGE_S + 1) == []
    assert record.wire is None and record.envelope is None


def test_nothing_waits_past_24_hours() -> None:
    tracker = DeliveryTracker()
    record = tracked(tracker, "m", at_s=100.0)
    tracker.backed_up("m", until_s=100.0 + 2 * MAX_RECORD_AGE_S)  # a backup asking for longer
    assert tracker.due(100.0 + MAX_RECORD_AGE_S - 1) == []
    assert tracker.due(100.0 + MAX_RECORD_AGE_S) == [record]


def test_finished_records_are_forgotten_after_their_ttl_and_unfinished_ones_kept() -> None:
    tracker = DeliveryTracker()
    tracked(tracker, "done")
    tracked(tracker, "failed")
    tracked(tracker, "open")
    tracker.sent("done", 0.0)
    tracker.advance("done", S.delivered, 10.0)
    tracker.advance("failed", S.failed, 20.0)
    tracker.forget_finished(10.0 + FINISHED_RECORD_TTL_S - 1)
    assert "done" in tracker
    tracker.forget_finished(20.0 + FINISHED_RECORD_TTL_S)
    assert "done" not in tracker and "failed" not in tracker
    assert "open" in tracker and tracker.unfinished == 1


def test_at_most_max_records_finished_ones_are_kept_oldest_first_out() -> None:
    tracker = DeliveryTracker(max_records=2)
    for index in range(4):
        tracked(tracker, f"m{index}")
        tracker.advance(f"m{index}", S.failed, float(index))
    assert [m for m in ("m0", "m1", "m2", "m3") if m in tracker] == ["m2", "m3"]
    tracked(tracker, "open")
    assert "open" in tracker and tracker.unfinished == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from([*S, "backed_up", "sent"])), max_size=40))
def test_unfinished_counts_exactly_the_records_neither_finished_nor_failed_nor_backed_up(
    steps: list[tuple[int, DeliveryStatus | str]],
) -> None:
    tracker = DeliveryTracker()
    for index in range(5):
        tracked(tracker, f"m{index}")
    for at_s, (index, step) in enumerate(steps):
        message_id = f"m{index}"
        if step == "backed_up":
            tracker.backed_up(message_id, at_s + 100.0)
            continue
        if step == "sent":
            tracker.sent(message_id, float(at_s))
            continue
        assert isinstance(step, DeliveryStatus)
        before = tracker.get(message_id).status  # type: ignore[union-attr]
        moved = tracker.advance(message_id, step, float(at_s))
        after = tracker.get(message_id).status  # type: ignore[union-attr]
        assert after >= before if before is not S.failed else after is S.failed
        assert (moved is not None) == (after != before)
        if before >= S.delivered and before is not S.failed:
            assert after is not S.failed
    expected = sum(1 for r in tracker.records.values() if r.status < S.delivered and r.backed_up_until_s is None)
    assert tracker.unfinished == expected
