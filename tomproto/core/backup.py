"""The backup store: messages held for recipients that are offline, ours and other peers'.

Rules it enforces (spec/protocol.md §7):
- an entry lives min(requested, 24 h) and no longer; at most `capacity` (10 000) entries, the one
  closest to expiring evicted first (to keep one of ours: a replica is refused when full);
- an entry is the recipient's original envelope, byte for byte: re-delivery keeps the original
  message id, so the recipient's dedup holds across every holder;
- an entry goes once the recipient confirms delivery (or, for our own message, ACKs it);
- an entry we hold for another sender is a replica; ours remembers which peers hold replicas
  (5 at most), so delivery does not depend on the sender staying online.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from tomproto.identity import NodeId

__all__ = ["BackupEntry", "BackupStore", "MAX_BACKUP_TTL_S", "MAX_BACKUP_ENTRIES", "MAX_REPLICAS"]

MAX_BACKUP_TTL_S = 24 * 3600.0
MAX_BACKUP_ENTRIES = 10_000
MAX_REPLICAS = 5


@dataclass(slots=True)
class BackupEntry:
    message_id: str
    recipient: NodeId
    sender: NodeId
    wire: bytes  # the original signed envelope
    expires_s: float  # on the monotonic clock
    expires_at_ms: int  # the same instant in Unix ms, as it travels in replicas
    replica: bool  # held for another sender
    replicated_to: set[NodeId] = field(default_factory=set)  # holders that confirmed a replica
    asked: set[NodeId] = field(default_factory=set)  # holders asked to keep one
    next_attempt_s: float = 0.0  # the next try to deliver it
    attempts: int = 0
    last_attempt_s: float = float("-inf")  # the last try


class BackupStore:
    def __init__(self, *, capacity: int = MAX_BACKUP_ENTRIES) -> None:
        self.capacity = capacity
        self._entries: dict[str, BackupEntry] = {}
        self._by_recipient: dict[NodeId, set[str]] = {}
        self._replicas_by_sender: dict[NodeId, int] = {}
        self._next_deadline: float | None = None
        self._deadline_known = True  # False: recompute (a walk over the entries) when asked

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._entries

    def __iter__(self) -> Iterator[BackupEntry]:
        return iter(list(self._entries.values()))

    def get(self, message_id: str) -> BackupEntry | None:
        return self._entries.get(message_id)

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.capacity

    def replicas_from(self, sender: NodeId) -> int:
        """How many replicas we hold for `sender`."""
        return self._replicas_by_sender.get(sender, 0)

    def add(self, entry: BackupEntry) -> list[BackupEntry]:
        """Keep `entry` (a copy we already hold is kept, with the later expiry); the entries
        evicted to make room, closest to expiring first."""
        held = self._entries.get(entry.message_id)
        if held is not None:
            held.expires_s = max(held.expires_s, entry.expires_s)
            return []
        evicted = []
        while len(self._entries) >= self.capacity:
            oldest = min(self._entries.values(), key=lambda e: e.expires_s)
            evicted.append(oldest)
            self.remove(oldest.message_id)
        self._entries[entry.message_id] = entry
        self._by_recipient.setdefault(entry.recipient, set()).add(entry.message_id)
        if entry.replica:
            self._replicas_by_sender[entry.sender] = self.replicas_from(entry.sender) + 1
        self._deadline_known = False
        return evicted

    def schedule(self, entry: BackupEntry, next_attempt_s: float) -> None:
        """When to try delivering `entry` next."""
        entry.next_attempt_s = next_attempt_s
        self._deadline_known = False

    def remove(self, message_id: str) -> BackupEntry | None:
        entry = self._entries.pop(message_id, None)
        if entry is not None:
            self._deadline_known = False
            if entry.replica:
                count = self._replicas_by_sender[entry.sender] - 1
                if count:
                    self._replicas_by_sender[entry.sender] = count
                else:
                    del self._replicas_by_sender[entry.sender]
            ids = self._by_recipient.get(entry.recipient)
            if ids is not None:
                ids.discard(message_id)
                if not ids:
                    del self._by_recipient[entry.recipient]
        return entry

    def for_recipient(self, recipient: NodeId) -> list[BackupEntry]:
        return [self._entries[i] for i in sorted(self._by_recipient.get(recipient, ()))]

    def recipients(self) -> list[NodeId]:
        return list(self._by_recipient)

    def expired(self, now: float) -> list[BackupEntry]:
        """Remove and return the entries whose time is up."""
        gone = [entry for entry in self._entries.values() if entry.expires_s <= now]
        for entry in gone:
            self.remove(entry.message_id)
        return gone

    def due_attempts(self, now: float) -> list[BackupEntry]:
        """Entries whose next delivery attempt is due by `now`."""
        return [entry for entry in self._entries.values() if entry.next_attempt_s <= now]

    def next_deadline(self) -> float | None:
        if not self._deadline_known:
            times = (min(entry.expires_s, entry.next_attempt_s) for entry in self._entries.values())
            self._next_deadline = min(times, default=None)
            self._deadline_known = True
        return self._next_deadline
