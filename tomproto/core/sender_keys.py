"""Sender keys of one group: ours by epoch, and the other members' (spec/protocol.md §6).

Rules it enforces:
- our key is 32 random bytes per epoch (epochs count from 1); it is rotated when a member leaves
  or is removed, after 24 h, or after 10 000 messages, and a new epoch is given only to the
  members of that moment: a member removed before a rotation holds no key for what follows;
- a member's newer epoch replaces the older one, which stays valid for 5 minutes (messages in
  flight when it rotated still open); an older epoch than the current one is never installed;
- keys are only ever accepted from a distribution signed by their owner (checked by the caller:
  the envelope's signer is the key's sender).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tomproto.crypto.group_keys import SENDER_KEY_BYTES

__all__ = ["SenderKeys", "OwnKey"]


@dataclass(slots=True)
class OwnKey:
    epoch: int
    key: bytes
    created_s: float
    messages: int = 0


@dataclass(slots=True)
class _PeerKeys:
    current: int
    keys: dict[int, bytes] = field(default_factory=dict)
    previous_until_s: dict[int, float] = field(default_factory=dict)  # superseded epochs, valid until


class SenderKeys:
    def __init__(self, now: float, random_bytes: Callable[[int], bytes]) -> None:
        self._random_bytes = random_bytes
        self.own = OwnKey(1, random_bytes(SENDER_KEY_BYTES), now)
        self._peers: dict[str, _PeerKeys] = {}

    def rotate(self, now: float) -> OwnKey:
        self.own = OwnKey(self.own.epoch + 1, self._random_bytes(SENDER_KEY_BYTES), now)
        return self.own

    def rotation_due(self, now: float, after_s: float, after_messages: int) -> bool:
        own = self.own
        return now - own.created_s >= after_s or own.messages >= after_messages

    def learn(self, sender: str, epoch: int, key: bytes, now: float, grace_s: float) -> bool:
        """Install `sender`'s key of `epoch`; False when it is older than the one we hold."""
        if len(key) != SENDER_KEY_BYTES:
            return False
        peer = self._peers.get(sender)
        if peer is None:
            self._peers[sender] = _PeerKeys(epoch, {epoch: key})
            return True
        if epoch < peer.current:
            return False
        if epoch > peer.current:
            peer.previous_until_s = {peer.current: now + grace_s}  # only the one before stays
            peer.keys = {peer.current: peer.keys[peer.current]}
            peer.current = epoch
        peer.keys[epoch] = key
        return True

    def key_for(self, sender: str, epoch: int, now: float) -> bytes | None:
        peer = self._peers.get(sender)
        if peer is None:
            return None
        if epoch == peer.current:
            return peer.keys.get(epoch)
        until = peer.previous_until_s.get(epoch)
        if until is None or until <= now:
            return None
        return peer.keys.get(epoch)

    def forget(self, sender: str) -> None:
        self._peers.pop(sender, None)

    def known_epoch(self, sender: str) -> int | None:
        peer = self._peers.get(sender)
        return None if peer is None else peer.current
