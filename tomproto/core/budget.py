"""Rate budgets: one token bucket (the only one in the package), a packet-and-byte budget made
of two of them, and a bounded table of buckets keyed by source.

A source is an IPv4 address or an IPv6 /64 (one subscriber usually holds a whole /64, so keying
by full IPv6 address would give one host 2^64 budgets). Ports are never part of a source: one
host has 64 k of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["PacketByteBudget", "SourceBudgets", "TokenBucket", "source_key"]


def source_key(host: str) -> str:
    """The budget key of an address's host: the IPv4 address itself, or the IPv6 /64."""
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.split("%")[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.packed[:8].hex() + "::/64"


@dataclass(slots=True)
class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; starts full."""

    rate_per_s: float
    burst: float
    tokens: float
    at_s: float

    @classmethod
    def full(cls, rate_per_s: float, burst: float, now: float) -> TokenBucket:
        return cls(rate_per_s, burst, burst, now)

    def refill(self, now: float) -> None:
        elapsed_s = max(0.0, now - self.at_s)  # a clock that steps back never mints tokens
        self.tokens = min(self.burst, self.tokens + elapsed_s * self.rate_per_s)
        self.at_s = now

    def refilled_by(self, now: float) -> bool:
        """Whether the bucket is back to its burst at `now` (nothing changes)."""
        return self.tokens + max(0.0, now - self.at_s) * self.rate_per_s >= self.burst

    def holds(self, now: float, amount: float = 1.0) -> bool:
        """Whether `take(now, amount)` would succeed (nothing is taken)."""
        self.refill(now)
        return self.tokens >= amount

    def take(self, now: float, amount: float = 1.0) -> bool:
        if not self.holds(now, amount):
            return False
        self.tokens -= amount
        return True


@dataclass(slots=True)
class PacketByteBudget:
    """A packet rate and a byte rate, one bucket each. A packet passes only when both buckets hold
    enough for it, and then takes from both; a refused packet takes from neither (else a flood
    of large packets refused by bytes would also spend the packet budget, and the other way)."""

    packets: TokenBucket
    bytes: TokenBucket

    @classmethod
    def full(cls, packets_per_s: float, bytes_per_s: float, now: float) -> PacketByteBudget:
        """Both buckets full, each holding one second's worth."""
        return cls(TokenBucket.full(packets_per_s, packets_per_s, now), TokenBucket.full(bytes_per_s, bytes_per_s, now))

    def take(self, size: int, now: float) -> bool:
        if not (self.packets.holds(now) and self.bytes.holds(now, size)):
            return False
        self.packets.take(now)
        self.bytes.take(now, size)
        return True


class SourceBudgets:
    """One bucket per source, at most `max_sources` of them.

    A source absent from the table has a full bucket, so an entry that has refilled is
    forgotten (pruned) without changing any answer. When the table is full of sources still
    spending, a new source is refused: that only happens under a flood from more sources than
    the table holds, and refusing is the budget's whole point. Pruning walks the table, so it
    runs at most once a second.
    """

    def __init__(self, rate_per_s: float, burst: float, max_sources: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: dict[str, TokenBucket] = {}
        self._pruned_at_s = float("-inf")

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self.prune(now)
                if len(self._buckets) >= self.max_sources:
                    return False
            bucket = self._buckets[source] = TokenBucket.full(self.rate_per_s, self.burst, now)
        return bucket.take(now)

    def prune(self, now: float) -> None:
        if now - self._pruned_at_s < 1.0:
            return
        self._pruned_at_s = now
        for source in [s for s, b in self._buckets.items() if b.refilled_by(now)]:
            del self._buckets[source]
