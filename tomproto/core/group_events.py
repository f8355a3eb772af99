"""What the group engine asks for (commands) and reports (facts), each fact with its time.

A campaign computes its failover figures from these facts alone: detection (`HubUnreachable
Reported`, `HubSuspected`), promotion (`HubPromoted`, with the last answered pong), migration
(`HubMigrated` at each member), chain restore (`ChainRestored`) and the first message through
the new hub (`FirstMessageThroughNewHub` at each member).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tomproto.identity import NodeId

__all__ = [
    "SendGroupPayload",
    "GroupRefusal",
    "GroupCreatedHere",
    "GroupInvited",
    "GroupJoined",
    "GroupLeft",
    "MemberJoined",
    "MemberLeft",
    "GroupMessageReceived",
    "GroupMessageConfirmed",
    "GroupMessageResent",
    "GroupMessageRefused",
    "GroupMessageUnreadable",
    "GroupGapSkipped",
    "SenderKeyRotated",
    "HubUnreachableReported",
    "HubSuspected",
    "HubPromoted",
    "HubMigrated",
    "HubSteppedDown",
    "ChainRestored",
    "FirstMessageThroughNewHub",
    "GroupEvent",
    "GroupOutput",
]


@dataclass(frozen=True, slots=True)
class SendGroupPayload:
    """Send a group payload (a variant of tomproto.wire.group) to `peer`. A reliable one is a
    tracked, acknowledged message whose outcome comes back as `send_finished(ref, ...)`; an
    unreliable one (pings, pongs, reports, heartbeats: their loss is what they detect) goes once."""

    peer: NodeId
    payload: Any
    reliable: bool
    ref: int | None = None  # for a reliable send whose outcome the engine waits for


class GroupRefusal(enum.StrEnum):
    not_member = "not_member"
    not_hub = "not_hub"  # sent to us as hub, and we are not (or no longer) its hub
    not_from_hub = "not_from_hub"  # a hub's message from a node that is not our hub
    bad_signature = "bad_signature"
    stale = "stale"
    from_the_future = "from_the_future"
    rate_limited = "rate_limited"
    duplicate = "duplicate"
    group_full = "group_full"
    not_invited = "not_invited"
    not_admin = "not_admin"
    unknown_group = "unknown_group"
    malformed = "malformed"
    too_large = "too_large"
    too_many_groups = "too_many_groups"


@dataclass(frozen=True, slots=True)
class GroupCreatedHere:
    """We host a new group as its hub."""

    group_id: str
    name: str
    creator: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupInvited:
    group_id: str
    name: str
    hub: NodeId
    inviter: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupJoined:
    group_id: str
    name: str
    hub: NodeId
    members: int
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupLeft:
    group_id: str
    reason: str  # "left", "kicked", "dissolved"
    at_s: float


@dataclass(frozen=True, slots=True)
class MemberJoined:
    group_id: str
    node: NodeId
    username: str
    at_s: float


@dataclass(frozen=True, slots=True)
class MemberLeft:
    group_id: str
    node: NodeId
    reason: str
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupMessageReceived:
    """A group message for the application: signature checked, opened, once, in hub order."""

    group_id: str
    message_id: str
    sender: NodeId
    username: str
    text: str
    seq: int
    hub: NodeId
    sent_at_ms: int
    encrypted: bool
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupMessageConfirmed:
    """The hub acknowledged one of our messages (DeliveryAck): sequenced and with the members."""

    group_id: str
    message_id: str
    hub: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupMessageResent:
    """One of our messages the old hub never acknowledged went to the new hub."""

    group_id: str
    message_id: str
    hub: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupMessageRefused:
    group_id: str
    sender: NodeId
    reason: GroupRefusal
    detail: str
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupMessageUnreadable:
    """A message we could not open (no key for its epoch within the wait, or a bad ciphertext)."""

    group_id: str
    message_id: str
    sender: NodeId
    epoch: int
    detail: str
    at_s: float


@dataclass(frozen=True, slots=True)
class GroupGapSkipped:
    """Sequence numbers that never came (sequenced by a hub that died before we had them, and not
    in the history the sync answered with): delivery went on past them."""

    group_id: str
    first_seq: int
    last_seq: int
    at_s: float


@dataclass(frozen=True, slots=True)
class SenderKeyRotated:
    group_id: str
    epoch: int
    reason: str
    at_s: float


@dataclass(frozen=True, slots=True)
class HubUnreachableReported:
    """A member's message went unacknowledged for the ack timeout: it told the shadow (and the
    candidate) that the hub looks unreachable."""

    group_id: str
    hub: NodeId
    reported_to: tuple[NodeId, ...]
    at_s: float


@dataclass(frozen=True, slots=True)
class HubSuspected:
    """The shadow counts a missed pong (or the candidate starts its timeout)."""

    group_id: str
    hub: NodeId
    missed_pongs: int
    reports: int
    at_s: float


@dataclass(frozen=True, slots=True)
class HubPromoted:
    """We took over as hub. `last_pong_s`: when the old hub last answered our ping (None for a
    candidate, which does not ping)."""

    group_id: str
    old_hub: NodeId
    reason: str  # "missed_pongs", "missed_pong_and_report", "candidate_timeout"
    last_pong_s: float | None
    reports: int
    at_s: float


@dataclass(frozen=True, slots=True)
class HubMigrated:
    """This member now follows `new_hub` (it got a HubMigration, or promoted itself)."""

    group_id: str
    old_hub: NodeId
    new_hub: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class HubSteppedDown:
    """We were hub and learnt the group moved to another (the rule: the promoted node wins)."""

    group_id: str
    new_hub: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class ChainRestored:
    group_id: str
    hub: NodeId
    shadow: NodeId | None
    candidate: NodeId | None
    at_s: float


@dataclass(frozen=True, slots=True)
class FirstMessageThroughNewHub:
    """The first group message this member received through the hub it migrated to."""

    group_id: str
    hub: NodeId
    message_id: str
    seq: int
    at_s: float


GroupEvent = (
    GroupCreatedHere | GroupInvited | GroupJoined | GroupLeft | MemberJoined | MemberLeft | GroupMessageReceived
    | GroupMessageConfirmed | GroupMessageResent | GroupMessageRefused | GroupMessageUnreadable | GroupGapSkipped
    | SenderKeyRotated | HubUnreachableReported | HubSuspected | HubPromoted | HubMigrated | HubSteppedDown
    | ChainRestored | FirstMessageThroughNewHub
)  # fmt: skip
GroupOutput = SendGroupPayload | GroupEvent
