"""Our transmissions: tokens, the queue per next hop, and the transport retries. Part of the runtime.

Rules it enforces (spec/protocol.md §5):
- every envelope handed to the driver carries a token whose outcome (left, or could not leave)
  comes back once; an outcome for an unknown token is ignored;
- at most `max_in_transit_per_peer` of our tracked messages are with the transport per next hop
  at once; the others wait, in the order they were sent (acknowledgements, forwards and backup
  traffic never wait behind them);
- a tracked message gets three transport attempts: at once, +0.5 s, +1 s.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from tomproto.core.delivery import DeliveryStatus, DeliveryTracker, TrackedMessage
from tomproto.core.runtime_events import Purpose, RuntimeOutput, TransmitEnvelope
from tomproto.identity import NodeId
from tomproto.wire.envelope import MessageType

__all__ = ["Outbound", "Transmission", "TRANSPORT_RETRY_DELAYS_S"]

TRANSPORT_RETRY_DELAYS_S = (0.5, 1.0)  # the second and third transport attempts


@dataclass(slots=True)
class Transmission:
    purpose: Purpose
    message_id: str
    next_hop: NodeId


class Outbound:
    def __init__(self, tracker: DeliveryTracker, max_in_transit_per_peer: int) -> None:
        self.tracker = tracker
        self.max_in_transit_per_peer = max_in_transit_per_peer
        self._transmissions: dict[int, Transmission] = {}
        self._next_token = 0
        self._queued: dict[NodeId, deque[str]] = {}
        self._in_transit: Counter[NodeId] = Counter()
        self._retries: list[tuple[float, str]] = []

    def transmit(
        self, hop: NodeId, wire: bytes | Callable[[], bytes], message_id: str, msg_type: MessageType,
        purpose: Purpose, out: list[RuntimeOutput],
    ) -> None:  # fmt: skip
        self._next_token += 1
        token = self._next_token
        self._transmissions[token] = Transmission(purpose, message_id, hop)
        out.append(TransmitEnvelope(token, hop, wire, message_id, msg_type, purpose))

    def enqueue(self, record: TrackedMessage, out: list[RuntimeOutput]) -> None:
        hop = next_hop(record)
        self._queued.setdefault(hop, deque()).append(record.message_id)
        self.pump(hop, out)

    def pump(self, hop: NodeId, out: list[RuntimeOutput]) -> None:
        """Hand the transport the messages waiting for `hop`, while it has room."""
        queue = self._queued.get(hop)
        while queue and self._in_transit[hop] < self.max_in_transit_per_peer:
            record = self.tracker.get(queue.popleft())
            if record is None or record.wire is None or record.status is DeliveryStatus.failed:
                continue
            record.transport_attempts += 1
            self._in_transit[hop] += 1
            self.transmit(hop, record.wire, record.message_id, MessageType(record.msg_type), Purpose.message, out)
        if queue is not None and not queue:
            del self._queued[hop]

    def outcome(self, token: int) -> Transmission | None:
        """The transmission `token` is over (left or failed): what it was, once."""
        tx = self._transmissions.pop(token, None)
        if tx is not None and tx.purpose is Purpose.message:
            self._in_transit[tx.next_hop] -= 1
            if not self._in_transit[tx.next_hop]:
                del self._in_transit[tx.next_hop]
        return tx

    def retry_later(self, record: TrackedMessage, now: float) -> bool:
        """Schedule the next transport attempt; False when all three were used."""
        if record.transport_attempts > len(TRANSPORT_RETRY_DELAYS_S):
            return False
        delay = TRANSPORT_RETRY_DELAYS_S[record.transport_attempts - 1]
        heapq.heappush(self._retries, (now + delay, record.message_id))
        return True

    def retries_due(self, now: float, out: list[RuntimeOutput]) -> None:
        while self._retries and self._retries[0][0] <= now:
            _, message_id = heapq.heappop(self._retries)
            record = self.tracker.get(message_id)
            if record is not None and record.wire is not None and record.status is not DeliveryStatus.failed:
                self.enqueue(record, out)

    def next_deadline(self) -> float | None:
        return self._retries[0][0] if self._retries else None

    def waiting(self) -> dict[NodeId, tuple[int, int]]:
        """Per next hop: messages with the transport, and messages queued behind them."""
        hops = set(self._in_transit) | set(self._queued)
        return {hop: (self._in_transit[hop], len(self._queued.get(hop, ()))) for hop in hops}


def next_hop(record: TrackedMessage) -> NodeId:
    return NodeId(bytes.fromhex(record.relays[0])) if record.relays else record.peer
