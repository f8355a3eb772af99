"""Watching the hub (tomproto/core/group_failover.py), driven by the watches' own deadlines as the
runtime drives them: the shadow never promotes while pongs come, promotes at L + 2*3 + 0.5 s
without them, sooner (L + 3.5 s, or at the report if later) once a member reports the hub
unreachable, and ignores a report that predates its watch; the candidate takes over 30 s after
a report or after 20 s of hub silence + 30 s, unless the hub is heard from meanwhile."""

from __future__ import annotations

import heapq
import random

import pytest

from tomproto.core.group_failover import CandidateWatch, ShadowWatch
from tomproto.core.group_settings import GroupSettings
from tomproto.identity import Identity

SETTINGS = GroupSettings()
HUB = Identity.from_seed(bytes([1]) * 32).node_id
INTERVAL = SETTINGS.hub_ping_interval_s
GRACE = SETTINGS.pong_grace_s


class ShadowRun:
    """The shadow's side of the engine (groups.py, _slot_timer) on a virtual clock: wake at the
    watch's deadline, promote when due, else ping when due; a live hub's pong comes back after
    `latency()`. Records when the watch promoted (the run stops there)."""

    def __init__(self, watch: ShadowWatch, latency: random.Random | None = None) -> None:
        self.watch = watch
        self.rng = latency or random.Random(1)
        self.now = watch.since_s
        self.hub_alive_until = float("inf")
        self.pongs: list[float] = []  # arrival times, a heap
        self.reports: list[float] = []  # when a member's HubUnreachable arrives, a heap
        self.promoted_at: float | None = None
        self.max_missed = 0

    def latency(self) -> float:
        return 0.020 + self.rng.uniform(0.0, 0.030)  # 20 ms, and up to 30 ms of jitter

    def run_until(self, end_s: float) -> None:
        watch = self.watch
        for _ in range(100_000):  # a deadline that does not move would spin: fail instead
            if self.promoted_at is not None:
                return
            wake = max(self.now, watch.next_deadline())
            kind = "timer"
            if self.pongs and self.pongs[0] < wake:
                wake, kind = self.pongs[0], "pong"
            if self.reports and self.reports[0] < wake:
                wake, kind = self.reports[0], "report"
            if wake > end_s:
                return
            self.now = wake
            if kind == "pong":
                heapq.heappop(self.pongs)
                watch.pong(wake)
                continue
            if kind == "report":
                heapq.heappop(self.reports)
                watch.report(wake)
                continue
            missed = watch.missed_pongs(wake)
            self.max_missed = max(self.max_missed, missed)
            if missed > watch.missed_reported:  # the engine publishes it (HubSuspected) once
                watch.missed_reported = missed
            if watch.should_promote(wake):
                self.promoted_at = wake
                return
            if watch.ping_due(wake) and wake <= self.hub_alive_until:
                heapq.heappush(self.pongs, wake + self.latency())
        raise AssertionError("the watch's deadline did not move")


def test_with_pongs_every_ping_the_shadow_never_promotes() -> None:
    for seed in range(3):
        run = ShadowRun(ShadowWatch(HUB, SETTINGS, 0.0), random.Random(seed))
        run.run_until(600.0)  # 10 minutes of virtual time
        assert run.promoted_at is None
        assert run.max_missed == 0
        assert run.watch.last_pong_s > 600.0 - INTERVAL - 0.1  # pongs came all along


def test_without_pongs_the_shadow_promotes_at_the_last_pong_plus_two_intervals_and_the_grace() -> None:
    run = ShadowRun(ShadowWatch(HUB, SETTINGS, 0.0))
    run.hub_alive_until = 30.0  # the hub answers its last ping at 30 s
    run.run_until(120.0)
    last_pong = run.watch.last_pong_s
    assert 30.0 < last_pong < 30.1
    assert run.promoted_at == pytest.approx(last_pong + 2 * INTERVAL + GRACE)
    assert run.watch.reports == 0


def test_a_watch_that_never_heard_a_pong_promotes_from_its_start() -> None:
    run = ShadowRun(ShadowWatch(HUB, SETTINGS, 100.0))
    run.hub_alive_until = 0.0  # dead before we began watching
    run.run_until(200.0)
    assert run.promoted_at == pytest.approx(100.0 + 2 * INTERVAL + GRACE)


@pytest.mark.parametrize("report_after_last_pong_s", [0.5, 2.0, 3.4, 3.5, 4.2, 5.9])
def test_with_a_report_the_shadow_promotes_at_the_report_or_at_one_missed_pong(report_after_last_pong_s: float) -> None:
    run = ShadowRun(ShadowWatch(HUB, SETTINGS, 0.0))
    run.hub_alive_until = 30.0
    run.run_until(30.06)  # the last pong is in
    last_pong = run.watch.last_pong_s
    assert run.pongs == [] and 30.0 < last_pong <= 30.06
    report_at = last_pong + report_after_last_pong_s
    heapq.heappush(run.reports, report_at)
    run.run_until(120.0)
    assert run.watch.reports == 1
    assert run.promoted_at == pytest.approx(max(report_at, last_pong + INTERVAL + GRACE))


def test_a_pong_clears_an_earlier_report() -> None:
    watch = ShadowWatch(HUB, SETTINGS, 0.0)
    assert watch.report(10.0)
    watch.pong(10.5)
    assert watch.reports == 0
    assert watch.promotion_due_s() == pytest.approx(10.5 + 2 * INTERVAL + GRACE)


def test_a_report_sooner_than_the_member_ack_timeout_after_the_watch_began_is_ignored() -> None:
    watch = ShadowWatch(HUB, SETTINGS, 50.0)
    assert not watch.report(50.0 + SETTINGS.member_ack_timeout_s - 0.01)
    assert watch.reports == 0
    assert watch.promotion_due_s() == pytest.approx(50.0 + 2 * INTERVAL + GRACE)  # no fast promotion
    assert not watch.should_promote(50.0 + INTERVAL + GRACE)
    assert watch.report(50.0 + SETTINGS.member_ack_timeout_s)
    assert watch.should_promote(50.0 + INTERVAL + GRACE)


def test_a_late_wake_sends_one_ping_not_a_burst() -> None:
    watch = ShadowWatch(HUB, SETTINGS, 0.0)
    assert watch.ping_due(0.0)
    assert not watch.ping_due(INTERVAL - 0.01)
    assert watch.ping_due(10 * INTERVAL)
    assert not watch.ping_due(10 * INTERVAL)
    assert watch.next_ping_s == pytest.approx(11 * INTERVAL)


# -- the candidate ------------------------------------------------------------------------------


def run_candidate(watch: CandidateWatch, end_s: float, heard_at: tuple[float, ...] = (),
                  reports_at: tuple[float, ...] = ()) -> float | None:  # fmt: skip
    """Drive the candidate by its deadlines; heard_at: the hub (or a new hub) is heard from."""
    events = sorted([(t, "heard") for t in heard_at] + [(t, "report") for t in reports_at])
    now = watch.last_heard_s
    for _ in range(100_000):
        wake = max(now, watch.next_deadline())
        if events and events[0][0] < wake:
            now, kind = events.pop(0)
            if kind == "heard":
                watch.heard_from_hub(now)
            else:
                watch.report(now)
            continue
        if wake > end_s:
            return None
        now = wake
        if watch.tick(now):
            return now
    raise AssertionError("the candidate's deadline did not move")


def test_the_candidate_takes_over_30_s_after_a_report() -> None:
    watch = CandidateWatch(HUB, SETTINGS, 0.0)
    assert run_candidate(watch, 200.0, reports_at=(5.0, 12.0)) == pytest.approx(5.0 + SETTINGS.candidate_timeout_s)


def test_the_candidate_takes_over_after_20_s_of_hub_silence_and_30_s_more() -> None:
    watch = CandidateWatch(HUB, SETTINGS, 0.0)
    silence = 2 * SETTINGS.hub_heartbeat_interval_s
    assert silence == 20.0
    assert run_candidate(watch, 200.0, heard_at=(7.0,)) == pytest.approx(7.0 + silence + SETTINGS.candidate_timeout_s)


def test_the_candidate_does_not_take_over_when_it_hears_from_the_hub_meanwhile() -> None:
    watch = CandidateWatch(HUB, SETTINGS, 0.0)
    heartbeats = tuple(float(t) for t in range(10, 600, 10))
    assert run_candidate(watch, 600.0, heard_at=(*heartbeats, 30.0), reports_at=(5.0,)) is None
    watch = CandidateWatch(HUB, SETTINGS, 0.0)
    # Suspected on silence at 20 s; the hub (or the promoted shadow) is heard at 45 s: no takeover at 50 s.
    assert run_candidate(watch, 70.0, heard_at=(45.0,)) is None
    assert watch.suspected_s == 45.0 + 20.0  # silence again since 45 s: a takeover at 95 s at the soonest
