"""Anti-spam: a token bucket per sender, and explicit budgets for the peers we agreed to serve.

Rules it enforces (spec/protocol.md §5, ROADMAP):
- an anonymous sender gets `10 + 40*s/(s+10)` envelopes a second (s: its reputation score, 0
  until roles and reputation exist), bursts of twice that; Ack, Heartbeat and ReadReceipt are
  exempt; a throttled envelope is dropped and counted, never a ban: the bucket refills;
- a peer we granted a budget (a campaign a responder serves, the responder a campaign measures)
  is held to that budget instead, until the grant ends: a measurement is never distorted by the
  anonymous bucket, and a grant is never unlimited;
- the table of anonymous buckets is bounded; a bucket back to full is forgotten without changing
  any answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from tomproto.core.budget import SourceBudgets, TokenBucket
from tomproto.identity import NodeId
from tomproto.wire.envelope import MessageType

__all__ = ["EXEMPT_TYPES", "anonymous_rate_per_s", "Grant", "SpamGuard"]

EXEMPT_TYPES = frozenset({MessageType.Ack, MessageType.Heartbeat, MessageType.ReadReceipt})


def anonymous_rate_per_s(score: float = 0.0) -> float:
    return 10.0 + 40.0 * score / (score + 10.0)


@dataclass(slots=True)
class Grant:
    bucket: TokenBucket
    until_s: float


class SpamGuard:
    def __init__(self, *, max_senders: int = 10_000, max_grants: int = 1024) -> None:
        rate = anonymous_rate_per_s()
        self.anonymous = SourceBudgets(rate, 2 * rate, max_senders)
        self.max_grants = max_grants
        self._grants: dict[NodeId, Grant] = {}

    def grant(self, peer: NodeId, rate_per_s: float, burst: float, until_s: float, now: float) -> bool:
        """Hold `peer` to this budget until `until_s`; False when the table of grants is full."""
        self._drop_ended(now)
        if peer not in self._grants and len(self._grants) >= self.max_grants:
            return False
        self._grants[peer] = Grant(TokenBucket.full(rate_per_s, burst, now), until_s)
        return True

    def revoke(self, peer: NodeId) -> None:
        self._grants.pop(peer, None)

    def granted(self, peer: NodeId, now: float) -> Grant | None:
        grant = self._grants.get(peer)
        if grant is not None and grant.until_s <= now:
            del self._grants[peer]
            return None
        return grant

    def admit(self, sender: NodeId, msg_type: MessageType, now: float) -> bool:
        """Whether an envelope of `msg_type` from `sender` may pass now (it is then charged)."""
        if msg_type in EXEMPT_TYPES:
            return True
        grant = self.granted(sender, now)
        if grant is not None:
            return grant.bucket.take(now)
        return self.anonymous.take(sender.hex, now)

    def _drop_ended(self, now: float) -> None:
        for peer in [peer for peer, grant in self._grants.items() if grant.until_s <= now]:
            del self._grants[peer]
