"""Rate budgets: a token bucket refills at its rate up to its burst, and a packet-and-byte budget
passes a packet only when both of its buckets can pay for it."""

from __future__ import annotations

from tomproto.core.budget import PacketByteBudget, TokenBucket

NOW = 100.0


def test_a_bucket_starts_full_refills_at_its_rate_and_never_beyond_its_burst() -> None:
    bucket = TokenBucket.full(rate_per_s=10.0, burst=5.0, now=NOW)
    assert [bucket.take(NOW) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(NOW + 0.15) and not bucket.take(NOW + 0.15)  # 0.15 s at 10/s: one token and a half
    assert sum(bucket.take(NOW + 60) for _ in range(10)) == 5  # a long pause saves the burst, no more


def test_a_clock_that_steps_back_mints_no_tokens() -> None:
    bucket = TokenBucket.full(rate_per_s=10.0, burst=1.0, now=NOW)
    assert bucket.take(NOW)
    assert not bucket.take(NOW - 5.0)
    assert not bucket.take(NOW - 4.95)  # measured from where the clock went back to: 0.05 s, half a token


def test_a_packet_passes_only_when_both_packets_and_bytes_are_left() -> None:
    budget = PacketByteBudget.full(packets_per_s=3.0, bytes_per_s=1_000.0, now=NOW)
    assert budget.take(600, NOW)
    assert not budget.take(600, NOW)  # bytes short (400 left), packets not
    assert budget.take(400, NOW) and budget.take(0, NOW)
    assert not budget.take(0, NOW)  # packets short, bytes not


def test_a_refused_packet_takes_from_neither_bucket() -> None:
    budget = PacketByteBudget.full(packets_per_s=2.0, bytes_per_s=1_000.0, now=NOW)
    for _ in range(50):  # oversized packets, refused by bytes: they must not spend the packet budget
        assert not budget.take(5_000, NOW)
    assert budget.take(500, NOW) and budget.take(500, NOW)
    budget = PacketByteBudget.full(packets_per_s=1.0, bytes_per_s=1_000.0, now=NOW)
    assert budget.take(1, NOW)
    for _ in range(50):  # refused by packets: they must not spend the byte budget
        assert not budget.take(100, NOW)
    assert budget.take(999, NOW + 1.0)
