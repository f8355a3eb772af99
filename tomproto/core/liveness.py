"""Which peers are alive, from when we last heard from them.

Rules it enforces (spec/protocol.md §5):
- any envelope from a peer (and a transport connection with it) refreshes it: it is Online;
- checked every 5 s: silent for 20 s → Stale, 45 s → Offline, 135 s → forgotten;
- every change of status is a fact the runtime reports (`PeerStatusChanged`); a peer coming back
  Online is what sends it the messages held for it;
- the table is bounded (`max_peers`): past it, the peer silent the longest is forgotten first.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from tomproto.identity import NodeId

__all__ = [
    "PeerStatus",
    "PeerStatusChanged",
    "Liveness",
    "LIVENESS_TICK_S",
    "STALE_AFTER_S",
    "OFFLINE_AFTER_S",
    "FORGET_AFTER_S",
]

LIVENESS_TICK_S = 5.0
STALE_AFTER_S = 20.0
OFFLINE_AFTER_S = 45.0
FORGET_AFTER_S = 135.0


class PeerStatus(enum.StrEnum):
    online = "online"
    stale = "stale"
    offline = "offline"
    forgotten = "forgotten"


@dataclass(frozen=True, slots=True)
class PeerStatusChanged:
    peer: NodeId
    status: PeerStatus
    previous: PeerStatus | None  # None: a peer we did not know
    at_s: float


class Liveness:
    def __init__(self, now: float, *, max_peers: int = 10_000) -> None:
        self.max_peers = max_peers
        # peer -> (last heard, status); ordered by last heard, oldest first.
        self._peers: OrderedDict[NodeId, tuple[float, PeerStatus]] = OrderedDict()
        self._next_tick = now + LIVENESS_TICK_S

    def __len__(self) -> int:
        return len(self._peers)

    def status(self, peer: NodeId) -> PeerStatus | None:
        entry = self._peers.get(peer)
        return None if entry is None else entry[1]

    def last_heard(self, peer: NodeId) -> float | None:
        entry = self._peers.get(peer)
        return None if entry is None else entry[0]

    def online(self) -> list[NodeId]:
        """Online peers, the most recently heard first."""
        return [peer for peer, (_, status) in reversed(self._peers.items()) if status is PeerStatus.online]

    def heard_from(self, peer: NodeId, now: float) -> PeerStatusChanged | None:
        entry = self._peers.pop(peer, None)
        self._peers[peer] = (now, PeerStatus.online)
        changed = None
        if entry is None or entry[1] is not PeerStatus.online:
            changed = PeerStatusChanged(peer, PeerStatus.online, None if entry is None else entry[1], now)
        if len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        return changed

    def next_deadline(self) -> float:
        return self._next_tick

    def tick(self, now: float) -> list[PeerStatusChanged]:
        """The status changes due by `now` (nothing happens before the tick is due)."""
        if now < self._next_tick:
            return []
        self._next_tick = now + LIVENESS_TICK_S
        changes = []
        for peer, (heard_s, status) in list(self._peers.items()):
            silent_s = now - heard_s
            if silent_s < STALE_AFTER_S:
                break  # ordered by last heard: every later peer was heard more recently
            if silent_s >= FORGET_AFTER_S:
                new = PeerStatus.forgotten
                del self._peers[peer]
            elif silent_s >= OFFLINE_AFTER_S:
                new = PeerStatus.offline
            else:
                new = PeerStatus.stale
            if new is not status:
                if new is not PeerStatus.forgotten:
                    self._peers[peer] = (heard_s, new)
                changes.append(PeerStatusChanged(peer, new, status, now))
        return changes
