"""Memory of what was already seen (tomproto/core/dedup.py): every key until its own expiry,
never shortened, bounded by evicting the entry closest to expiring; nonces by recency."""

from __future__ import annotations

from tomproto.core.dedup import ExpiringSet, RecentSet


def test_a_key_is_remembered_until_its_expiry_and_not_at_it() -> None:
    seen = ExpiringSet(capacity=10)
    seen.add("m:a", 600.0, 0.0)
    assert seen.contains("m:a", 599.999)
    assert not seen.contains("m:a", 600.0)
    assert not seen.contains("m:b", 0.0)


def test_a_later_add_never_shortens_a_longer_memory() -> None:
    seen = ExpiringSet(capacity=10)
    seen.add("m:a", 86_400.0, 0.0)  # delivered from a backup: remembered as long as it could live
    seen.add("m:a", 600.0, 1.0)  # the same message again, directly
    assert seen.contains("m:a", 3_600.0)
    seen.add("m:a", 90_000.0, 2.0)  # a longer memory does replace a shorter one
    assert seen.contains("m:a", 89_000.0)
    assert seen.next_expiry() == 90_000.0


def test_expire_drops_what_is_due_and_keeps_the_rest() -> None:
    seen = ExpiringSet(capacity=10)
    for index, until in enumerate((10.0, 20.0, 30.0)):
        seen.add(f"k{index}", until, 0.0)
    seen.expire(20.0)
    assert len(seen) == 1 and "k2" in seen
    assert seen.next_expiry() == 30.0


def test_past_capacity_the_entry_closest_to_expiring_goes_first() -> None:
    seen = ExpiringSet(capacity=3)
    seen.add("long", 1_000.0, 0.0)
    seen.add("short", 50.0, 0.0)
    seen.add("medium", 500.0, 0.0)
    seen.add("newest", 700.0, 1.0)  # over capacity: "short" goes, not the oldest added
    assert len(seen) == 3
    assert "short" not in seen
    assert all(key in seen for key in ("long", "medium", "newest"))


def test_a_flood_of_keys_never_grows_the_table_past_its_capacity() -> None:
    seen = ExpiringSet(capacity=100)
    for index in range(5_000):
        seen.add(str(index), 600.0 + index, index * 0.01)
    assert len(seen) == 100
    assert "4999" in seen and "0" not in seen


def test_a_nonce_seen_before_is_reported_and_a_forgotten_one_is_not() -> None:
    nonces = RecentSet(capacity=3)
    assert nonces.add(b"n1") and nonces.add(b"n2") and nonces.add(b"n3")
    assert not nonces.add(b"n1")  # a replay; it is now the most recent
    assert nonces.add(b"n4")  # pushes out n2, the least recently added
    assert len(nonces) == 3
    assert not nonces.add(b"n1")
    assert nonces.add(b"n2")
