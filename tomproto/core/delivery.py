"""The delivery tracker: what became of each message we sent, and when to send it again.

Rules it enforces (spec/protocol.md §5):
- status only moves forward: Pending → Sent → Relayed → Delivered → Read; Failed only from
  below Delivered (a message the recipient acknowledged never fails afterwards);
- Delivered means the recipient acknowledged it (RecipientReceived): the recipient ACKs only once
  the message is in its application's hands or bounded queue;
- a message not Delivered 30 s after it was sent is sent again: the same envelope, same id and
  bytes (the recipient's dedup re-ACKs a copy it already has); after 2 resends and 30 s more, it
  is Failed (~90 s);
- a message held in the backup store for an offline recipient waits for it instead (until its
  backup expires, 24 h at most), then fails; meanwhile it does not count in `unfinished` (what
  holds senders back: the backup store's capacity bounds these), and counts again if it is sent;
- nothing is kept forever: a finished record is forgotten after `FINISHED_RECORD_TTL_S`, every
  record after 24 h, and the table holds at most `max_records` finished ones.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from tomproto.core.antispam import EXEMPT_TYPES
from tomproto.core.deadlines import Deadlines
from tomproto.identity import NodeId
from tomproto.wire.envelope import Envelope, MessageType

__all__ = [
    "DeliveryStatus",
    "TrackedMessage",
    "DeliveryTracker",
    "DELIVERY_DEADLINE_S",
    "MAX_RESENDS",
    "MAX_RECORD_AGE_S",
    "FINISHED_RECORD_TTL_S",
    "UNACKED_TYPES",
]

DELIVERY_DEADLINE_S = 30.0
MAX_RESENDS = 2
MAX_RECORD_AGE_S = 24 * 3600.0
FINISHED_RECORD_TTL_S = 3600.0  # long enough for a read receipt, short enough to stay small
# Types that are never ACKed nor tracked: acknowledgements themselves, liveness, and what the
# runtime consumes itself (announcements and the backup exchange, which confirms on its own).
UNACKED_TYPES = frozenset(EXEMPT_TYPES | {
    MessageType.PeerAnnounce, MessageType.BackupStore, MessageType.BackupDeliver, MessageType.BackupReplicate,
    MessageType.BackupReplicateAck, MessageType.BackupQuery, MessageType.BackupQueryResponse,
    MessageType.BackupConfirmDelivery,
    # The group failover's probes: their loss is what they detect (group_exchange.py).
    MessageType.GroupHubPing, MessageType.GroupHubPong, MessageType.GroupHubUnreachable,
    MessageType.GroupHubHeartbeat,
})  # fmt: skip


class DeliveryStatus(enum.IntEnum):
    """In the order a message moves through; `failed` sorts last but is reached only from below
    Delivered."""

    pending = 0
    sent = 1
    relayed = 2
    delivered = 3
    read = 4
    failed = 5

    def __str__(self) -> str:
        return self.name


@dataclass(slots=True)
class TrackedMessage:
    message_id: str
    peer: NodeId
    msg_type: str
    envelope: Envelope | None  # what to send again (re-signed only to add a relay); dropped once Delivered
    wire: bytes | None  # its exact bytes
    created_s: float
    status: DeliveryStatus = DeliveryStatus.pending
    deadline_s: float | None = None  # when to resend or fail (None: waits for a transmission)
    resends: int = 0
    backed_up_until_s: float | None = None  # held for an offline recipient until then
    relays: tuple[str, ...] = ()  # hex NodeIds it is routed through
    key: int = 0  # its key in the tracker's deadlines
    transport_attempts: int = 0  # of the current transmission (the first send or a resend)
    counted: bool = True  # in the tracker's `unfinished` (not while it waits in the backup store)
    keep_for_offline: bool = True  # kept in the backup store when the recipient is unreachable (else Failed)

    def wakes_at(self) -> float | None:
        if self.finished or self.status is DeliveryStatus.failed:
            return None
        until = self.deadline_s if self.backed_up_until_s is None else self.backed_up_until_s
        oldest = self.created_s + MAX_RECORD_AGE_S
        return oldest if until is None else min(until, oldest)

    @property
    def finished(self) -> bool:
        return self.status >= DeliveryStatus.delivered


class DeliveryTracker:
    def __init__(self, *, max_records: int = 100_000) -> None:
        self.max_records = max_records
        self.records: dict[str, TrackedMessage] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()  # id -> when it finished
        self.unfinished = 0
        self._deadlines = Deadlines()
        self._by_key: dict[int, str] = {}
        self._next_key = 0

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.records

    def get(self, message_id: str) -> TrackedMessage | None:
        return self.records.get(message_id)

    def track(self, record: TrackedMessage) -> None:
        self._next_key += 1
        record.key = self._next_key
        self._by_key[record.key] = record.message_id
        self.records[record.message_id] = record
        self.unfinished += 1
        self._schedule(record)

    def _schedule(self, record: TrackedMessage) -> None:
        self._deadlines.set(record.key, record.wakes_at())

    def advance(self, message_id: str, status: DeliveryStatus, now: float) -> TrackedMessage | None:
        """Move a message forward to `status`; the record when it moved, None when it could not
        (unknown, or not a step forward, or Failed after Delivered)."""
        record = self.records.get(message_id)
        if record is None or status <= record.status:
            return None
        if record.status is DeliveryStatus.failed:
            return None  # a failed message stays failed: an ACK after that is counted, not applied
        if status is DeliveryStatus.failed and record.finished:
            return None
        was_finished = record.finished
        record.status = status
        if status >= DeliveryStatus.delivered:
            record.wire = record.envelope = None
            record.deadline_s = None
            record.backed_up_until_s = None
        if not was_finished and (record.finished or status is DeliveryStatus.failed):
            if record.counted:
                record.counted = False
                self.unfinished -= 1
            self._finished[message_id] = now
            while len(self._finished) > self.max_records:
                old, _ = self._finished.popitem(last=False)
                self._forget(old)
        self._schedule(record)
        return record

    def _forget(self, message_id: str) -> None:
        record = self.records.pop(message_id, None)
        if record is not None:
            self._by_key.pop(record.key, None)
            self._deadlines.set(record.key, None)

    def sent(self, message_id: str, now: float) -> TrackedMessage | None:
        """A transmission of the message left: its delivery deadline starts (again)."""
        record = self.records.get(message_id)
        if record is None or record.finished or record.status is DeliveryStatus.failed:
            return None
        record.deadline_s = now + DELIVERY_DEADLINE_S
        record.backed_up_until_s = None
        if not record.counted:
            record.counted = True
            self.unfinished += 1
        self._schedule(record)
        return self.advance(message_id, DeliveryStatus.sent, now)

    def backed_up(self, message_id: str, until_s: float) -> None:
        """The message waits in the backup store until `until_s`: it no longer counts in
        `unfinished` (the store's capacity bounds it)."""
        record = self.records.get(message_id)
        if record is not None and not record.finished and record.status is not DeliveryStatus.failed:
            record.backed_up_until_s = until_s
            record.deadline_s = None
            if record.counted:
                record.counted = False
                self.unfinished -= 1
            self._schedule(record)

    def resent(self, record: TrackedMessage) -> None:
        """A resend is under way: its deadline waits for the transmission."""
        record.resends += 1
        record.deadline_s = None
        self._schedule(record)

    def due(self, now: float) -> list[TrackedMessage]:
        """Unfinished messages whose deadline (or backup, or 24 h) has run out: to resend or fail."""
        due = []
        for key in self._deadlines.pop_due(now):
            message_id = self._by_key.get(key)
            record = None if message_id is None else self.records.get(message_id)
            if record is not None and record.wakes_at() is not None:
                due.append(record)
        return due

    def next_deadline(self) -> float | None:
        return self._deadlines.earliest()

    def forget_finished(self, now: float) -> None:
        while self._finished:
            message_id, finished_s = next(iter(self._finished.items()))
            if now - finished_s < FINISHED_RECORD_TTL_S:
                break
            del self._finished[message_id]
            self._forget(message_id)
