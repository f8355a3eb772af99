"""Watching the hub: the shadow's pings and the candidate's timeout (spec/protocol.md §6).

Rules they enforce:
- the shadow pings the hub every `hub_ping_interval_s` (3 s); a pong is missed when a ping
  interval (plus `pong_grace_s`, 0.5 s, for the round trip and its jitter) passes without one,
  so with L the hub's last answered pong, the shadow promotes itself at L + 6.5 s (2 missed), or
  at L + 3.5 s (1 missed) once a member reported the hub unreachable (its message went
  unacknowledged for 3 s), whichever comes first; a pong clears the reports (the hub answers:
  whoever reported had another problem);
- the candidate does not ping: it suspects the hub when a member reports it unreachable or the
  hub's heartbeats stop (2 intervals), and takes over `candidate_timeout_s` (30 s) later unless
  the hub or a new hub is heard from meanwhile (the shadow promoted: its HubMigration reaches us).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tomproto.core.group_settings import GroupSettings
from tomproto.identity import NodeId

__all__ = ["ShadowWatch", "CandidateWatch", "PingDue"]


@dataclass(frozen=True, slots=True)
class PingDue:
    hub: NodeId


class ShadowWatch:
    def __init__(self, hub: NodeId, settings: GroupSettings, now: float) -> None:
        self.hub = hub
        self.settings = settings
        self.last_pong_s = now  # becoming shadow counts as an answer: the hub just told us
        self.next_ping_s = now
        self.reports = 0
        self.missed_reported = 0  # missed pongs already published (HubSuspected)
        self.since_s = now

    def missed_pongs(self, now: float) -> int:
        settings = self.settings
        waited_s = now - self.last_pong_s - settings.pong_grace_s
        return max(0, math.floor(waited_s / settings.hub_ping_interval_s + 1e-9))

    def _missed_by_s(self, count: int) -> float:
        """When `count` pongs will have been missed, if none comes."""
        settings = self.settings
        return self.last_pong_s + settings.pong_grace_s + count * settings.hub_ping_interval_s

    def promotion_due_s(self) -> float:
        settings = self.settings
        needed = settings.missed_pongs_with_report if self.reports else settings.missed_pongs_to_promote
        return self._missed_by_s(needed)

    def next_deadline(self) -> float:
        return min(self.next_ping_s, self.promotion_due_s(), self._missed_by_s(self.missed_reported + 1))

    def pong(self, now: float) -> None:
        self.last_pong_s = now
        self.reports = 0
        self.missed_reported = 0

    def report(self, now: float) -> bool:
        """A member's HubUnreachable; False when ignored: a report says the member waited
        `member_ack_timeout_s` for a hub, so one that comes sooner after we began watching this
        hub was about the one before (a report names no hub)."""
        if now - self.since_s < self.settings.member_ack_timeout_s:
            return False
        self.reports += 1
        return True

    def ping_due(self, now: float) -> bool:
        """Whether a ping is due now (the next one is then scheduled)."""
        if now < self.next_ping_s:
            return False
        interval = self.settings.hub_ping_interval_s
        self.next_ping_s += interval
        if self.next_ping_s <= now:  # we were not woken for a while: no burst of pings
            self.next_ping_s = now + interval
        return True

    def should_promote(self, now: float) -> bool:
        return now >= self.promotion_due_s() - 1e-9


class CandidateWatch:
    def __init__(self, hub: NodeId, settings: GroupSettings, now: float) -> None:
        self.hub = hub
        self.settings = settings
        self.last_heard_s = now
        self.suspected_s: float | None = None

    def heard_from_hub(self, now: float) -> None:
        self.last_heard_s = now
        self.suspected_s = None

    def report(self, now: float) -> bool:
        """A member reported the hub unreachable; True when this starts the suspicion."""
        if self.suspected_s is None:
            self.suspected_s = now
            return True
        return False

    def silence_s(self) -> float:
        return self.last_heard_s + 2 * self.settings.hub_heartbeat_interval_s

    def next_deadline(self) -> float:
        if self.suspected_s is None:
            return self.silence_s()
        return self.suspected_s + self.settings.candidate_timeout_s

    def tick(self, now: float) -> bool:
        """True when the candidate should take over now; starts the suspicion on silence."""
        if self.suspected_s is None and now >= self.silence_s():
            self.suspected_s = self.silence_s()
        return self.suspected_s is not None and now >= self.suspected_s + self.settings.candidate_timeout_s
