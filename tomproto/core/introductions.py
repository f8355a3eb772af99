"""CALL_FROMs that came before their connection was up, held until it is.

The relay introduces both peers at once, so the listener's introduction often arrives while its
side of the handshake is still going. It is kept for at most a handshake's time, at most
MAX_PENDING_INTRODUCTIONS of them: introductions for dials that never complete (or forged ones
from the relay's address) must not fill the table for good.
"""

from __future__ import annotations

from tomproto.core.paths import Address

__all__ = ["Introductions", "MAX_PENDING_INTRODUCTIONS"]

MAX_PENDING_INTRODUCTIONS = 1024


class Introductions:
    def __init__(self, keep_for_s: float) -> None:
        self.keep_for_s = keep_for_s
        self._held: dict[bytes, tuple[tuple[Address, ...], float]] = {}  # NodeId -> (candidates, when)

    def __len__(self) -> int:
        return len(self._held)

    def keep(self, peer: bytes, candidates: tuple[Address, ...], now: float) -> None:
        held = self._held
        if peer not in held and len(held) >= MAX_PENDING_INTRODUCTIONS:
            stale = now - self.keep_for_s
            for key in [key for key, (_, at) in held.items() if at < stale]:
                del held[key]
            if len(held) >= MAX_PENDING_INTRODUCTIONS:
                return
        held[peer] = (candidates, now)

    def take(self, peer: bytes, now: float) -> tuple[Address, ...] | None:
        """The candidates held for `peer`, if still fresh; forgotten either way."""
        entry = self._held.pop(peer, None)
        if entry is None or now - entry[1] > self.keep_for_s:
            return None
        return entry[0]

    def forget(self, peer: bytes) -> None:
        self._held.pop(peer, None)
