"""The direct-path machine on its own, in virtual time: it punches, switches when an answer proves
an address, keeps the path alive, falls back when it goes silent and tries again from the relay."""

from __future__ import annotations

import itertools

from tomproto.core.direct_path import (
    CALL_ANSWER_S,
    KEEPALIVE_S,
    PUNCH_ROUNDS,
    PUNCH_SPACING_S,
    RETRY_S,
    SILENT_AFTER_S,
    SILENT_GRACE_S,
    CallPeer,
    DirectPath,
    PathEffect,
    PathSwitched,
    SendPunch,
)
from tomproto.core.paths import Path

PEER_PUBLIC = ("203.0.113.9", 40000)
PEER_PRIVATE = ("10.0.0.9", 4433)
T0 = 1000.0


def counter_bytes() -> object:
    numbers = itertools.count(1)
    return lambda size: next(numbers).to_bytes(size, "big")


def relayed(**options: object) -> DirectPath:
    return DirectPath(started_at=T0, random_bytes=counter_bytes(), **options)  # type: ignore[arg-type]


def punches(effects: list[PathEffect]) -> list[SendPunch]:
    return [effect for effect in effects if isinstance(effect, SendPunch)]


def run_until(path: DirectPath, end: float, relay_available: bool = True) -> list[tuple[float, PathEffect]]:
    """Fire the machine's timers up to `end`; every effect with its time."""
    seen: list[tuple[float, PathEffect]] = []
    for _ in range(10_000):
        deadline = path.next_deadline()
        if deadline is None or deadline > end:
            return seen
        seen += [(deadline, effect) for effect in path.handle_timer(deadline, relay_available=relay_available)]
    raise AssertionError("the machine's deadline never moved on")


def switch_to_direct(path: DirectPath, at: float) -> PathSwitched:
    sent = punches(path.start((PEER_PUBLIC, PEER_PRIVATE), at))
    effects = path.answered(sent[0].nonce, PEER_PUBLIC, at + 0.02)
    (switched,) = effects
    assert isinstance(switched, PathSwitched)
    return switched


def test_a_relayed_dialer_asks_the_relay_to_introduce_the_peer_once_established() -> None:
    path = relayed()
    assert path.path is Path.relay
    assert path.established(T0 + 0.05, relay_available=True, dialer=True) == [CallPeer()]
    assert relayed().established(T0, relay_available=True, dialer=False) == []  # the relay tells the listener


def test_a_call_whose_introduction_never_comes_is_repeated_and_an_introduction_stops_that() -> None:
    path = relayed()
    path.established(T0, relay_available=True, dialer=True)
    calls = [round(at - T0, 6) for at, e in run_until(path, T0 + 1.0) if isinstance(e, CallPeer)]
    assert calls == [CALL_ANSWER_S, 3 * CALL_ANSWER_S]
    path.start((PEER_PUBLIC,), T0 + 1.0)
    later = [at for at, e in run_until(path, T0 + 1.0 + RETRY_S) if isinstance(e, CallPeer)]
    assert later == [T0 + 1.0 + RETRY_S]  # introduced: the next call only if punching failed
    assert [e for _, e in run_until(path, T0 + 30, relay_available=False) if isinstance(e, CallPeer)] == []


def test_an_introduction_punches_every_candidate_for_the_rounds_then_stops() -> None:
    path = relayed()
    first = punches(path.start((PEER_PUBLIC, PEER_PRIVATE, PEER_PUBLIC), T0))
    assert [punch.address for punch in first] == [PEER_PUBLIC, PEER_PRIVATE]  # duplicates dropped
    later = [(at, effect) for at, effect in run_until(path, T0 + 2) if isinstance(effect, SendPunch)]
    assert len(first) + len(later) == 2 * PUNCH_ROUNDS
    spacing = [round(PUNCH_SPACING_S * k, 6) for k in range(1, PUNCH_ROUNDS)]
    assert [round(at - T0, 6) for at, _ in later[::2]] == spacing
    assert len({punch.nonce for punch in first} | {effect.nonce for _, effect in later}) == 2 * PUNCH_ROUNDS


def test_an_answer_to_our_nonce_switches_to_direct_with_its_round_trip() -> None:
    path = relayed()
    switched = switch_to_direct(path, T0 + 0.5)
    assert (switched.previous, switched.current, switched.address) == (Path.relay, Path.direct, PEER_PUBLIC)
    assert abs(switched.path_rtt_s - 0.02) < 1e-9  # type: ignore[operator]
    assert abs(switched.time_to_direct_s - 0.52) < 1e-9  # type: ignore[operator]
    assert path.is_direct and path.address == PEER_PUBLIC
    # No more punch rounds once direct: only keep-alives, one a second, to the direct address.
    keepalives = [(at, e) for at, e in run_until(path, T0 + 3.0) if isinstance(e, SendPunch)]
    assert [e.address for _, e in keepalives] == [PEER_PUBLIC, PEER_PUBLIC]
    assert abs(keepalives[0][0] - (T0 + 0.52 + KEEPALIVE_S)) < 1e-9


def test_an_answer_to_a_nonce_we_never_sent_changes_nothing() -> None:
    path = relayed()
    path.start((PEER_PUBLIC,), T0)
    assert path.answered(b"\xff" * 8, PEER_PUBLIC, T0 + 0.01) == []
    assert path.path is Path.relay


def test_a_silent_direct_path_falls_back_to_the_relay_and_calls_again() -> None:
    path = relayed()
    switch_to_direct(path, T0)  # the answer came at T0 + 0.02; none after it
    effects = run_until(path, T0 + 10)
    fallback = [(at, e) for at, e in effects if isinstance(e, PathSwitched)]
    assert len(fallback) == 1
    at, switched = fallback[0]
    assert switched.current is Path.relay and switched.path_rtt_s is None
    assert abs(at - (T0 + 0.02 + SILENT_AFTER_S + SILENT_GRACE_S)) < 1e-9  # the RTT (20 ms) is below the grace
    calls = [round(when - at, 6) for when, e in effects if isinstance(e, CallPeer)]
    # At once; again while no introduction comes (a lost CALL must not cost RETRY_S); then every RETRY_S.
    assert calls == [0.0, CALL_ANSWER_S, 3 * CALL_ANSWER_S, 7 * CALL_ANSWER_S, 7 * CALL_ANSWER_S + RETRY_S]


def test_a_direct_path_that_keeps_answering_stays_direct() -> None:
    path = relayed()
    switch_to_direct(path, T0)
    for _ in range(20):
        deadline = path.next_deadline()
        assert deadline is not None
        for effect in path.handle_timer(deadline, relay_available=True):
            assert not isinstance(effect, PathSwitched)
            if isinstance(effect, SendPunch):
                path.answered(effect.nonce, effect.address, deadline + 0.01)
    assert path.is_direct


def test_the_peer_is_punched_back_once_per_address_and_introduction() -> None:
    path = relayed()
    path.start((PEER_PUBLIC,), T0)
    back = punches(path.punched_by_peer(("198.51.100.7", 5555), T0 + 0.01))
    assert [punch.address for punch in back] == [("198.51.100.7", 5555)]
    assert path.punched_by_peer(("198.51.100.7", 5555), T0 + 0.02) == []
    path.start((PEER_PUBLIC,), T0 + 1)
    assert len(path.punched_by_peer(("198.51.100.7", 5555), T0 + 1.01)) == 1


def test_a_connection_dialled_at_a_known_address_or_without_punching_is_left_alone() -> None:
    for path in (relayed(direct_address=PEER_PUBLIC), relayed(punch=False)):
        assert path.established(T0, relay_available=True, dialer=True) == []
        assert path.start((PEER_PUBLIC,), T0) == []
        assert path.punched_by_peer(PEER_PUBLIC, T0) == []
        assert path.next_deadline() is None


def test_a_stopped_machine_has_no_deadline_and_answers_nothing() -> None:
    path = relayed()
    sent = punches(path.start((PEER_PUBLIC,), T0))
    path.stop()
    assert path.next_deadline() is None
    assert path.answered(sent[0].nonce, PEER_PUBLIC, T0 + 0.01) == []


def test_two_lost_keepalives_and_a_third_answered_just_in_time_keep_the_path_direct() -> None:
    path = relayed()
    switch_to_direct(path, T0)  # last answer at T0 + 0.02, round trip 20 ms
    keepalives = []
    for _ in range(3):  # the keep-alives at +1, +2 and +3 s after the switch
        deadline = path.next_deadline()
        assert deadline is not None
        effects = path.handle_timer(deadline, relay_available=True)
        keepalives += [(deadline, e) for e in effects if isinstance(e, SendPunch)]
    assert len(keepalives) == 3
    third_sent_at, third = keepalives[2]
    # The first two are lost; the third's answer comes back 30 ms later: after SILENT_AFTER_S
    # since the last answer, but within the round-trip grace.
    answered_at = third_sent_at + 0.03
    for effect in path.handle_timer(answered_at - 1e-6, relay_available=True):
        assert not isinstance(effect, PathSwitched)
    path.answered(third.nonce, third.address, answered_at)
    assert path.is_direct
