"""The earliest of many deadlines, in O(log n): one entry per key, changed as often as needed.

A heap with lazy deletion: setting a key's deadline pushes a new entry and the old one is skipped
when it reaches the top, so an endpoint with thousands of connections (a responder under a
handshake flood) finds its next timer without walking them all.
"""

from __future__ import annotations

import heapq

__all__ = ["Deadlines"]


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._current: dict[int, float] = {}  # key -> its live deadline

    def set(self, key: int, deadline: float | None) -> None:
        """`key` is due at `deadline` (None: not at all)."""
        if deadline is None:
            self._current.pop(key, None)
        elif self._current.get(key) != deadline:
            self._current[key] = deadline
            heapq.heappush(self._heap, (deadline, key))

    def earliest(self) -> float | None:
        heap = self._heap
        while heap and self._current.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # a deadline that was moved or dropped since
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[int]:
        """The keys due by `now`, earliest first; they are no longer scheduled."""
        due = []
        while (deadline := self.earliest()) is not None and deadline <= now:
            _, key = heapq.heappop(self._heap)
            del self._current[key]
            due.append(key)
        return due
