"""The probe tracker: schedule slots, matching replies, outcomes. Sans-IO: times are passed in.

Rules it enforces (spec/measurement.md §1):
- the schedule is open loop: probe k belongs to slot start + k * interval whatever happened before;
- RTT = monotonic time when the matching reply has been opened - monotonic time taken before the
  probe was built; a reply matches by (run id, seq) and nothing else is a reply;
- every probe ends with exactly one outcome: ok (reply within the timeout), late (reply after it),
  lost (no reply by its final deadline), send_error; so sent = ok + late + lost + send_error;
- a probe's final deadline is the earlier of two timeouts after its send and the end of the run
  (one timeout after the last send), so a long or continuous run keeps a bounded set of pending
  probes; a reply after that is counted as `stale`, never silently dropped;
- duplicated and out-of-order replies are counters, not outcomes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Outcome", "ProbeRecord", "ReplyVerdict", "ProbeTracker", "ProbeCounts"]


class Outcome(str, enum.Enum):
    ok = "ok"
    late = "late"
    lost = "lost"
    send_error = "send_error"


class ReplyVerdict(str, enum.Enum):
    ok = "ok"
    late = "late"
    duplicate = "duplicate"
    stale = "stale"  # its probe was already declared lost
    unknown = "unknown"  # not one of our probes (another run, or a seq we never sent)


@dataclass(slots=True)
class ProbeRecord:
    seq: int
    scheduled_s: float  # the slot's time, seconds on the run's monotonic clock
    sent_s: float | None = None  # the monotonic time taken before the probe was built
    path_sent: str | None = None
    wire_size: int | None = None
    replied_s: float | None = None
    path_received: str | None = None
    outcome: Outcome | None = None
    error: str | None = None
    # Where the RTT went on our side: clock start to packet handed to the socket (build, seal,
    # QUIC), and reply packet at the socket to reply opened.
    send_stack_s: float | None = None
    receive_stack_s: float | None = None
    responder_hold_s: float | None = None  # its packet in to its reply out, told by the next reply

    @property
    def network_rtt_s(self) -> float | None:
        """The RTT less the time both stacks held the probe: what the network took."""
        parts = (self.rtt_s, self.send_stack_s, self.receive_stack_s, self.responder_hold_s)
        if any(part is None for part in parts):
            return None
        return self.rtt_s - self.send_stack_s - self.receive_stack_s - self.responder_hold_s  # type: ignore[operator]

    @property
    def rtt_s(self) -> float | None:
        if self.sent_s is None or self.replied_s is None:
            return None
        return self.replied_s - self.sent_s

    @property
    def timer_error_s(self) -> float | None:
        return None if self.sent_s is None else self.sent_s - self.scheduled_s


@dataclass(slots=True)
class ProbeCounts:
    sent: int = 0
    ok: int = 0
    late: int = 0
    lost: int = 0
    send_error: int = 0
    duplicate: int = 0
    out_of_order: int = 0
    stale: int = 0
    unknown: int = 0
    pending: int = 0


@dataclass(slots=True)
class ProbeTracker:
    run_id: str
    timeout_s: float
    records: dict[int, ProbeRecord] = field(default_factory=dict)
    counts: ProbeCounts = field(default_factory=ProbeCounts)
    _pending: dict[int, ProbeRecord] = field(default_factory=dict)
    _highest_answered: int = -1

    def scheduled(self, seq: int, scheduled_s: float) -> ProbeRecord:
        record = ProbeRecord(seq, scheduled_s)
        self.records[seq] = record
        return record

    def sent(self, seq: int, sent_s: float, path: str | None, wire_size: int | None) -> None:
        record = self.records[seq]
        record.sent_s, record.path_sent, record.wire_size = sent_s, path, wire_size
        self._pending[seq] = record
        self.counts.sent += 1
        self.counts.pending += 1

    def send_failed(self, seq: int, sent_s: float | None, error: str) -> ProbeRecord:
        """The send raised: the probe never left (or we cannot know that it did)."""
        record = self.records[seq]
        if record.outcome is not None:
            return record
        if seq in self._pending:
            del self._pending[seq]
            self.counts.pending -= 1
        else:
            self.counts.sent += 1
        record.sent_s = record.sent_s if record.sent_s is not None else sent_s
        record.outcome, record.error = Outcome.send_error, error
        self.counts.send_error += 1
        return record

    def reply(
        self, run_id: str, seq: int, replied_s: float, path: str | None
    ) -> tuple[ReplyVerdict, ProbeRecord | None]:
        if run_id != self.run_id:
            self.counts.unknown += 1
            return ReplyVerdict.unknown, None
        record = self.records.get(seq)
        if record is None or record.sent_s is None:
            self.counts.unknown += 1
            return ReplyVerdict.unknown, None
        if record.outcome in (Outcome.ok, Outcome.late):
            self.counts.duplicate += 1
            return ReplyVerdict.duplicate, record
        if record.outcome is not None:  # lost (or send_error that reached the peer after all)
            self.counts.stale += 1
            return ReplyVerdict.stale, record
        del self._pending[seq]
        self.counts.pending -= 1
        record.replied_s, record.path_received = replied_s, path
        if seq < self._highest_answered:
            self.counts.out_of_order += 1
        self._highest_answered = max(self._highest_answered, seq)
        if replied_s - record.sent_s <= self.timeout_s:
            record.outcome = Outcome.ok
            self.counts.ok += 1
            return ReplyVerdict.ok, record
        record.outcome = Outcome.late
        self.counts.late += 1
        return ReplyVerdict.late, record

    def expire(self, now_s: float, *, run_over: bool = False) -> list[ProbeRecord]:
        """Declare lost every pending probe past its final deadline (all of them if the run is over)."""
        lost = [
            record
            for record in self._pending.values()
            if run_over or now_s - record.sent_s >= 2 * self.timeout_s  # type: ignore[operator]
        ]
        for record in lost:
            del self._pending[record.seq]
            record.outcome = Outcome.lost
        self.counts.pending -= len(lost)
        self.counts.lost += len(lost)
        return lost

    def overdue(self, now_s: float) -> int:
        """Pending probes already past their timeout (what a live view shows as missing)."""
        return sum(1 for record in self._pending.values() if now_s - record.sent_s > self.timeout_s)  # type: ignore[operator, misc]

    @property
    def pending(self) -> int:
        return len(self._pending)
