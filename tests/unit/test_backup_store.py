"""The backup store (tomproto/core/backup.py): entries by recipient, at most `capacity` of them
with the one closest to expiring evicted first, gone at their time. The exchange around it, through
runtimes, is in test_runtime_backup.py."""

from __future__ import annotations

from tomproto.core.backup import BackupEntry, BackupStore
from tomproto.identity import NodeId

ALICE = NodeId(bytes([1]) * 32)
BOB = NodeId(bytes([2]) * 32)
CAROL = NodeId(bytes([3]) * 32)


def entry(message_id: str, recipient: NodeId, expires_s: float, next_attempt_s: float = 5.0) -> BackupEntry:
    return BackupEntry(
        message_id, recipient, ALICE, b"wire-" + message_id.encode(), expires_s, int(expires_s * 1000),
        replica=False, next_attempt_s=next_attempt_s,
    )  # fmt: skip


def test_entries_are_found_by_recipient_and_removed_one_by_one() -> None:
    store = BackupStore()
    for item in (entry("m2", BOB, 100.0), entry("m1", BOB, 200.0), entry("m3", CAROL, 100.0)):
        assert store.add(item) == []
    assert [e.message_id for e in store.for_recipient(BOB)] == ["m1", "m2"]
    assert store.remove("m1") is not None and store.remove("m1") is None
    assert [e.message_id for e in store.for_recipient(BOB)] == ["m2"]
    store.remove("m2")
    assert store.recipients() == [CAROL]


def test_the_same_message_twice_is_one_entry_with_the_later_expiry() -> None:
    store = BackupStore()
    store.add(entry("m", BOB, 100.0))
    assert store.add(entry("m", BOB, 300.0)) == []
    store.add(entry("m", BOB, 50.0))
    assert len(store) == 1
    assert store.get("m").expires_s == 300.0  # type: ignore[union-attr]


def test_a_full_store_evicts_the_entry_closest_to_expiring() -> None:
    store = BackupStore(capacity=3)
    store.add(entry("late", BOB, 900.0))
    store.add(entry("soon", BOB, 100.0))
    store.add(entry("middle", CAROL, 500.0))
    evicted = store.add(entry("new", CAROL, 600.0))
    assert [e.message_id for e in evicted] == ["soon"]
    assert len(store) == 3 and "soon" not in store and "new" in store


def test_entries_expire_at_their_time() -> None:
    store = BackupStore()
    store.add(entry("a", BOB, 100.0, next_attempt_s=1_000.0))
    store.add(entry("b", BOB, 200.0, next_attempt_s=1_000.0))
    assert store.next_deadline() == 100.0
    assert store.expired(99.9) == []
    assert [e.message_id for e in store.expired(100.0)] == ["a"]
    assert "a" not in store and store.next_deadline() == 200.0


def test_the_next_deadline_is_the_earliest_expiry_or_attempt() -> None:
    store = BackupStore()
    item = entry("a", BOB, 100.0, next_attempt_s=5.0)
    store.add(item)
    assert store.next_deadline() == 5.0
    assert store.due_attempts(5.0) == [item]
    store.schedule(item, 15.0)
    assert store.next_deadline() == 15.0 and store.due_attempts(10.0) == []
    store.remove("a")
    assert store.next_deadline() is None
