"""Stateless registration challenges for tom-relay, sans-IO (docs/relay-protocol.md).

    challenge = issued_s (4, big-endian) | HMAC-SHA256(secret, context | socket | host | port
                                                        | node id | issued_s)[:28]

A HELLO costs one HMAC and leaves nothing behind, so a HELLO flood cannot fill a table and
refuse everyone. The REGISTER that answers is checked against the same MAC (cheap, refuses
forged and spoofed ones: the challenge went to the address it names), then against a per-source
budget of signature verifications (an Ed25519 verification costs about 50 µs, so a flood of
REGISTERs from addresses that did receive challenges could burn the CPU), then the signature.
Only a challenge whose registration verified is remembered, until it expires (single use);
that table is bounded by the budget and the lifetime, and refuses when full.

A challenge is dated in whole seconds, rounded down, and its age is measured from that date: a
`ttl_s` of 10 s makes it good for 9 to 10 s after it was issued, never longer.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import Enum

from tomproto.core.budget import SourceBudgets, source_key
from tomproto.relay.protocol import CHALLENGE_NONCE_BYTES

__all__ = ["ChallengeRefusal", "ChallengeSettings", "Challenges"]

_ISSUED = struct.Struct(">I")
_CONTEXT = b"tom-relay-challenge-v1"


class ChallengeRefusal(str, Enum):
    unknown = "unknown_challenge"  # not ours, for another address / NodeId / socket, or tampered
    expired = "expired_challenge"
    spent = "spent_challenge"
    budget = "verification_budget"  # this source has verified too many signatures lately
    full = "spent_table_full"


@dataclass(frozen=True, slots=True)
class ChallengeSettings:
    ttl_s: float = 10.0
    verifications_per_s: float = 10.0  # per source (IPv4 address, IPv6 /64)
    verification_burst: float = 20.0
    max_sources: int = 65_536
    max_spent: int = 100_000


class Challenges:
    def __init__(self, settings: ChallengeSettings, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the challenge secret must have at least 16 bytes")
        self.settings = settings
        self._secret = secret
        self._budgets = SourceBudgets(settings.verifications_per_s, settings.verification_burst, settings.max_sources)
        self._spent: dict[int, set[bytes]] = {}  # by issue second: whole seconds expire at once
        self._spent_count = 0

    @property
    def spent_count(self) -> int:
        return self._spent_count

    def _mac(self, socket_key: bytes, address: tuple[str, int], node_id: bytes, issued: bytes) -> bytes:
        host, port = address[0], address[1]
        message = b"".join((_CONTEXT, socket_key, host.encode(), b"|", str(port).encode(), b"|", node_id, issued))
        return hmac.digest(self._secret, message, hashlib.sha256)[: CHALLENGE_NONCE_BYTES - _ISSUED.size]

    def issue(self, socket_key: bytes, address: tuple[str, int], node_id: bytes, now: float) -> bytes:
        issued = _ISSUED.pack(int(now) & 0xFFFFFFFF)
        return issued + self._mac(socket_key, address, node_id, issued)

    def check(
        self, socket_key: bytes, address: tuple[str, int], node_id: bytes, nonce: bytes, now: float
    ) -> ChallengeRefusal | None:
        """None when `nonce` is a live challenge we gave this (socket, address, NodeId), unspent,
        and this source may afford one more signature verification (which this call spends)."""
        if len(nonce) != CHALLENGE_NONCE_BYTES:
            return ChallengeRefusal.unknown
        issued = nonce[: _ISSUED.size]
        if not hmac.compare_digest(nonce[_ISSUED.size :], self._mac(socket_key, address, node_id, issued)):
            return ChallengeRefusal.unknown
        issued_s = _ISSUED.unpack(issued)[0]
        # Against `now` itself, not its whole seconds: that would add up to a second of life.
        if not 0 <= now - issued_s <= self.settings.ttl_s:
            return ChallengeRefusal.expired
        if nonce in self._spent.get(issued_s, ()):
            return ChallengeRefusal.spent
        if not self._budgets.take(source_key(address[0]), now):
            return ChallengeRefusal.budget
        return None

    def spend(self, nonce: bytes, now: float) -> ChallengeRefusal | None:
        """Remember a challenge whose registration verified, so it cannot be used again."""
        self._expire(now)
        if self._spent_count >= self.settings.max_spent:
            return ChallengeRefusal.full
        issued_s = _ISSUED.unpack(nonce[: _ISSUED.size])[0]
        spent = self._spent.setdefault(issued_s, set())
        if nonce in spent:
            return ChallengeRefusal.spent
        spent.add(nonce)
        self._spent_count += 1
        return None

    def _expire(self, now: float) -> None:
        oldest_live_s = now - self.settings.ttl_s  # check() refuses anything issued before
        # Keys are issue seconds still live, about ttl_s of them: this walk is short.
        for issued_s in [s for s in self._spent if s < oldest_live_s]:
            self._spent_count -= len(self._spent.pop(issued_s))

    def sweep(self, now: float) -> None:
        self._expire(now)
        self._budgets.prune(now)
