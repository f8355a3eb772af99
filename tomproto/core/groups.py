"""The node's group engine: every group it belongs to or hosts, and the failover chain. Sans-IO.

It takes decoded group payloads with their authenticated signer, the outcomes of its reliable
sends and timers, and returns commands (`SendGroupPayload`) and facts. A node can be a group's
member, its hub, or both (a shadow that took over is both); a payload for ourselves goes
straight to the right part, never on the network.

Rules it enforces (beyond the hub's and the member's own, group_hub.py and group_member.py):
- which part a payload is for is decided by who signed it: a Message or a SenderKeyDistribution
  signed by its own author is a submission to us as hub; signed by our hub, a copy for us as
  member; hub-only requests (join, leave, kick, sync, ping...) reach the hub part only;
- the shadow (named by the hub's HubShadowSync) pings the hub and promotes itself as
  group_failover.py says; the candidate (CandidateAssigned) takes over after 30 s when hub and
  shadow are both gone; either way the new hub tells every member and the old hub (HubMigration,
  re-sent at each heartbeat to those who have not acknowledged it), waits for the members'
  sequence reports, and restores the chain (new shadow and candidate, elected by NodeId, the old
  hub passed over);
- **two hubs never stay**: a hub that receives a HubMigration naming it as the old hub steps down
  and follows the new one; a member follows a migration away from its current hub, and, between
  two claims to replace the same hub, the lower NodeId (the shadow's rank, by election); so once
  a partition heals, the promoted node wins, and the old hub, told by the new one, yields;
- groups hosted for others need `host_groups`; invitations are joined when `auto_join` is set;
  at most `max_groups` groups per node.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tomproto.core.group_events import (
    ChainRestored,
    GroupCreatedHere,
    GroupInvited,
    GroupJoined,
    GroupLeft,
    GroupMessageRefused,
    GroupOutput,
    GroupRefusal,
    HubPromoted,
    HubSteppedDown,
    HubSuspected,
    SendGroupPayload,
)
from tomproto.core.group_failover import CandidateWatch, ShadowWatch
from tomproto.core.group_hub import HubConfig, HubGroup
from tomproto.core.group_member import MemberGroup
from tomproto.core.group_settings import GroupSettings
from tomproto.errors import LocalError
from tomproto.identity import Identity, NodeId
from tomproto.wire.group import (
    GroupCandidateAssigned,
    GroupCreate,
    GroupCreated,
    GroupDeliveryAck,
    GroupHubHeartbeat,
    GroupHubMigration,
    GroupHubPing,
    GroupHubPong,
    GroupHubShadowSync,
    GroupHubUnreachable,
    GroupInfo,
    GroupInvite,
    GroupInviteMember,
    GroupJoin,
    GroupKickMember,
    GroupLeave,
    GroupMember,
    GroupMemberJoined,
    GroupMemberLeft,
    GroupMemberRole,
    GroupMemberRoleChanged,
    GroupMessage,
    GroupSenderKeyDistribution,
    GroupSync,
    GroupSyncRequest,
    GroupSyncResponse,
    GroupUpdateMemberRole,
    LeaveReason,
)

__all__ = ["Groups", "GroupSlot"]

MAX_LOCAL_STEPS = 10_000  # payloads to ourselves handled in one call: more is a loop
MAX_EARLY_PAYLOADS = 256  # from the hubs of groups we are joining, before their Syncs (all groups)
MIGRATION_NOTICE = -1  # the ref of a HubMigration, whose delivery the engine waits for
MIGRATION_NOTICE_TTL_S = 24 * 3600.0  # nothing lives past 24 h: an old hub never heard from is let go


@dataclass(slots=True)
class GroupSlot:
    """Everything this node holds for one group."""

    group_id: str
    member: MemberGroup | None = None
    hub: HubGroup | None = None
    shadow: ShadowWatch | None = None
    shadow_sync: GroupHubShadowSync | None = None
    candidate: CandidateWatch | None = None
    migrating: set[str] | None = None  # members (and the old hub) yet to acknowledge our HubMigration
    notices_in_flight: set[str] = field(default_factory=set)  # ... with a notice on its way now
    old_hub: str | None = None
    hub_since_s: float | None = None


class Groups:
    def __init__(
        self, identity: Identity, settings: GroupSettings, *, random_bytes: Callable[[int], bytes],
        wall_ms: Callable[[float], int], host_groups: bool = False, auto_join: bool = False,
    ) -> None:  # fmt: skip
        self.identity = identity
        self.me = identity.node_id.hex
        self.settings = settings
        self.host_groups = host_groups
        self.auto_join = auto_join
        self._random_bytes = random_bytes
        self._wall_ms = wall_ms
        self.slots: dict[str, GroupSlot] = {}
        self.invitations: dict[str, tuple[GroupInvite, str]] = {}  # group -> (invitation, its hub)
        self._joining: dict[str, str] = {}  # group -> the hub we asked to join
        self._early: dict[str, list[tuple[str, Any]]] = {}
        self._early_count = 0
        self._creating: dict[tuple[str, str], float] = {}  # (hub, name) -> asked at
        self._refs: dict[int, tuple[str, int | None, str | None]] = {}  # ref -> (group, hub copy ref, migration target)
        self._next_ref = 0

    # -- the application ------------------------------------------------------------------------

    def create(
        self, name: str, username: str, members: list[NodeId], now: float, *, hub: NodeId | None = None,
        invite_only: bool = False,
    ) -> tuple[str | None, list[GroupOutput]]:  # fmt: skip
        """Create a group hosted here (its id now) or on `hub` (its id comes with GroupJoined)."""
        out: list[GroupOutput] = []
        if hub is not None and hub.hex != self.me:
            self._creating[hub.hex, name] = now
            payload = GroupCreate(name, username, tuple(m.hex for m in members), invite_only)
            out.append(SendGroupPayload(hub, payload, reliable=True))
            return None, out
        group_id = self._host(name, self.me, username, [m.hex for m in members], invite_only, now, out)
        return group_id, self._run(out, now)

    def join(self, group_id: str, username: str, now: float) -> list[GroupOutput]:
        found = self.invitations.pop(group_id, None)
        if found is None:
            raise LocalError(f"no invitation to {group_id}")
        return self._run(self._ask_to_join(group_id, found[1], username), now)

    def _ask_to_join(self, group_id: str, hub: str, username: str) -> list[GroupOutput]:
        if len(self._joining) >= self.settings.max_groups:
            self._forget_joining(next(iter(self._joining)))
        self._joining[group_id] = hub
        return [SendGroupPayload(NodeId.parse(hub), GroupJoin(group_id, username), reliable=True)]

    def _forget_joining(self, group_id: str) -> None:
        self._joining.pop(group_id, None)
        self._early_count -= len(self._early.pop(group_id, []))

    def send(self, group_id: str, text: str, now: float) -> tuple[str, list[GroupOutput]]:
        member = self._member(group_id)
        out: list[GroupOutput] = []
        message_id = member.send(text, now, out)
        return message_id, self._run(out, now)

    def leave(self, group_id: str, now: float) -> list[GroupOutput]:
        member = self._member(group_id)
        out: list[GroupOutput] = [SendGroupPayload(NodeId.parse(member.hub), GroupLeave(group_id), reliable=True)]
        out = self._run(out, now)
        self._drop(group_id, "left", now, out)
        return out

    def kick(self, group_id: str, target: NodeId, now: float) -> list[GroupOutput]:
        member = self._member(group_id)
        payload = GroupKickMember(group_id, target.hex)
        return self._run([SendGroupPayload(NodeId.parse(member.hub), payload, reliable=True)], now)

    def invite(self, group_id: str, target: NodeId, now: float) -> list[GroupOutput]:
        member = self._member(group_id)
        payload = GroupInviteMember(group_id, target.hex)
        return self._run([SendGroupPayload(NodeId.parse(member.hub), payload, reliable=True)], now)

    def set_role(self, group_id: str, target: NodeId, role: GroupMemberRole, now: float) -> list[GroupOutput]:
        member = self._member(group_id)
        payload = GroupUpdateMemberRole(group_id, target.hex, role)
        return self._run([SendGroupPayload(NodeId.parse(member.hub), payload, reliable=True)], now)

    def _member(self, group_id: str) -> MemberGroup:
        slot = self.slots.get(group_id)
        if slot is None or slot.member is None:
            raise LocalError(f"not a member of {group_id}")
        return slot.member

    def member(self, group_id: str) -> MemberGroup | None:
        slot = self.slots.get(group_id)
        return None if slot is None else slot.member

    def hub_of(self, group_id: str) -> HubGroup | None:
        slot = self.slots.get(group_id)
        return None if slot is None else slot.hub

    # -- hosting --------------------------------------------------------------------------------

    def _host(self, name: str, creator: str, username: str, invited: list[str], invite_only: bool, now: float,
              out: list[GroupOutput]) -> str:  # fmt: skip
        if len(self.slots) >= self.settings.max_groups:
            raise LocalError(f"this node is in {len(self.slots)} groups already")
        group_id = f"grp-{uuid.UUID(bytes=self._random_bytes(16), version=4)}"
        config = HubConfig(group_id, name, creator, self._wall_ms(now), invite_only)
        creator_member = GroupMember(creator, username, self._wall_ms(now), GroupMemberRole.Admin)
        hub = HubGroup(self.me, config, {creator: creator_member}, self.settings, now, wall_ms=self._wall_ms)
        slot = self.slots[group_id] = GroupSlot(group_id, hub=hub, hub_since_s=now)
        out.append(GroupCreatedHere(group_id, name, NodeId.parse(creator), now))
        if creator == self.me:
            self._become_member(slot, hub.info(now), (), now, out)
        else:
            out.append(SendGroupPayload(NodeId.parse(creator), GroupCreated(hub.info(now)), reliable=True))
        for node in invited:
            if node not in (creator, self.me):
                hub.invites[node] = now + self.settings.invite_ttl_s
                out.append(SendGroupPayload(NodeId.parse(node), GroupInvite(group_id, name, creator, username), True))
        return group_id

    def _become_member(self, slot: GroupSlot, info: GroupInfo, recent: tuple[GroupMessage, ...], now: float,
                       out: list[GroupOutput]) -> None:  # fmt: skip
        member = MemberGroup(self.identity, info, self.settings, now, random_bytes=self._random_bytes,
                             wall_ms=self._wall_ms)  # fmt: skip
        slot.member = member
        member.synced(info, recent, now, out)
        member.distribute(member.others(), now, out)
        out.append(GroupJoined(info.group_id, info.name, NodeId.parse(info.hub_relay_id), len(info.members), now))

    # -- from the network -----------------------------------------------------------------------

    def receive(self, sender: NodeId, payload: Any, now: float) -> list[GroupOutput]:
        """A group payload signed by `sender` (verified by the runtime)."""
        out: list[GroupOutput] = []
        self._dispatch(sender.hex, payload, now, out)
        return self._run(out, now)

    def send_finished(self, ref: int, delivered: bool, now: float) -> list[GroupOutput]:
        """The outcome of a reliable send we asked for with `ref`."""
        out: list[GroupOutput] = []
        found = self._refs.pop(ref, None)
        if found is None:
            return out
        group_id, hub_ref, migration_target = found
        slot = self.slots.get(group_id)
        if slot is None:
            return out
        if hub_ref is not None and slot.hub is not None:
            slot.hub.copy_finished(hub_ref, delivered, now, out)
        if migration_target is not None:
            slot.notices_in_flight.discard(migration_target)
        if migration_target is not None and slot.migrating is not None and delivered:
            slot.migrating.discard(migration_target)
            if slot.hub is not None and migration_target in slot.hub.roster:
                self._after_notice(slot.hub, migration_target, now, out)
                slot.hub.follows(migration_target, out)
        return self._run(out, now)

    def _after_notice(self, hub: HubGroup, node: str, now: float, out: list[GroupOutput]) -> None:
        """`node` follows us now: its view of the group, and its post in the chain, go after the
        notice (sent sooner, they could overtake it and be refused as not from its hub)."""
        target = NodeId.parse(node)
        out.append(SendGroupPayload(target, GroupSync(hub.info(now), ()), reliable=True))
        if node == hub.shadow:
            hub.sync_shadow(out)
        elif node == hub.candidate:
            out.append(SendGroupPayload(target, GroupCandidateAssigned(hub.group_id), reliable=True))

    def peer_heard(self, peer: NodeId, now: float) -> list[GroupOutput]:
        """The runtime heard from `peer` (any fresh envelope)."""
        out: list[GroupOutput] = []
        for slot in self.slots.values():
            if slot.hub is not None:
                slot.hub.heard_from(peer.hex, now, out)
                if slot.migrating and peer.hex in slot.migrating:
                    self._send_migrations(slot, now, out)  # back in reach: no need to wait for a heartbeat
        return self._run(out, now) if out else out

    def _dispatch(self, sender: str, payload: Any, now: float, out: list[GroupOutput]) -> None:
        if isinstance(payload, GroupCreate):
            return self._create_asked(sender, payload, now, out)
        if isinstance(payload, GroupCreated):
            return self._created(sender, payload.group, now, out)
        if isinstance(payload, GroupInvite):
            return self._invited(sender, payload, now, out)
        group_id = _group_id_of(payload)
        slot = self.slots.get(group_id)
        if slot is None and isinstance(payload, GroupSync) and self._joined(sender, payload, now, out):
            early_payloads = self._early.pop(group_id, [])
            self._early_count -= len(early_payloads)
            for early_sender, early in early_payloads:
                self._dispatch(early_sender, early, now, out)
            return None
        if slot is None and self._joining.get(group_id) == sender:
            if self._early_count < MAX_EARLY_PAYLOADS:
                self._early.setdefault(group_id, []).append((sender, payload))  # overtook the Sync
                self._early_count += 1
            return None
        if slot is None:
            out.append(GroupMessageRefused(str(group_id), NodeId.parse(sender), GroupRefusal.unknown_group,
                                           type(payload).__name__, now))  # fmt: skip
            return None
        hub, member = slot.hub, slot.member
        if slot.candidate is not None and member is not None and sender == member.hub:
            slot.candidate.heard_from_hub(now)
        if isinstance(payload, GroupMessage):
            if sender == self.me and payload.seq != 0 and member is not None and member.hub == self.me:
                # Our hub part's echo of our own message (we are hub and member): it is for the
                # member part, which holds its place in the order. Taken as a submission, the
                # hub would drop it as a duplicate, and our next number would stall as a gap.
                return member.message_from_hub(payload, sender, now, out)
            if hub is not None and payload.sender_id == sender:
                return hub.submitted(payload, sender, now, out)
            if member is not None:
                return member.message_from_hub(payload, sender, now, out)
            return self._not_for_us(slot, sender, payload, now, out)
        if isinstance(payload, GroupSenderKeyDistribution):
            if hub is not None and payload.sender_id == sender:
                return hub.forward_keys(payload, sender, now, out)
            if member is not None and sender == member.hub:
                return member.key_distributed(payload, now, out)
            return self._not_for_us(slot, sender, payload, now, out)
        if isinstance(payload, (GroupJoin, GroupLeave, GroupKickMember, GroupInviteMember, GroupUpdateMemberRole,
                                GroupSyncRequest, GroupHubPing)):  # fmt: skip
            if hub is None:
                return self._not_for_us(slot, sender, payload, now, out)
            return self._to_hub(hub, sender, payload, now, out)
        if isinstance(payload, GroupHubMigration):
            return self._migration(slot, sender, payload, now, out)
        if member is None:
            return self._not_for_us(slot, sender, payload, now, out)
        return self._to_member(slot, member, sender, payload, now, out)

    def _not_for_us(self, slot: GroupSlot, sender: str, payload: Any, now: float, out: list[GroupOutput]) -> None:
        out.append(GroupMessageRefused(slot.group_id, NodeId.parse(sender), GroupRefusal.not_hub,
                                       type(payload).__name__, now))  # fmt: skip

    def _to_hub(self, hub: HubGroup, sender: str, payload: Any, now: float, out: list[GroupOutput]) -> None:
        if isinstance(payload, GroupJoin):
            hub.join(sender, payload.username, now, out)
        elif isinstance(payload, GroupLeave):
            hub.remove(sender, LeaveReason.Voluntary, now, out)
        elif isinstance(payload, GroupKickMember):
            hub.kick(sender, payload.target_id, now, out)
        elif isinstance(payload, GroupInviteMember):
            hub.invite(sender, payload.target_id, now, out)
        elif isinstance(payload, GroupUpdateMemberRole):
            hub.set_role(sender, payload.target_id, payload.new_role, now, out)
        elif isinstance(payload, GroupSyncRequest):
            hub.sync_requested(sender, payload.since_seq, now, out)
        elif isinstance(payload, GroupHubPing) and hub.ping(sender, now, out):
            out.append(SendGroupPayload(NodeId.parse(sender), GroupHubPong(hub.group_id), reliable=False))

    def _to_member(self, slot: GroupSlot, member: MemberGroup, sender: str, payload: Any, now: float,
                   out: list[GroupOutput]) -> None:  # fmt: skip
        from_hub = sender == member.hub
        if isinstance(payload, GroupHubPong):
            if slot.shadow is not None and sender == slot.shadow.hub.hex:
                slot.shadow.pong(now)
            return
        if isinstance(payload, GroupHubUnreachable):
            return self._reported(slot, member, sender, now, out)
        if not from_hub:
            out.append(GroupMessageRefused(slot.group_id, NodeId.parse(sender), GroupRefusal.not_from_hub,
                                           type(payload).__name__, now))  # fmt: skip
            return
        if isinstance(payload, GroupSync):
            if member.synced(payload.group, payload.recent_messages, now, out):
                # The chain as the hub says: a watch we no longer hold the post for stops.
                if payload.group.shadow_id != self.me:
                    slot.shadow = slot.shadow_sync = None
                elif slot.shadow is None:  # its HubShadowSync came first and an older Sync stopped us
                    slot.shadow = ShadowWatch(NodeId.parse(sender), self.settings, now)
                if payload.group.candidate_id != self.me:
                    slot.candidate = None
        elif isinstance(payload, GroupSyncResponse):
            member.synced_since(payload.messages, payload.latest_seq, sender, now, out)
        elif isinstance(payload, GroupMemberJoined):
            member.member_joined(payload.member, now, out)
        elif isinstance(payload, GroupMemberLeft):
            if payload.node_id == self.me:
                self._drop(slot.group_id, "kicked" if payload.reason is LeaveReason.Kicked else "removed", now, out)
            else:
                member.member_left(payload.node_id, payload.reason.value, now, out)
        elif isinstance(payload, GroupMemberRoleChanged):
            old = member.roster.get(payload.node_id)
            if old is not None:
                member.roster[payload.node_id] = GroupMember(old.node_id, old.username, old.joined_at, payload.new_role)
        elif isinstance(payload, GroupDeliveryAck):
            member.delivery_acknowledged(payload.message_id, sender, now, out)
        elif isinstance(payload, GroupHubShadowSync):
            self._shadow_synced(slot, sender, payload, now)
        elif isinstance(payload, GroupCandidateAssigned):
            if slot.candidate is None or slot.candidate.hub.hex != sender:
                slot.candidate = CandidateWatch(NodeId.parse(sender), self.settings, now)
        elif isinstance(payload, GroupHubHeartbeat):
            pass  # heard from the hub: that is all it says

    # -- hub creation, invitations --------------------------------------------------------------

    def _create_asked(self, sender: str, payload: GroupCreate, now: float, out: list[GroupOutput]) -> None:
        if not self.host_groups:
            out.append(GroupMessageRefused("", NodeId.parse(sender), GroupRefusal.not_hub, "we host no groups", now))
            return
        if len(self.slots) >= self.settings.max_groups:
            out.append(GroupMessageRefused("", NodeId.parse(sender), GroupRefusal.too_many_groups, "", now))
            return
        self._host(payload.group_name, sender, payload.creator_username, list(payload.initial_members),
                   payload.invite_only, now, out)  # fmt: skip

    def _created(self, sender: str, info: GroupInfo, now: float, out: list[GroupOutput]) -> None:
        if self._creating.pop((sender, info.name), None) is None or info.hub_relay_id != sender:
            out.append(GroupMessageRefused(info.group_id, NodeId.parse(sender), GroupRefusal.malformed,
                                           "a GroupCreated we did not ask for", now))  # fmt: skip
            return
        if info.group_id in self.slots or len(self.slots) >= self.settings.max_groups:
            return
        slot = self.slots[info.group_id] = GroupSlot(info.group_id)
        self._become_member(slot, info, (), now, out)

    def _invited(self, sender: str, invite: GroupInvite, now: float, out: list[GroupOutput]) -> None:
        if invite.group_id in self.slots:
            return
        out.append(GroupInvited(invite.group_id, invite.group_name, NodeId.parse(sender),
                                NodeId.parse(invite.inviter_id), now))  # fmt: skip
        if self.auto_join:
            out += self._ask_to_join(invite.group_id, sender, self.me[:8])
            return
        if len(self.invitations) >= self.settings.max_groups:
            self.invitations.pop(next(iter(self.invitations)))
        self.invitations[invite.group_id] = (invite, sender)

    def _joined(self, sender: str, payload: GroupSync, now: float, out: list[GroupOutput]) -> bool:
        """A Sync for a group we asked to join: we are a member now."""
        info = payload.group
        if self._joining.get(info.group_id) != sender or info.hub_relay_id != sender:
            return False
        if not any(member.node_id == self.me for member in info.members):
            return False
        self._joining.pop(info.group_id)
        if len(self.slots) >= self.settings.max_groups:
            return True
        slot = self.slots[info.group_id] = GroupSlot(info.group_id)
        self._become_member(slot, info, payload.recent_messages, now, out)
        return True

    def _drop(self, group_id: str, reason: str, now: float, out: list[GroupOutput]) -> None:
        slot = self.slots.get(group_id)
        if slot is None:
            return
        if slot.hub is not None:
            slot.member = None
            slot.shadow = slot.candidate = None
        else:
            del self.slots[group_id]
        out.append(GroupLeft(group_id, reason, now))

    # -- the failover chain ---------------------------------------------------------------------

    def _shadow_synced(self, slot: GroupSlot, sender: str, payload: GroupHubShadowSync, now: float) -> None:
        if slot.shadow_sync is not None and payload.config_version < slot.shadow_sync.config_version:
            return  # an older word, overtaken
        slot.shadow_sync = payload
        if slot.shadow is None or slot.shadow.hub.hex != sender:
            slot.shadow = ShadowWatch(NodeId.parse(sender), self.settings, now)
        slot.candidate = None

    def _reported(
        self, slot: GroupSlot, member: MemberGroup, reporter: str, now: float, out: list[GroupOutput]
    ) -> None:
        if reporter not in member.roster:
            return
        if slot.shadow is not None:
            if not slot.shadow.report(now):
                return
            hub = slot.shadow.hub
            out.append(HubSuspected(slot.group_id, hub, slot.shadow.missed_pongs(now), slot.shadow.reports, now))
        elif slot.candidate is not None and slot.candidate.report(now):
            out.append(HubSuspected(slot.group_id, slot.candidate.hub, 0, 1, now))

    def _promote(self, slot: GroupSlot, reason: str, now: float, out: list[GroupOutput]) -> None:
        """Take over as hub: the roster and config the old hub gave us, numbering settled by the
        members' reports, the old hub passed over, the chain restored."""
        member = slot.member
        if member is None or slot.hub is not None:
            return
        old_hub = member.hub
        last_pong = slot.shadow.last_pong_s if slot.shadow is not None else None
        reports = slot.shadow.reports if slot.shadow is not None else 0
        roster = dict(member.roster)
        version = 0
        if slot.shadow_sync is not None:
            roster = {m.node_id: m for m in slot.shadow_sync.members}
            version = slot.shadow_sync.config_version
        info = member.info
        config = HubConfig(slot.group_id, info.name, info.created_by, info.created_at, info.invite_only)
        # What a member pacing itself at the allowed rate may have sent since the old hub last
        # worked and must resend now (HubGroup._take_credit says why it is needed).
        settings = self.settings
        last_heard = last_pong if last_pong is not None else (
            slot.candidate.last_heard_s if slot.candidate is not None else now
        )  # fmt: skip
        outage_s = now - last_heard + settings.delivery_ack_wait_s + settings.settle_timeout_s
        credit = min(settings.max_pending, math.ceil(outage_s * settings.sender_rate_per_s))
        # A candidate takes over because hub and shadow are both gone: neither is elected again.
        gone = {old_hub} if reason != "candidate_timeout" or info.shadow_id is None else {old_hub, info.shadow_id}
        hub = HubGroup(self.me, config, roster, self.settings, now, wall_ms=self._wall_ms, config_version=version + 1,
                       seq=(member.next_seq or 1) - 1, history=tuple(member.history),
                       passed_over=frozenset(gone), backlog_credit=credit)  # fmt: skip
        slot.hub, slot.hub_since_s, slot.old_hub = hub, now, old_hub
        slot.shadow = slot.candidate = None
        out.append(HubPromoted(slot.group_id, NodeId.parse(old_hub), reason, last_pong, reports, now))
        others = [node for node in roster if node not in (self.me, old_hub)]
        hub.start_settling(set(others), now)
        hub.awaiting = set(others) | ({old_hub} & set(roster))
        slot.migrating = set(others) | {old_hub}
        self._send_migrations(slot, now, out)
        member.migrate(self.me, now, out)
        out.append(SendGroupPayload(NodeId.parse(self.me), GroupSync(hub.info(now), ()), reliable=True))
        out.append(ChainRestored(slot.group_id, NodeId.parse(self.me), _node(hub.shadow), _node(hub.candidate), now))

    def _send_migrations(self, slot: GroupSlot, now: float, out: list[GroupOutput]) -> None:
        if not slot.migrating or slot.old_hub is None:
            return
        if slot.hub_since_s is not None and now - slot.hub_since_s > MIGRATION_NOTICE_TTL_S:
            slot.migrating = None
            return
        notice = GroupHubMigration(slot.group_id, self.me, slot.old_hub)
        for node in sorted(slot.migrating - slot.notices_in_flight):
            slot.notices_in_flight.add(node)
            out.append(SendGroupPayload(NodeId.parse(node), notice, reliable=True, ref=MIGRATION_NOTICE))

    def _migration(self, slot: GroupSlot, sender: str, payload: GroupHubMigration, now: float,
                   out: list[GroupOutput]) -> None:  # fmt: skip
        if payload.new_hub_id != sender:
            out.append(GroupMessageRefused(slot.group_id, NodeId.parse(sender), GroupRefusal.malformed,
                                           "a HubMigration not from its new hub", now))  # fmt: skip
            return
        hub, member = slot.hub, slot.member
        if hub is not None:
            claimant = payload.new_hub_id
            in_chain = claimant in hub.chain_seen and claimant in hub.roster  # a member we named
            yields = in_chain and (payload.old_hub_id == self.me or (
                payload.old_hub_id == slot.old_hub and claimant < self.me
            ))  # fmt: skip
            if not yields:
                return
            predecessor = slot.old_hub
            slot.hub = None
            slot.migrating = None
            slot.old_hub = None
            out.append(HubSteppedDown(slot.group_id, NodeId.parse(sender), now))
            if member is None:
                del self.slots[slot.group_id]
                return
            member.previous_hub, member.hub = predecessor, self.me  # the migration is one away from us
        if member is None or not member.accepts_migration(payload.new_hub_id, payload.old_hub_id):
            return
        member.migrate(payload.new_hub_id, now, out)
        slot.shadow = slot.candidate = None
        if slot.shadow_sync is not None and payload.new_hub_id == self.me:
            slot.shadow_sync = None

    # -- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times: list[float] = []
        for slot in self.slots.values():
            for part in (slot.member, slot.hub, slot.shadow, slot.candidate):
                if part is not None:
                    deadline = part.next_deadline()
                    if deadline is not None:
                        times.append(deadline)
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[GroupOutput]:
        out: list[GroupOutput] = []
        for slot in list(self.slots.values()):
            self._slot_timer(slot, now, out)
        return self._run(out, now)

    def _slot_timer(self, slot: GroupSlot, now: float, out: list[GroupOutput]) -> None:
        if slot.hub is not None:
            beat_due = now >= slot.hub.next_heartbeat_s
            slot.hub.handle_timer(now, out)
            if beat_due:
                self._send_migrations(slot, now, out)
        member = slot.member
        member_due = None if member is None else member.next_deadline()
        if member is not None and member_due is not None and member_due <= now:
            chain = (member.info.shadow_id, member.info.candidate_id)
            if member.handle_timer(now, out, chain) and slot.shadow is not None:
                slot.shadow.report(now)  # we are the shadow: our own report counts
        shadow = slot.shadow
        if shadow is not None and slot.hub is None:
            missed = shadow.missed_pongs(now)
            if missed > shadow.missed_reported:
                shadow.missed_reported = missed
                out.append(HubSuspected(slot.group_id, shadow.hub, missed, shadow.reports, now))
            if shadow.should_promote(now):
                reason = "missed_pong_and_report" if shadow.reports else "missed_pongs"
                return self._promote(slot, reason, now, out)
            if shadow.ping_due(now):
                out.append(SendGroupPayload(shadow.hub, GroupHubPing(slot.group_id), reliable=False))
        candidate = slot.candidate
        if candidate is not None and slot.hub is None and now >= candidate.next_deadline():
            was_suspected = candidate.suspected_s is not None
            if candidate.tick(now):
                return self._promote(slot, "candidate_timeout", now, out)
            if not was_suspected and candidate.suspected_s is not None:
                out.append(HubSuspected(slot.group_id, candidate.hub, 0, 0, now))
        return None

    # -- payloads to ourselves ------------------------------------------------------------------

    def _run(self, out: list[GroupOutput], now: float) -> list[GroupOutput]:
        """Handle payloads addressed to ourselves here (a hub that is also a member); give each
        reliable send that has an outcome to wait for a ref. Returns what is left to do."""
        done: list[GroupOutput] = []
        todo = deque(out)
        for _ in range(MAX_LOCAL_STEPS):
            if not todo:
                return done
            item = todo.popleft()
            if not isinstance(item, SendGroupPayload):
                done.append(item)
                continue
            if item.ref is not None:
                # A part's own ref (a hub's copy), or MIGRATION_NOTICE: the engine's ref replaces it.
                group_id = _group_id_of(item.payload)
                self._next_ref += 1
                if item.ref == MIGRATION_NOTICE:
                    self._refs[self._next_ref] = (group_id, None, item.peer.hex)
                else:
                    self._refs[self._next_ref] = (group_id, item.ref, None)
                item = SendGroupPayload(item.peer, item.payload, item.reliable, self._next_ref)
            if item.peer.hex != self.me:
                done.append(item)
                continue
            more: list[GroupOutput] = []
            self._dispatch(self.me, item.payload, now, more)
            if item.reliable and item.ref is not None:
                found = self._refs.pop(item.ref, None)
                if found is not None:
                    slot = self.slots.get(found[0])
                    if slot is not None and slot.hub is not None and found[1] is not None:
                        slot.hub.copy_finished(found[1], True, now, more)
            todo.extendleft(reversed(more))
        raise LocalError(f"over {MAX_LOCAL_STEPS} group payloads to ourselves in one call")


def _group_id_of(payload: Any) -> str:
    if isinstance(payload, (GroupSync, GroupCreated)):
        return payload.group.group_id
    group_id = getattr(payload, "group_id", "")
    return group_id if isinstance(group_id, str) else ""


def _node(hex_id: str | None) -> NodeId | None:
    return None if hex_id is None else NodeId.parse(hex_id)
