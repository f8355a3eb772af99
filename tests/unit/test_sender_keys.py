"""Sender keys of one group (tomproto/core/sender_keys.py): our epochs count up on rotation, a peer's
newer epoch replaces the older one, which still opens messages for the 5-minute grace and not
after, an older epoch is never installed, and rotation falls due after 24 h or 10 000 messages."""

from __future__ import annotations

import random

from tomproto.core.group_settings import GroupSettings
from tomproto.core.sender_keys import SenderKeys

SETTINGS = GroupSettings()
GRACE_S = SETTINGS.previous_epoch_grace_s
PEER = "ab" * 32
KEY_1 = bytes([1]) * 32
KEY_2 = bytes([2]) * 32
KEY_3 = bytes([3]) * 32


def keys(now: float = 0.0) -> SenderKeys:
    return SenderKeys(now, random.Random(7).randbytes)


def test_our_epochs_count_up_from_one_with_a_fresh_key_each_time() -> None:
    ours = keys()
    seen = [(ours.own.epoch, ours.own.key)]
    for at_s in (10.0, 20.0, 30.0):
        rotated = ours.rotate(at_s)
        assert rotated is ours.own
        assert rotated.created_s == at_s and rotated.messages == 0
        seen.append((rotated.epoch, rotated.key))
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4]
    assert len({key for _, key in seen}) == 4
    assert all(len(key) == 32 for _, key in seen)


def test_a_newer_epoch_replaces_the_older_which_opens_messages_for_the_grace_only() -> None:
    ours = keys()
    assert ours.learn(PEER, 1, KEY_1, 0.0, GRACE_S)
    assert ours.learn(PEER, 2, KEY_2, 100.0, GRACE_S)
    assert ours.known_epoch(PEER) == 2
    assert ours.key_for(PEER, 2, 100.0) == KEY_2
    # Messages sealed under epoch 1 while the peer rotated still open for 5 minutes...
    assert ours.key_for(PEER, 1, 100.0) == KEY_1
    assert ours.key_for(PEER, 1, 100.0 + GRACE_S - 0.001) == KEY_1
    # ... and not after; the current epoch is not bounded by the grace.
    assert ours.key_for(PEER, 1, 100.0 + GRACE_S) is None
    assert ours.key_for(PEER, 2, 100.0 + 10 * GRACE_S) == KEY_2


def test_only_the_epoch_just_before_the_current_one_keeps_its_grace() -> None:
    ours = keys()
    ours.learn(PEER, 1, KEY_1, 0.0, GRACE_S)
    ours.learn(PEER, 2, KEY_2, 10.0, GRACE_S)
    ours.learn(PEER, 3, KEY_3, 20.0, GRACE_S)
    assert ours.key_for(PEER, 1, 20.0) is None
    assert ours.key_for(PEER, 2, 20.0) == KEY_2
    assert ours.key_for(PEER, 3, 20.0) == KEY_3


def test_an_older_epoch_is_never_installed() -> None:
    ours = keys()
    assert ours.learn(PEER, 2, KEY_2, 0.0, GRACE_S)
    assert not ours.learn(PEER, 1, KEY_1, 1.0, GRACE_S)
    assert ours.known_epoch(PEER) == 2
    assert ours.key_for(PEER, 1, 1.0) is None
    # Nor does a replay of the superseded epoch replace the key it had (still in its grace).
    ours.learn(PEER, 3, KEY_3, 2.0, GRACE_S)
    assert not ours.learn(PEER, 2, KEY_1, 3.0, GRACE_S)
    assert ours.key_for(PEER, 2, 3.0) == KEY_2
    assert ours.known_epoch(PEER) == 3


def test_a_key_of_the_wrong_length_is_refused_and_a_forgotten_peer_has_none() -> None:
    ours = keys()
    assert not ours.learn(PEER, 1, bytes(31), 0.0, GRACE_S)
    assert ours.known_epoch(PEER) is None
    ours.learn(PEER, 1, KEY_1, 0.0, GRACE_S)
    ours.forget(PEER)
    assert ours.key_for(PEER, 1, 0.0) is None and ours.known_epoch(PEER) is None


def test_rotation_falls_due_after_24_hours() -> None:
    ours = keys(now=50.0)
    after_s, after_messages = SETTINGS.rotate_after_s, SETTINGS.rotate_after_messages
    assert after_s == 24 * 3600
    assert not ours.rotation_due(50.0 + after_s - 0.001, after_s, after_messages)
    assert ours.rotation_due(50.0 + after_s, after_s, after_messages)
    ours.rotate(50.0 + after_s)
    assert not ours.rotation_due(50.0 + after_s + 1.0, after_s, after_messages)


def test_rotation_falls_due_after_10_000_messages() -> None:
    ours = keys()
    after_s, after_messages = SETTINGS.rotate_after_s, SETTINGS.rotate_after_messages
    assert after_messages == 10_000
    ours.own.messages = 9_999
    assert not ours.rotation_due(1.0, after_s, after_messages)
    ours.own.messages += 1
    assert ours.rotation_due(1.0, after_s, after_messages)
    ours.rotate(1.0)
    assert not ours.rotation_due(1.0, after_s, after_messages)
