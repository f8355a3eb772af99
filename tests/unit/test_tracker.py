"""Every probe gets exactly one outcome; replies are matched by (run id, seq) and nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tomstress.engine import Outcome, ProbeTracker, ReplyVerdict

RUN = "run-a"
TIMEOUT_S = 1.0


def tracker_with(*seqs: int) -> ProbeTracker:
    tracker = ProbeTracker(RUN, TIMEOUT_S)
    for seq in seqs:
        tracker.scheduled(seq, seq * 0.1)
        tracker.sent(seq, seq * 0.1 + 0.001, "direct", 600)
    return tracker


def test_reply_within_timeout_is_ok_with_its_rtt() -> None:
    tracker = tracker_with(0)
    verdict, record = tracker.reply(RUN, 0, 0.251, "direct")
    assert verdict is ReplyVerdict.ok and record is not None
    assert record.outcome is Outcome.ok
    assert record.rtt_s == 0.25
    assert record.timer_error_s == 0.001


def test_reply_after_timeout_is_late_not_dropped() -> None:
    tracker = tracker_with(0)
    verdict, record = tracker.reply(RUN, 0, 1.5, "direct")
    assert verdict is ReplyVerdict.late and record is not None and record.outcome is Outcome.late
    assert tracker.counts.late == 1 and tracker.counts.ok == 0


def test_replies_of_other_runs_or_unsent_seqs_are_not_replies() -> None:
    tracker = tracker_with(0)
    assert tracker.reply("run-b", 0, 0.1, None)[0] is ReplyVerdict.unknown
    assert tracker.reply(RUN, 7, 0.1, None)[0] is ReplyVerdict.unknown
    assert tracker.counts.unknown == 2 and tracker.records[0].outcome is None


def test_duplicates_and_reordering_are_counters_not_outcomes() -> None:
    tracker = tracker_with(0, 1, 2)
    tracker.reply(RUN, 2, 0.3, None)
    tracker.reply(RUN, 0, 0.31, None)  # answered after a higher seq: out of order
    assert tracker.reply(RUN, 0, 0.32, None)[0] is ReplyVerdict.duplicate
    assert (tracker.counts.out_of_order, tracker.counts.duplicate, tracker.counts.ok) == (1, 1, 2)


def test_pending_probe_is_lost_two_timeouts_after_its_send_then_a_reply_is_stale() -> None:
    tracker = tracker_with(0)
    assert tracker.expire(0.001 + 2 * TIMEOUT_S - 0.01) == []
    assert tracker.overdue(1.5) == 1
    (lost,) = tracker.expire(0.001 + 2 * TIMEOUT_S)
    assert lost.outcome is Outcome.lost
    assert tracker.reply(RUN, 0, 2.5, None)[0] is ReplyVerdict.stale
    assert tracker.counts.stale == 1 and tracker.counts.lost == 1


def test_end_of_run_declares_every_pending_probe_lost() -> None:
    tracker = tracker_with(0, 1)
    assert len(tracker.expire(0.3, run_over=True)) == 2
    assert tracker.pending == 0


def test_send_failure_is_an_outcome_even_after_the_clock_started() -> None:
    tracker = tracker_with(0)
    record = tracker.send_failed(0, 0.001, "no route")
    assert record.outcome is Outcome.send_error and record.error == "no route"
    assert tracker.counts.sent == 1 and tracker.pending == 0


@given(
    events=st.lists(
        st.tuples(st.sampled_from(["reply", "fail", "expire"]), st.integers(0, 9), st.floats(0, 5)),
        max_size=60,
    )
)
def test_sent_always_equals_the_sum_of_outcomes_and_pending(events: list[tuple[str, int, float]]) -> None:
    tracker = tracker_with(*range(10))
    for kind, seq, now in events:
        if kind == "reply":
            tracker.reply(RUN, seq, seq * 0.1 + now, None)
        elif kind == "fail":
            tracker.send_failed(seq, seq * 0.1, "error")
        else:
            tracker.expire(now)
    tracker.expire(10.0, run_over=True)
    counts = tracker.counts
    assert counts.sent == counts.ok + counts.late + counts.lost + counts.send_error == 10
    assert all(record.outcome is not None for record in tracker.records.values())
