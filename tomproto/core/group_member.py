"""One group, seen by one of its members (spec/protocol.md §6, and our decisions).

Rules it enforces:
- our messages are signed and encrypted under our sender key of the current epoch, and go to
  the hub; each is kept until the hub acknowledges it (DeliveryAck: sequenced, and in the hands
  of every member the hub could reach) and is sent again, same message id, to a new hub after a
  migration; one unacknowledged for `member_ack_timeout_s` (3 s) makes us report the hub
  unreachable to the shadow and the candidate (once per timeout, not per message);
- a message reaches the application once (dedup by message id, 24 h), only from our hub or the
  one it replaced, signed by a member, opened with its sender's key, and in hub sequence order
  (our own come back too, as the hub's echo: they hold their place in the order, unpublished):
  one that arrives ahead of a gap waits up to `gap_wait_s`, then we ask the hub for what we
  missed (SyncRequest since our last seq), and what the sync did not bring is skipped (counted);
  a message whose key has not arrived waits up to `key_wait_s`, then is reported unreadable;
- a HubMigration is followed when it names our hub as the old one and comes from the new hub
  itself, a node the hub once named shadow or candidate (no other member can seize the group);
  a competing claim for the same takeover wins only with a lower NodeId (the shadow's
  election rule), so that all members end with the same hub; after following one we report our
  last seq to the new hub (SyncRequest): it numbers on above what any member saw;
- our sender key is given to each member (through the hub, encrypted to each with the 1-to-1
  scheme), rotated when a member leaves or is removed, after 24 h or 10 000 messages; a member
  that left is forgotten, with its keys;
- everything held is bounded: messages waiting, unacknowledged messages, remembered ids.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from tomproto.core.dedup import ExpiringSet
from tomproto.core.group_events import (
    FirstMessageThroughNewHub,
    GroupGapSkipped,
    GroupMessageConfirmed,
    GroupMessageReceived,
    GroupMessageRefused,
    GroupMessageResent,
    GroupMessageUnreadable,
    GroupOutput,
    GroupRefusal,
    HubMigrated,
    HubUnreachableReported,
    MemberJoined,
    MemberLeft,
    SenderKeyRotated,
    SendGroupPayload,
)
from tomproto.core.group_settings import GroupSettings
from tomproto.core.sender_keys import SenderKeys
from tomproto.crypto.e2e import decrypt_with, encrypt_for
from tomproto.crypto.group_keys import open_group_message, seal_group_message, verify_group_message
from tomproto.errors import Backpressure, CryptoError, DecodeError
from tomproto.identity import Identity, NodeId
from tomproto.wire.group import (
    EncryptedSenderKey,
    GroupHubUnreachable,
    GroupInfo,
    GroupMember,
    GroupMessage,
    GroupSenderKeyDistribution,
    GroupSyncRequest,
)

__all__ = ["MemberGroup"]


@dataclass(slots=True)
class _Pending:
    message: GroupMessage
    sent_s: float  # last sent
    hub: str
    first_sent_s: float


@dataclass(slots=True)
class _Waiting:
    message: GroupMessage
    key_wait_since_s: float | None = None  # when we found its sender key missing


class MemberGroup:
    def __init__(
        self, identity: Identity, info: GroupInfo, settings: GroupSettings, now: float, *,
        random_bytes: Callable[[int], bytes], wall_ms: Callable[[float], int],
    ) -> None:  # fmt: skip
        self.identity = identity
        self.me = identity.node_id.hex
        self.settings = settings
        self.group_id = info.group_id
        self.info = info  # the hub's latest word on the group (roster, chain)
        self.roster: dict[str, GroupMember] = {member.node_id: member for member in info.members}
        self.hub = info.hub_relay_id
        self.previous_hub: str | None = None
        # Nodes the hub ever named shadow or candidate: only they may claim to be the new hub.
        self.chain_seen: set[str] = set()
        self.keys = SenderKeys(now, random_bytes)
        self._random_bytes = random_bytes
        self._wall_ms = wall_ms
        self.next_seq: int | None = None  # the next sequence number to deliver (None: not yet known)
        self._ahead: dict[int, GroupMessage] = {}  # arrived before a gap filled
        self._gap_since_s: float | None = None
        self._synced_gap = False  # a sync was asked for the current gap
        self._ready: deque[_Waiting] = deque()  # in order, the head waiting for its key
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self._delivered = ExpiringSet(capacity=settings.max_dedup)
        self.history: deque[GroupMessage] = deque(maxlen=settings.history)
        self._reported_s = float("-inf")
        self._awaiting_first_from: str | None = None
        self._saw_chain(info)
        self.skipped = 0
        # (sender, epoch) whose key never came within the wait: later messages under it are not
        # waited for again (each would hold everything behind it for the whole wait).
        self._given_up: set[tuple[str, int]] = set()
        self.late = 0

    # -- the application ------------------------------------------------------------------------

    @property
    def username(self) -> str:
        member = self.roster.get(self.me)
        return "" if member is None else member.username

    def send(self, text: str, now: float, out: list[GroupOutput]) -> str:
        if len(self.pending) >= self.settings.max_pending:
            raise Backpressure(f"{len(self.pending)} group messages are not yet acknowledged by the hub")
        settings = self.settings
        if self.keys.rotation_due(now, settings.rotate_after_s, settings.rotate_after_messages):
            self.rotate("due", now, out)
        own = self.keys.own
        message = seal_group_message(
            self.identity, group_id=self.group_id, message_id=str(uuid.UUID(bytes=self._random_bytes(16), version=4)),
            username=self.username, text=text, sent_at_ms=self._wall_ms(now), sender_key=own.key,
            key_epoch=own.epoch, random_bytes=self._random_bytes,
        )  # fmt: skip
        own.messages += 1
        self.pending[message.message_id] = _Pending(message, now, self.hub, now)
        out.append(SendGroupPayload(NodeId.parse(self.hub), message, reliable=True))
        return message.message_id

    # -- sender keys ----------------------------------------------------------------------------

    def rotate(self, reason: str, now: float, out: list[GroupOutput]) -> None:
        own = self.keys.rotate(now)
        out.append(SenderKeyRotated(self.group_id, own.epoch, reason, now))
        self.distribute(self.others(), now, out)

    def others(self) -> list[str]:
        return [node for node in self.roster if node != self.me]

    def distribute(self, recipients: list[str], now: float, out: list[GroupOutput]) -> None:
        """Our current key to `recipients`, each encrypted to it, through the hub."""
        if not recipients:
            return
        own = self.keys.own
        entries = tuple(
            EncryptedSenderKey(node, encrypt_for(bytes.fromhex(node), own.key, random_bytes=self._random_bytes))
            for node in recipients
        )
        payload = GroupSenderKeyDistribution(self.group_id, self.me, own.epoch, entries)
        out.append(SendGroupPayload(NodeId.parse(self.hub), payload, reliable=True))

    def key_distributed(self, payload: GroupSenderKeyDistribution, now: float, out: list[GroupOutput]) -> None:
        sender = payload.sender_id
        if sender not in self.roster:
            out.append(GroupMessageRefused(self.group_id, NodeId.parse(sender), GroupRefusal.not_member,
                                           "a sender key from a non-member", now))  # fmt: skip
            return
        for entry in payload.encrypted_keys:
            if entry.recipient_id != self.me:
                continue
            try:
                key = decrypt_with(self.identity.x25519_secret, entry.encrypted_key)
            except CryptoError as error:
                out.append(GroupMessageRefused(self.group_id, NodeId.parse(sender), GroupRefusal.malformed,
                                               f"sender key: {error}", now))  # fmt: skip
                return
            self.keys.learn(sender, payload.epoch, key, now, self.settings.previous_epoch_grace_s)
            self._given_up.discard((sender, payload.epoch))
        self._drain(now, out)

    # -- the roster -----------------------------------------------------------------------------

    def synced(self, info: GroupInfo, recent: tuple[GroupMessage, ...], now: float, out: list[GroupOutput]) -> bool:
        """The hub's full word on the group (on joining, and when the chain changes); False when
        an older word overtaken by a newer one (Syncs travel on separate streams). Members leave
        by MemberLeft only: a Sync adds whom we did not know yet, never removes."""
        if info.last_activity_at < self.info.last_activity_at:
            return False
        joined = [member for member in info.members if member.node_id not in self.roster]
        self.info = info
        self._saw_chain(info)
        for member in joined:
            self.roster[member.node_id] = member
        if self.next_seq is None and recent:
            # Joining: what was said before is not replayed; numbering goes on from there. (A
            # Sync without history, which may overtake the one with it, says nothing of where
            # numbering stands: then the first message we get does.)
            self.next_seq = max(message.seq for message in recent) + 1
            for message in recent:
                self._delivered.add(message.message_id, now + self.settings.dedup_s, now)
                self.history.append(message)
        if joined:
            self.distribute([m.node_id for m in joined if m.node_id != self.me], now, out)
        return True

    def _saw_chain(self, info: GroupInfo) -> None:
        self.chain_seen |= {node for node in (info.shadow_id, info.candidate_id) if node is not None}
        if len(self.chain_seen) > 2 * self.settings.max_members:
            self.chain_seen &= set(self.roster) | {self.hub}

    def member_joined(self, member: GroupMember, now: float, out: list[GroupOutput]) -> None:
        if member.node_id in self.roster:
            return
        self.roster[member.node_id] = member
        out.append(MemberJoined(self.group_id, NodeId.parse(member.node_id), member.username, now))
        if member.node_id != self.me:
            self.distribute([member.node_id], now, out)

    def member_left(self, node: str, reason: str, now: float, out: list[GroupOutput]) -> None:
        if self.roster.pop(node, None) is None:
            return
        self.keys.forget(node)
        self.chain_seen.discard(node)  # gone: it may no longer claim the hub
        out.append(MemberLeft(self.group_id, NodeId.parse(node), reason, now))
        self.rotate("member_left", now, out)  # what follows is sealed from the one who left

    # -- messages from the hub ------------------------------------------------------------------

    def message_from_hub(self, message: GroupMessage, hub: str, now: float, out: list[GroupOutput]) -> None:
        sender = NodeId.parse(message.sender_id)
        if hub != self.hub and hub != self.previous_hub:
            out.append(GroupMessageRefused(self.group_id, sender, GroupRefusal.not_from_hub, hub[:16], now))
            return
        if message.sender_id not in self.roster:
            out.append(GroupMessageRefused(self.group_id, sender, GroupRefusal.not_member, message.message_id, now))
            return
        try:
            verify_group_message(message)
        except CryptoError as error:
            out.append(GroupMessageRefused(self.group_id, sender, GroupRefusal.bad_signature, str(error), now))
            return
        if self._is_waiting(message):
            return  # a copy we have: the hub's resend after a lost ACK
        if self._delivered.contains(message.message_id, now):
            # A copy we have (a resend after a lost ACK, an old hub's straggler), or one a new hub
            # renumbered (its sender sent it again after a migration): not news, but a number
            # still ahead of us must take its place in the order, or it would stall what follows
            # as a gap and be counted as skipped. _drain passes over it without delivering it.
            if self.next_seq is not None and message.seq >= self.next_seq and message.seq not in self._ahead:
                self._order(message, now, out)
            return
        if self._awaiting_first_from == hub:
            self._awaiting_first_from = None
            first = FirstMessageThroughNewHub(self.group_id, NodeId.parse(hub), message.message_id, message.seq, now)
            out.append(first)
        self._order(message, now, out)

    def _is_waiting(self, message: GroupMessage) -> bool:
        waiting = self._ahead.get(message.seq)
        return (waiting is not None and waiting.message_id == message.message_id) or any(
            waiting.message.message_id == message.message_id for waiting in self._ready
        )

    def _order(self, message: GroupMessage, now: float, out: list[GroupOutput]) -> None:
        if self.next_seq is None:
            self.next_seq = message.seq
        if message.seq < self.next_seq:
            self.late += 1  # an old hub's straggler: delivered, never lost
            self._ready.append(_Waiting(message))
        elif message.seq == self.next_seq:
            self._ready.append(_Waiting(message))
            self.next_seq += 1
            self._release_ahead(now)
        elif len(self._ahead) >= self.settings.max_waiting:
            self._skip_to(min(self._ahead), now, out)  # too much waits: give up on the gap
            self._order(message, now, out)
            return
        else:
            self._ahead[message.seq] = message
            if self._gap_since_s is None:
                self._gap_since_s = now
        self._drain(now, out)

    def _release_ahead(self, now: float) -> None:
        """Messages that waited behind a gap now filled join the ordered queue."""
        if self.next_seq is None:
            return
        while self.next_seq in self._ahead:
            self._ready.append(_Waiting(self._ahead.pop(self.next_seq)))
            self.next_seq += 1
        self._synced_gap = False
        self._gap_since_s = now if self._ahead else None  # a further gap waits afresh

    def _skip_to(self, target: int, now: float, out: list[GroupOutput]) -> None:
        """Give up on the missing numbers below `target`."""
        if self.next_seq is not None and target > self.next_seq:
            out.append(GroupGapSkipped(self.group_id, self.next_seq, target - 1, now))
            self.skipped += target - self.next_seq
            self.next_seq = target
        self._release_ahead(now)

    def _settle_up_to(self, latest_seq: int, now: float, out: list[GroupOutput]) -> None:
        """Everything up to `latest_seq` the hub had is here: skip what is still missing."""
        for _ in range(self.settings.max_waiting + 2):
            if self.next_seq is None or self.next_seq > latest_seq:
                return
            later = [seq for seq in self._ahead if seq > self.next_seq]
            self._skip_to(min([*later, latest_seq + 1]), now, out)

    def _drain(self, now: float, out: list[GroupOutput]) -> None:
        """Deliver from the head of the ordered queue while the head opens."""
        while self._ready:
            head = self._ready[0]
            message = head.message
            key = None
            if self._delivered.contains(message.message_id, now):  # a renumbered copy: its place only
                self._ready.popleft()
                continue
            if message.sender_id == self.me:  # the hub's echo of ours: in order, not news to us
                self._ready.popleft()
                self._remember(message, now)
                continue
            if message.encrypted:
                key = self.keys.key_for(message.sender_id, message.key_epoch, now)
                if key is None:
                    if head.key_wait_since_s is None:
                        head.key_wait_since_s = now
                    waited_s = now - head.key_wait_since_s
                    given_up = (message.sender_id, message.key_epoch) in self._given_up
                    if (not given_up and waited_s < self.settings.key_wait_s
                            and len(self._ready) <= self.settings.max_waiting):  # fmt: skip
                        return  # its key is on the way (distributions and messages race)
                    if len(self._given_up) < self.settings.max_waiting:
                        self._given_up.add((message.sender_id, message.key_epoch))
                    self._ready.popleft()
                    self._remember(message, now)
                    out.append(self._unreadable(message, "no sender key for its epoch", now))
                    continue
            self._ready.popleft()
            self._remember(message, now)
            try:
                content = open_group_message(message, key)
            except (CryptoError, DecodeError) as error:
                out.append(self._unreadable(message, str(error), now))
                continue
            out.append(GroupMessageReceived(
                self.group_id, message.message_id, NodeId.parse(message.sender_id), content.username, content.text,
                message.seq, NodeId.parse(self.hub), message.sent_at, message.encrypted, now,
            ))  # fmt: skip

    def _unreadable(self, message: GroupMessage, detail: str, now: float) -> GroupMessageUnreadable:
        sender = NodeId.parse(message.sender_id)
        return GroupMessageUnreadable(self.group_id, message.message_id, sender, message.key_epoch, detail, now)

    def _remember(self, message: GroupMessage, now: float) -> None:
        self._delivered.add(message.message_id, now + self.settings.dedup_s, now)
        self.history.append(message)

    def synced_since(self, messages: tuple[GroupMessage, ...], latest_seq: int, hub: str, now: float,
                     out: list[GroupOutput]) -> None:  # fmt: skip
        """The hub's answer to our SyncRequest: what it had, and where numbering stands."""
        if hub != self.hub:
            return
        for message in sorted(messages, key=lambda m: m.seq):
            self.message_from_hub(message, hub, now, out)
        if self.next_seq is None:
            self.next_seq = latest_seq + 1
        self._settle_up_to(latest_seq, now, out)
        self._drain(now, out)

    def delivery_acknowledged(self, message_id: str, hub: str, now: float, out: list[GroupOutput]) -> None:
        pending = self.pending.get(message_id)
        if pending is None or hub != self.hub:
            return
        del self.pending[message_id]
        out.append(GroupMessageConfirmed(self.group_id, message_id, NodeId.parse(hub), now))

    # -- the hub changes ------------------------------------------------------------------------

    def accepts_migration(self, new_hub: str, old_hub: str) -> bool:
        if new_hub == self.hub or new_hub not in self.chain_seen or new_hub not in self.roster:
            return False  # a member outside the chain cannot make itself hub
        if old_hub == self.hub:
            return True
        return old_hub == self.previous_hub and new_hub < self.hub

    def migrate(self, new_hub: str, now: float, out: list[GroupOutput]) -> None:
        """Follow `new_hub`: report our last seq to it, and resend what the old hub never
        acknowledged (same message ids: members that had them drop the copies)."""
        old = self.hub
        self.previous_hub, self.hub = old, new_hub
        self._awaiting_first_from = new_hub
        self._reported_s = float("-inf")
        out.append(HubMigrated(self.group_id, NodeId.parse(old), NodeId.parse(new_hub), now))
        since = 0 if self.next_seq is None else self.next_seq - 1
        out.append(SendGroupPayload(NodeId.parse(new_hub), GroupSyncRequest(self.group_id, since), reliable=True))
        # Fix: our sender key went to the members through the old hub, which may have died with
        # it unforwarded (a member that joined, or a rotation, just before): without it, every
        # message of ours is unreadable to them for good. Given again through the new hub (a key
        # a member holds already is installed once); before the messages, which it forwards
        # at once while it holds messages until its numbering settles.
        self.distribute(self.others(), now, out)
        for pending in self.pending.values():
            pending.hub, pending.sent_s = new_hub, now
            out.append(SendGroupPayload(NodeId.parse(new_hub), pending.message, reliable=True))
            out.append(GroupMessageResent(self.group_id, pending.message.message_id, NodeId.parse(new_hub), now))

    # -- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times: list[float] = []
        settings = self.settings
        if self.pending:
            oldest = min(p.sent_s for p in self.pending.values())
            times.append(max(oldest + settings.member_ack_timeout_s, self._reported_s + settings.member_ack_timeout_s))
        if self._gap_since_s is not None:
            times.append(self._gap_since_s + settings.gap_wait_s)
        if self._ready and self._ready[0].key_wait_since_s is not None:
            times.append(self._ready[0].key_wait_since_s + settings.key_wait_s)
        times.append(self.keys.own.created_s + settings.rotate_after_s)
        return min(times)

    def handle_timer(self, now: float, out: list[GroupOutput], chain: tuple[str | None, str | None]) -> bool:
        """Timeouts; True when the hub looks unreachable (our report was just sent)."""
        settings = self.settings
        reported = False
        for message_id in [mid for mid, p in self.pending.items() if now - p.first_sent_s > settings.max_past_s]:
            del self.pending[message_id]  # the hub would refuse it as stale now: given up, said
            out.append(GroupMessageRefused(self.group_id, self.identity.node_id, GroupRefusal.stale,
                                           f"{message_id} never acknowledged by a hub", now))  # fmt: skip
        if self.pending and now - self._reported_s >= settings.member_ack_timeout_s:
            overdue = [p for p in self.pending.values() if now - p.sent_s >= settings.member_ack_timeout_s]
            # Sent again to the hub, the oldest first and within its rate: a hub that refused one
            # (over the rate, its settling buffer full) or lost it numbers it now; one that had
            # it acknowledges again.
            for pending in overdue[: int(settings.sender_burst)]:
                pending.sent_s = now
                out.append(SendGroupPayload(NodeId.parse(self.hub), pending.message, reliable=True))
            if overdue:
                self._reported_s = now
                targets = tuple(NodeId.parse(node) for node in chain if node is not None and node != self.hub)
                for target in targets:
                    out.append(SendGroupPayload(target, GroupHubUnreachable(self.group_id), reliable=False))
                out.append(HubUnreachableReported(self.group_id, NodeId.parse(self.hub), targets, now))
                reported = True
        if self._gap_since_s is not None and now - self._gap_since_s >= settings.gap_wait_s:
            if not self._synced_gap and self.next_seq is not None:
                self._synced_gap = True
                self._gap_since_s = now
                request = GroupSyncRequest(self.group_id, self.next_seq - 1)
                out.append(SendGroupPayload(NodeId.parse(self.hub), request, reliable=True))
            elif self._ahead:
                self._skip_to(min(self._ahead), now, out)
        if self.keys.rotation_due(now, settings.rotate_after_s, settings.rotate_after_messages):
            self.rotate("due", now, out)
        self._drain(now, out)
        return reported
