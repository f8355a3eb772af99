"""Liveness (tomproto/core/liveness.py): checked every 5 s, Stale at 20 s of silence, Offline at
45 s, forgotten at 135 s; hearing from a peer brings it back Online; the table is bounded."""

from __future__ import annotations

from tomproto.core.liveness import LIVENESS_TICK_S, Liveness, PeerStatus, PeerStatusChanged
from tomproto.identity import NodeId

A = NodeId(bytes([1]) * 32)
B = NodeId(bytes([2]) * 32)
C = NodeId(bytes([3]) * 32)


def run_ticks(liveness: Liveness, until: float) -> list[PeerStatusChanged]:
    """Every tick up to `until`, as a driver calls them (at the deadline it is given)."""
    changes = []
    while liveness.next_deadline() <= until:
        changes += liveness.tick(liveness.next_deadline())
    return changes


def test_a_silent_peer_goes_stale_at_20_s_offline_at_45_s_and_is_forgotten_at_135_s() -> None:
    liveness = Liveness(0.0)
    first = liveness.heard_from(A, 0.0)
    assert first == PeerStatusChanged(A, PeerStatus.online, None, 0.0)
    changes = run_ticks(liveness, 200.0)
    assert [(c.status, c.previous, c.at_s) for c in changes] == [
        (PeerStatus.stale, PeerStatus.online, 20.0),
        (PeerStatus.offline, PeerStatus.stale, 45.0),
        (PeerStatus.forgotten, PeerStatus.offline, 135.0),
    ]
    assert liveness.status(A) is None and len(liveness) == 0


def test_statuses_change_only_on_the_5_s_tick() -> None:
    liveness = Liveness(0.0)
    liveness.heard_from(A, 1.0)  # silent 20 s at 21 s, seen stale at the 25 s tick
    changes = run_ticks(liveness, 24.9)
    assert changes == []
    assert liveness.tick(24.0) == []  # between ticks nothing is checked
    (stale,) = run_ticks(liveness, 25.0)
    assert stale.status is PeerStatus.stale and stale.at_s == 25.0
    assert liveness.next_deadline() == 25.0 + LIVENESS_TICK_S


def test_hearing_from_a_peer_brings_it_back_online() -> None:
    liveness = Liveness(0.0)
    liveness.heard_from(A, 0.0)
    run_ticks(liveness, 50.0)
    assert liveness.status(A) is PeerStatus.offline
    back = liveness.heard_from(A, 52.0)
    assert back == PeerStatusChanged(A, PeerStatus.online, PeerStatus.offline, 52.0)
    assert liveness.heard_from(A, 53.0) is None  # already online: no news
    assert run_ticks(liveness, 70.0) == []  # silent 18 s at the 70 s tick: still online
    assert liveness.online() == [A]


def test_a_forgotten_peer_comes_back_as_a_new_one() -> None:
    liveness = Liveness(0.0)
    liveness.heard_from(A, 0.0)
    run_ticks(liveness, 140.0)
    assert liveness.heard_from(A, 141.0) == PeerStatusChanged(A, PeerStatus.online, None, 141.0)


def test_a_peer_heard_again_is_judged_by_its_latest_message() -> None:
    liveness = Liveness(0.0)
    liveness.heard_from(A, 0.0)
    liveness.heard_from(B, 10.0)
    liveness.heard_from(A, 15.0)  # A is now the most recently heard
    changes = run_ticks(liveness, 30.0)
    assert [(c.peer, c.status) for c in changes] == [(B, PeerStatus.stale)]
    assert liveness.online() == [A]


def test_online_lists_the_most_recently_heard_first() -> None:
    liveness = Liveness(0.0)
    for at_s, peer in ((0.0, A), (1.0, B), (2.0, C)):
        liveness.heard_from(peer, at_s)
    assert liveness.online() == [C, B, A]


def test_the_table_is_bounded_and_forgets_the_peer_silent_the_longest() -> None:
    liveness = Liveness(0.0, max_peers=2)
    liveness.heard_from(A, 0.0)
    liveness.heard_from(B, 1.0)
    liveness.heard_from(A, 2.0)
    liveness.heard_from(C, 3.0)
    assert len(liveness) == 2
    assert liveness.status(B) is None
    assert liveness.status(A) is PeerStatus.online and liveness.status(C) is PeerStatus.online
