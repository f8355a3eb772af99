"""The group protocol's timings and limits (spec/protocol.md §6), and the failover chain election.

Rules it enforces:
- the chain is elected deterministically from the member list, so every node that knows the list
  agrees without a round of messages: shadow = lowest NodeId among the members other than the
  hub, candidate = the next lowest (NodeId order = byte order = hex string order); members the
  hub holds unreachable (a dead hub, a dead shadow) are passed over;
- every timing is the protocol's default and can be changed (the simulation and the campaign
  use the defaults; tests of a single rule may shorten one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tomproto.wire.group import MAX_GROUP_MEMBERS

__all__ = ["GroupSettings", "elect_chain", "GROUP_HISTORY"]

GROUP_HISTORY = 100


@dataclass(frozen=True, slots=True)
class GroupSettings:
    hub_ping_interval_s: float = 3.0  # the shadow pings the hub this often
    missed_pongs_to_promote: int = 2  # a pong is missed when a ping interval passes without one
    missed_pongs_with_report: int = 1  # ... enough when a member reported the hub unreachable
    pong_grace_s: float = 0.5  # how late after its interval a pong may come (the round trip, jitter)
    member_ack_timeout_s: float = 3.0  # no DeliveryAck by then: the member reports the hub
    candidate_timeout_s: float = 30.0  # hub and shadow gone: the candidate waits this, then takes over
    hub_heartbeat_interval_s: float = 10.0  # the hub tells members it is there (and renews grants)
    settle_timeout_s: float = 1.0  # a new hub waits this long at most for members' sequence reports
    delivery_ack_wait_s: float = 2.0  # the hub acknowledges a message once members have it, or by then
    gap_wait_s: float = 2.0  # a member waits this long for a missing sequence number, then syncs
    key_wait_s: float = 10.0  # a message whose sender key has not arrived waits this long
    max_members: int = MAX_GROUP_MEMBERS
    history: int = GROUP_HISTORY  # messages kept for sync, by the hub and by every member
    sender_rate_per_s: float = 5.0  # per sender, per group, checked by the hub
    sender_burst: float = 10.0
    max_past_s: float = 300.0  # a message's sent_at: at most 5 min old...
    max_ahead_s: float = 30.0  # ... and 30 s ahead of the hub's clock
    rotate_after_s: float = 24 * 3600.0
    rotate_after_messages: int = 10_000
    previous_epoch_grace_s: float = 300.0
    invite_ttl_s: float = 24 * 3600.0
    max_groups: int = 64  # groups one node belongs to or hosts
    max_pending: int = 256  # a member's messages not yet acknowledged by the hub
    max_waiting: int = 256  # messages a member holds back (out of order, or waiting for a key)
    dedup_s: float = 24 * 3600.0  # group message ids remembered (nothing lives past 24 h)
    max_dedup: int = 20_000  # ... at most this many per group


def elect_chain(members: Iterable[str], hub: str, passed_over: Iterable[str] = ()) -> tuple[str | None, str | None]:
    """(shadow, candidate) for a group whose hub is `hub`: the two lowest NodeIds (hex) among the
    members, the hub and `passed_over` excluded."""
    skip = set(passed_over) | {hub}
    eligible = sorted(member for member in set(members) if member not in skip)
    shadow = eligible[0] if eligible else None
    candidate = eligible[1] if len(eligible) > 1 else None
    return shadow, candidate
