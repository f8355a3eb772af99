"""Memory of what was already seen, so that nothing reaches the application twice.

Rules it enforces (spec/protocol.md §5, §7):
- a delivered message is remembered by `id:from` until 24 h after its timestamp (10 minutes at
  least): as long as a backup of it could still be delivered, by its sender or by any peer
  that saw it and wraps it in a BackupDeliver; a direct envelope must be fresh (minutes) anyway;
- past capacity, the table says how far back it has forgotten (`forgotten_until`), so that an
  older message can be refused as stale instead of delivered again;
- an ACK or read receipt is applied once per `original_id:from:type` for 5 minutes;
- encrypted payloads are remembered by nonce (the last 50 000), so a sender that reuses one
  under a new id is caught;
- every table is bounded: past its capacity the entry closest to expiring goes first.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

__all__ = ["ExpiringSet", "RecentSet", "Key"]


Key = str | bytes  # one kind per table: the heap orders entries of equal expiry by key


class ExpiringSet:
    """Keys, each until its own expiry time; at most `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._expiry: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []  # lazy: an entry whose expiry moved is skipped
        # The latest expiry of an entry pushed out by capacity: anything that would expire by
        # then may have been forgotten early.
        self.forgotten_until = float("-inf")

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, key: object) -> bool:
        return key in self._expiry

    def contains(self, key: Key, now: float) -> bool:
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > now

    def add(self, key: Key, until: float, now: float) -> None:
        """Remember `key` until `until` (never shortening a longer memory of it)."""
        self.expire(now)
        current = self._expiry.get(key)
        if current is not None and current >= until:
            return
        self._expiry[key] = until
        heapq.heappush(self._heap, (until, key))
        while len(self._expiry) > self.capacity:
            self.forgotten_until = max(self.forgotten_until, self._pop_earliest())

    def expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            self._pop_earliest()

    def next_expiry(self) -> float | None:
        heap = self._heap
        while heap and self._expiry.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _pop_earliest(self) -> float:
        """Forget the entry closest to expiring; its expiry."""
        while self._heap:
            until, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == until:
                del self._expiry[key]
                return until
        return float("-inf")


class RecentSet:
    """The last `capacity` keys seen (least recently seen forgotten first: seeing a key again
    makes it the most recent)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: bytes) -> bool:
        """Remember `key`; False when it was already there."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True
