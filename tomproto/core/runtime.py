"""The protocol runtime: routing, ACKs and resends, liveness, anti-spam, backup. Sans-IO.

Rules it enforces (spec/protocol.md §5 and §7, with our decisions):
- an inbound envelope is size-checked, decoded and verified before anything else; the sender is
  then charged to its anti-spam budget; a refusal of any kind is counted, published with its
  reason, and tells the transport peer (its stream is reset with the refusal), never an exception;
- `len(via) > 4` is refused; an envelope older than `max_envelope_age_s` or further ahead than
  `max_clock_ahead_s` is refused (dedup entries outlive the age limit, so a replay is refused as
  stale, never delivered twice; once the dedup table overflowed, a message older than what it
  still remembers is refused as stale too); only an envelope past these checks refreshes the
  liveness of its peer and signer;
- addressed to us: Ack and ReadReceipt move our tracker forward once (anti-replay on
  `original_id:from:type`, 5 min) and only when they come from the peer that may send them;
  anything else is deduplicated on `id:from` and delivered once, then ACKed (RecipientReceived,
  routed back along the reversed `via`); **a duplicate is dropped and re-ACKed**;
- the ACK goes only once the message is in the application's inbox: when the inbox is full,
  the frame waits un-released in the transport, so its sender's streams stay open and its sends
  wait (back-pressure), and nothing that was ACKed can be lost;
- we are in `via`: forward to the next hop with ttl - 1 (an envelope that arrives with ttl 0 is
  refused) and send RelayForwarded straight back to the sender; not ours and we are not in
  `via`: forward directly to the recipient;
- sending: at most `max_unacknowledged` messages of ours not yet Delivered and not in the backup
  store (beyond, `send` raises Backpressure and `RoomToSend` says when to try again; the backup
  store's own capacity bounds the rest); at most `max_in_transit_per_peer` handed to the
  transport per next hop; transport attempts at once, +0.5 s, +1 s (the later ones through a
  configured Relay peer, `settings.relays`, when the first failed and one is online; an announced
  role is not trusted); then the message goes to the backup store, replicated on up to 5 online
  peers, and is delivered, with its original id, when the recipient is reachable again (so does
  a resend that cannot leave: its recipient vanished after the first copy went);
- datagrams are never ACKed nor resent (they measure path loss); they are deduplicated all the
  same, and refused when the inbox is full (a datagram cannot wait).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tomproto.core.antispam import SpamGuard
from tomproto.core.backup import MAX_BACKUP_TTL_S, BackupStore
from tomproto.core.backup_exchange import BackupExchange
from tomproto.core.dedup import ExpiringSet, RecentSet
from tomproto.core.delivery import MAX_RESENDS, UNACKED_TYPES, DeliveryStatus, DeliveryTracker, TrackedMessage
from tomproto.core.framing import FrameRefusal
from tomproto.core.group_exchange import GROUP_TYPES, GROUP_UNRELIABLE_TYPES, GroupExchange
from tomproto.core.group_settings import GroupSettings
from tomproto.core.groups import Groups
from tomproto.core.liveness import Liveness
from tomproto.core.outbound import Outbound
from tomproto.core.paths import Transport
from tomproto.core.runtime_events import (
    DuplicateReceived,
    EnvelopeForwarded,
    EnvelopeRefused,
    InboundMessage,
    InboxFull,
    MessageResent,
    MessageStatusChanged,
    MessagesWaiting,
    Purpose,
    RefusalReason,
    RefusedByPeer,
    ReleaseFrame,
    RoomToSend,
    RuntimeOutput,
)
from tomproto.core.transport_events import Received
from tomproto.errors import Backpressure, DecodeError, LocalError
from tomproto.identity import Identity, NodeId
from tomproto.sealing import EnvelopeRejected, new_message_id, open_verified, seal_envelope, verify_envelope
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import (
    DEFAULT_TTL,
    MAX_ENVELOPE_BYTES,
    Envelope,
    MessageType,
    encode_envelope,
    pack_signed,
)
from tomproto.wire.payloads import AckPayload, AckType, PeerAnnounce, ReadReceiptPayload

__all__ = ["Runtime", "RuntimeSettings", "RuntimeCounters", "RuntimeOutput", "MAX_VIA"]

MAX_VIA = 4
DEDUP_TTL_S = 600.0  # id:from
ACK_REPLAY_TTL_S = 300.0  # original_id:from:type
NONCE_MEMORY = 50_000
HEARTBEAT_CHECK_S = 1.0
ANNOUNCE_MAX_AGE_S = 3600.0  # spec §5b: a PeerAnnounce is accepted up to 1 h old...
ANNOUNCE_MAX_AHEAD_S = 300.0  # ...and 5 min in the future



@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    inbox_messages: int = 1024
    inbox_bytes: int = 16 * 1024 * 1024
    # Our messages not yet acknowledged, each kept sealed for its resends (a 1 KiB message is
    # about 3 KB with its record): past this, senders wait.
    max_unacknowledged: int = 2048
    max_in_transit_per_peer: int = 64
    # Frames waiting for room in the inbox; the transport bounds them per connection too.
    max_held_frames: int = 4096
    max_envelope_age_s: float = 540.0  # under DEDUP_TTL_S
    max_clock_ahead_s: float = 300.0
    heartbeat_interval_s: float = 10.0
    relays: frozenset[NodeId] = frozenset()  # configured Relay peers: the only ones routed around through
    # Deliveries remembered (24 h each, ~120 bytes): past this, the oldest are forgotten and a
    # message (direct or backup) older than them is refused as stale.
    dedup_capacity: int = 100_000
    backup: bool = True
    backup_ttl_s: float = MAX_BACKUP_TTL_S
    accept_replicas: bool = True
    groups: GroupSettings = field(default_factory=GroupSettings)
    host_groups: bool = False  # host groups others create here (GroupCreate)
    auto_join_groups: bool = False  # join every group we are invited to


@dataclass(slots=True)
class RuntimeCounters:
    received: Counter[str] = field(default_factory=Counter)  # verified envelopes, by type
    sent: Counter[str] = field(default_factory=Counter)  # transmissions that left, by purpose
    refused: Counter[str] = field(default_factory=Counter)  # by RefusalReason
    refused_by_peers: Counter[str] = field(default_factory=Counter)  # by FrameRefusal
    delivered: int = 0  # messages handed to the application's inbox
    duplicates: int = 0  # dropped, re-ACKed
    acks_sent: int = 0
    acks_unmatched: int = 0  # ACKs for messages we no longer (or never) tracked
    forwarded: int = 0
    forward_failed: int = 0
    resent: int = 0
    failed: int = 0
    transport_failures: int = 0
    held: int = 0  # frames that had to wait for room in the inbox
    backpressure: int = 0  # sends refused because too much was unacknowledged


@dataclass(slots=True)
class _Held:
    envelope: Envelope
    frame: Received
    holder: NodeId | None  # the backup holder that delivered it
    remember_until_s: float | None


class _Kept(enum.Enum):
    HELD = "held"  # a frame the runtime keeps for later: no release now


_HELD = _Kept.HELD
# What becomes of a received frame: accepted (None), refused (why), or kept for later.
Disposition = FrameRefusal | None | Literal[_Kept.HELD]


class Runtime:
    """One node's protocol logic. Feed it frames, transmission outcomes and timers; carry out
    the commands it returns, in order; publish the facts."""

    def __init__(
        self,
        identity: Identity,
        settings: RuntimeSettings,
        now: float,
        *,
        wall_offset_s: float,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.me = identity.node_id
        self._me_hex = identity.node_id.hex
        self.wall_offset_s = wall_offset_s  # Unix time minus `now`: the driver may refresh it
        self._random_bytes = random_bytes
        self.counters = RuntimeCounters()
        self.tracker = DeliveryTracker()
        self.liveness = Liveness(now)
        self.spam = SpamGuard()
        self.store = BackupStore()
        self.backups = BackupExchange(self)
        self.groups = GroupExchange(self, Groups(
            identity, settings.groups, random_bytes=random_bytes, wall_ms=self.wall_ms,
            host_groups=settings.host_groups, auto_join=settings.auto_join_groups,
        ))  # fmt: skip
        self._delivered = ExpiringSet(capacity=settings.dedup_capacity)
        self._acks_seen = ExpiringSet(capacity=200_000)
        self._nonces = RecentSet(NONCE_MEMORY)
        self._inbox: deque[InboundMessage] = deque()
        self._inbox_bytes = 0
        self._held: deque[_Held] = deque()
        self.outbound = Outbound(self.tracker, settings.max_in_transit_per_peer)
        self._last_sent_to: dict[NodeId, float] = {}
        self._linked: dict[NodeId, None] = {}  # peers heard on a link of our own (not via a relay)
        self._next_heartbeat_check = now + HEARTBEAT_CHECK_S
        self._senders_waiting = False

    # -- clocks and sealing ---------------------------------------------------------------------

    def wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset_s) * 1000)

    def seal(
        self, peer: NodeId, msg_type: MessageType, payload: bytes, now: float, *, encrypt: bool | None = None,
        via: tuple[str, ...] = (), ttl: int = DEFAULT_TTL, message_id: str | None = None,
    ) -> tuple[Envelope, bytes]:  # fmt: skip
        sealed = seal_envelope(
            self.identity, peer, msg_type, payload, now_ms=self.wall_ms(now), encrypt=encrypt, via=via, ttl=ttl,
            message_id=message_id, random_bytes=self._random_bytes,
        )  # fmt: skip
        return sealed.envelope, sealed.wire

    # -- sending --------------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        return self.tracker.unfinished < self.settings.max_unacknowledged

    def send(
        self, peer: NodeId, payload: bytes, now: float, *, msg_type: MessageType = MessageType.Chat,
        encrypt: bool | None = None, via: tuple[NodeId, ...] = (), ttl: int = DEFAULT_TTL,
        message_id: str | None = None,
    ) -> tuple[str, list[RuntimeOutput]]:  # fmt: skip
        """Send a tracked message; its id, and what to do. Backpressure when too many of our
        messages are not yet acknowledged (nothing is sent then)."""
        if msg_type in UNACKED_TYPES:
            raise LocalError(f"{msg_type.value} is the runtime's own business, not a message to track")
        if peer == self.me:
            raise LocalError("a node does not send messages to itself")
        if len(via) > MAX_VIA:
            raise LocalError(f"at most {MAX_VIA} relays in via, got {len(via)}")
        if not self.can_send:
            self.counters.backpressure += 1
            self._senders_waiting = True
            raise Backpressure(f"{self.tracker.unfinished} messages are not yet acknowledged")
        out: list[RuntimeOutput] = []
        sent_id = self.send_tracked(
            peer, payload, msg_type, now, out, encrypt=encrypt, via=via, ttl=ttl, message_id=message_id
        )
        return sent_id, out

    def send_tracked(
        self, peer: NodeId, payload: bytes, msg_type: MessageType, now: float, out: list[RuntimeOutput], *,
        encrypt: bool | None = False, via: tuple[NodeId, ...] = (), ttl: int = DEFAULT_TTL,
        message_id: str | None = None, keep_for_offline: bool = True,
    ) -> str:  # fmt: skip
        """Seal, track and queue a message (the protocol's own sends: no back-pressure check)."""
        relays = tuple(hop.hex for hop in via)
        envelope, wire = self.seal(
            peer, msg_type, payload, now, encrypt=encrypt, via=relays, ttl=ttl, message_id=message_id
        )
        if len(wire) > MAX_ENVELOPE_BYTES:
            raise LocalError(f"the envelope is {len(wire)} bytes, over the protocol's {MAX_ENVELOPE_BYTES}")
        if envelope.id in self.tracker:
            raise LocalError(f"message id {envelope.id} is already in use")
        record = TrackedMessage(envelope.id, peer, msg_type.value, envelope, wire, now, relays=relays,
                                keep_for_offline=keep_for_offline)  # fmt: skip
        self.tracker.track(record)
        self.outbound.enqueue(record, out)
        return envelope.id

    def transmit(
        self, hop: NodeId, wire: bytes | Callable[[], bytes], message_id: str, msg_type: MessageType,
        purpose: Purpose, out: list[RuntimeOutput],
    ) -> None:  # fmt: skip
        self.outbound.transmit(hop, wire, message_id, msg_type, purpose, out)

    def transmitted(self, token: int, now: float) -> list[RuntimeOutput]:
        """The transmission `token` left (its first packet is on the way)."""
        out: list[RuntimeOutput] = []
        tx = self.outbound.outcome(token)
        if tx is None:
            return out
        self.counters.sent[tx.purpose.value] += 1
        self._last_sent_to[tx.next_hop] = now
        if tx.purpose is Purpose.message:
            record = self.tracker.sent(tx.message_id, now)
            if record is not None:
                out.append(MessageStatusChanged(record.message_id, record.peer, DeliveryStatus.sent, now))
            self.outbound.pump(tx.next_hop, out)
        return out

    def transmit_failed(self, token: int, now: float, reason: str) -> list[RuntimeOutput]:
        """The transmission `token` could not leave (no route, dial timed out, connection lost)."""
        out: list[RuntimeOutput] = []
        tx = self.outbound.outcome(token)
        if tx is None:
            return out
        self.counters.transport_failures += 1
        if tx.purpose is Purpose.forward:
            self.counters.forward_failed += 1
        if tx.purpose is not Purpose.message:
            return out
        record = self.tracker.get(tx.message_id)
        if record is not None and record.wire is not None and record.status is not DeliveryStatus.failed:
            if self.outbound.retry_later(record, now):
                self._route_around(record, now)
            elif not record.keep_for_offline:
                self.advance(record.message_id, DeliveryStatus.failed, now, out)
            elif record.backed_up_until_s is None:
                # Never left, or left on a connection that then died (its resend cannot reach
                # the recipient either): kept, as the recipient is down; a copy that did arrive
                # makes the backup's delivery a duplicate, re-ACKed.
                self.backups.keep_own(record, now, out)
        self.outbound.pump(tx.next_hop, out)
        return out

    def _route_around(self, record: TrackedMessage, now: float) -> None:
        """After a failed direct attempt, the next ones go through a Relay peer, if one is online
        (re-signed with the relay in `via`; same id, same encrypted payload)."""
        if record.relays or record.envelope is None:
            return
        relay = self.relay_for(record.peer)
        if relay is None:
            return
        unsigned = dataclasses.replace(record.envelope, via=(relay.hex,), signature=b"")
        record.envelope, record.wire = pack_signed(unsigned, self.identity.sign)
        record.relays = (relay.hex,)

    def relay_for(self, target: NodeId) -> NodeId | None:
        """The most recently heard online configured relay (`settings.relays`), other than the
        target. A Relay role announced in a PeerAnnounce is the peer's own word: not trusted
        until roles and reputation are (ROADMAP)."""
        for peer in self.liveness.online():
            if peer != target and peer in self.settings.relays:
                return peer
        return None

    def refused_by_peer(self, message_id: str, peer: NodeId, refusal: FrameRefusal, now: float) -> list[RuntimeOutput]:
        """A next hop refused a frame of ours: counted and published; a message's delivery
        deadline then sends it again."""
        self.counters.refused_by_peers[refusal.name] += 1
        return [RefusedByPeer(message_id, peer, refusal, now)]

    def query_backups(self, holder: NodeId, now: float) -> list[RuntimeOutput]:
        """Ask `holder` for the messages it keeps for us (BackupQuery)."""
        out: list[RuntimeOutput] = []
        self.backups.query(holder, now, out)
        return out

    def grant(self, peer: NodeId, rate_per_s: float, burst: float, until_s: float, now: float) -> bool:
        return self.spam.grant(peer, rate_per_s, burst, until_s, now)

    def revoke(self, peer: NodeId) -> None:
        """End `peer`'s grant now: it is held to the anonymous bucket again."""
        self.spam.revoke(peer)

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, frame: Received, now: float) -> list[RuntimeOutput]:
        out: list[RuntimeOutput] = []
        disposition = self._receive(frame, now, out)
        if disposition is not _Kept.HELD:
            out.append(ReleaseFrame(frame, disposition))
        return out

    def _receive(self, frame: Received, now: float, out: list[RuntimeOutput]) -> Disposition:
        data = frame.data
        if len(data) > MAX_ENVELOPE_BYTES:
            return self.refuse(RefusalReason.too_large, frame, None, f"{len(data)} bytes", now, out)
        try:
            envelope = verify_envelope(data)
        except EnvelopeRejected as refused:
            return self.refuse(RefusalReason(refused.reason.value), frame, None, str(refused), now, out)
        sender = NodeId(bytes.fromhex(envelope.sender))  # its signature verified: a valid key
        if not self.spam.admit(sender, envelope.msg_type, now):
            return self.refuse(RefusalReason.throttled, frame, envelope, "over its budget", now, out,
                               FrameRefusal.throttled)  # fmt: skip
        self.counters.received[envelope.msg_type.value] += 1
        age_s = self.wall_ms(now) / 1000 - envelope.timestamp_ms / 1000
        if age_s > self.settings.max_envelope_age_s:
            return self.refuse(RefusalReason.stale, frame, envelope, f"{age_s:.0f} s old", now, out)
        if -age_s > self.settings.max_clock_ahead_s:
            return self.refuse(RefusalReason.from_the_future, frame, envelope, f"{-age_s:.0f} s ahead", now, out)
        if len(envelope.via) > MAX_VIA:
            return self.refuse(RefusalReason.via_too_long, frame, envelope, f"{len(envelope.via)} hops", now, out)
        # Only a fresh envelope says its peers are alive (a replayed one says nothing of them).
        self._linked[frame.peer] = None
        self.heard_from(frame.peer, now, out)
        if sender != frame.peer:
            self.heard_from(sender, now, out)
        if envelope.recipient == self._me_hex:
            return self._addressed_to_me(envelope, sender, frame, now, out)
        if self._me_hex in envelope.via:
            position = envelope.via.index(self._me_hex)
            hops = envelope.via[position + 1 :]
            return self._forward(envelope, sender, hops[0] if hops else envelope.recipient, frame, now, out)
        return self._forward(envelope, sender, envelope.recipient, frame, now, out)

    def refuse(
        self, reason: RefusalReason, frame: Received, envelope: Envelope | None, detail: str, now: float,
        out: list[RuntimeOutput], refusal: FrameRefusal = FrameRefusal.rejected,
    ) -> FrameRefusal:  # fmt: skip
        """Count and publish a refusal; `refusal`, what the transport peer is told."""
        self.counters.refused[reason.value] += 1
        out.append(EnvelopeRefused(
            reason, frame.peer, None if envelope is None else envelope.sender,
            None if envelope is None else envelope.id, detail, now,
        ))  # fmt: skip
        return refusal

    def heard_from(self, peer: NodeId, now: float, out: list[RuntimeOutput]) -> None:
        change = self.liveness.heard_from(peer, now)
        if change is not None:
            out.append(change)
            self.backups.recipient_online(peer, now, out)
            self.groups.peer_online(peer, now, out)

    def peer_connected(self, peer: NodeId, now: float) -> list[RuntimeOutput]:
        """The transport has a connection with `peer`: it is alive."""
        out: list[RuntimeOutput] = []
        self._linked[peer] = None
        self.heard_from(peer, now, out)
        return out

    def _addressed_to_me(
        self, envelope: Envelope, sender: NodeId, frame: Received, now: float, out: list[RuntimeOutput]
    ) -> Disposition:
        msg_type = envelope.msg_type
        if msg_type is MessageType.Ack or msg_type is MessageType.ReadReceipt:
            return self._acknowledged(envelope, sender, frame, now, out)
        if msg_type is MessageType.Heartbeat:
            return None
        if msg_type is MessageType.PeerAnnounce:
            return self._announced(envelope, sender, frame, now, out)
        if msg_type in GROUP_UNRELIABLE_TYPES:
            return self.groups.unreliable(envelope, sender, frame, now, out)
        if msg_type in UNACKED_TYPES:
            return self.backups.handle(envelope, sender, frame, now, out)
        return self.deliver(envelope, sender, frame, now, out)

    def _acknowledged(
        self, envelope: Envelope, sender: NodeId, frame: Received, now: float, out: list[RuntimeOutput]
    ) -> Disposition:
        try:
            if envelope.msg_type is MessageType.Ack:
                ack = decode(envelope.payload, AckPayload)
                original_id, status = ack.original_id, (
                    DeliveryStatus.delivered if ack.ack_type is AckType.RecipientReceived else DeliveryStatus.relayed
                )
            else:
                receipt = decode(envelope.payload, ReadReceiptPayload)
                original_id, status = receipt.original_id, DeliveryStatus.read
        except DecodeError as error:
            return self.refuse(RefusalReason.bad_payload, frame, envelope, str(error), now, out)
        key = f"{original_id}:{envelope.sender}:{status.name}"
        if self._acks_seen.contains(key, now):
            return None  # the same acknowledgement again: applied once
        record = self.tracker.get(original_id)
        if record is None:
            self.counters.acks_unmatched += 1
            return None
        allowed = envelope.sender in record.relays if status is DeliveryStatus.relayed else sender == record.peer
        if not allowed:
            return self.refuse(RefusalReason.forged_ack, frame, envelope, f"for {original_id}", now, out)
        self._acks_seen.add(key, now + ACK_REPLAY_TTL_S, now)
        self.advance(record.message_id, status, now, out)
        return None

    def advance(self, message_id: str, status: DeliveryStatus, now: float, out: list[RuntimeOutput]) -> None:
        record = self.tracker.advance(message_id, status, now)
        if record is None:
            return
        if status is DeliveryStatus.failed:
            self.counters.failed += 1
        out.append(MessageStatusChanged(message_id, record.peer, status, now))
        if status >= DeliveryStatus.delivered and status is not DeliveryStatus.failed:
            self.backups.own_delivered(message_id, now, out)
        self.groups.finished(message_id, status, now, out)
        self.room_freed(out)

    def room_freed(self, out: list[RuntimeOutput]) -> None:
        """Tell senders waiting for room that there is some now."""
        if self._senders_waiting and self.can_send:
            self._senders_waiting = False
            out.append(RoomToSend())

    def _announced(
        self, envelope: Envelope, sender: NodeId, frame: Received, now: float, out: list[RuntimeOutput]
    ) -> Disposition:
        try:
            announce = decode(envelope.payload, PeerAnnounce)
        except DecodeError as error:
            return self.refuse(RefusalReason.bad_payload, frame, envelope, str(error), now, out)
        age_s = (self.wall_ms(now) - announce.timestamp_ms) / 1000
        if age_s > ANNOUNCE_MAX_AGE_S or -age_s > ANNOUNCE_MAX_AHEAD_S:
            return self.refuse(RefusalReason.stale, frame, envelope, f"announced {age_s:.0f} s ago", now, out)
        return None  # checked, and not acted on yet: an announced role is the peer's own word

    # -- delivery to the application ------------------------------------------------------------

    def _inbox_has_room(self, size: int) -> bool:
        settings = self.settings
        return len(self._inbox) < settings.inbox_messages and (
            not self._inbox or self._inbox_bytes + size <= settings.inbox_bytes
        )

    def deliver(
        self, envelope: Envelope, sender: NodeId, frame: Received, now: float, out: list[RuntimeOutput],
        *, holder: NodeId | None = None, remember_until_s: float | None = None, from_held: bool = False,
    ) -> Disposition:  # fmt: skip
        """Deliver a message addressed to us once: into the inbox and ACKed, or a duplicate
        re-ACKed, or held (un-released) while the inbox is full or earlier frames wait
        (`from_held`: the oldest waiting frame itself, whose turn it is)."""
        key = _delivery_key(envelope)
        reliable = frame.transport is Transport.stream
        if self._delivered.contains(key, now):
            self.counters.duplicates += 1
            out.append(DuplicateReceived(envelope.id, sender, now))
            if reliable:
                self._ack(envelope, sender, now, out, direct=holder is not None)
            if holder is not None:
                self.backups.confirm(holder, envelope.id, now, out)
            return None
        if self.forgotten(envelope, now):
            return self.refuse(RefusalReason.stale, frame, envelope, "older than our dedup memory", now, out)
        if envelope.msg_type in GROUP_TYPES:
            return self._group_delivered(envelope, sender, frame, key, now, out)
        if not reliable:
            if not self._inbox_has_room(len(envelope.payload)):
                return self.refuse(RefusalReason.inbox_full, frame, envelope, "a datagram cannot wait", now, out)
        elif (self._held and not from_held) or not self._inbox_has_room(len(envelope.payload)):
            return self._hold(_Held(envelope, frame, holder, remember_until_s), frame, now, out)
        try:
            opened = open_verified(self.identity, envelope)
        except EnvelopeRejected as refused:
            return self.refuse(RefusalReason(refused.reason.value), frame, envelope, str(refused), now, out)
        if opened.nonce is not None and not self._nonces.add(opened.nonce):
            return self.refuse(RefusalReason.replayed_nonce, frame, envelope, "nonce seen before", now, out)
        until = max(self.remembered_until(envelope, now), remember_until_s or 0.0)
        self._delivered.add(key, until, now)
        self._inbox.append(InboundMessage(envelope, opened.plaintext, frame, holder))
        self._inbox_bytes += len(envelope.payload)  # the size the room check used
        self.counters.delivered += 1
        out.append(MessagesWaiting())
        if reliable and envelope.msg_type not in UNACKED_TYPES:
            self._ack(envelope, sender, now, out, direct=holder is not None)
        if holder is not None:
            self.backups.confirm(holder, envelope.id, now, out)
        return None

    def _group_delivered(
        self, envelope: Envelope, sender: NodeId, frame: Received, key: bytes, now: float, out: list[RuntimeOutput]
    ) -> Disposition:
        """A group envelope goes to the group engine, never to the inbox: it never waits."""
        payload = self.groups.decode(envelope, frame, now, out)
        if payload is None:
            return FrameRefusal.rejected
        self._delivered.add(key, self.remembered_until(envelope, now), now)
        if frame.transport is Transport.stream:
            self._ack(envelope, sender, now, out, direct=False)
        self.groups.consume(payload, sender, now, out)
        return None

    def remembered_until(self, envelope: Envelope, now: float) -> float:
        """Until when a delivery of `envelope` is remembered: as long as a backup of it could
        be delivered (24 h after its timestamp), 10 minutes at least."""
        wall_s = self.wall_ms(now) / 1000
        return max(now + DEDUP_TTL_S, now + envelope.timestamp_ms / 1000 + MAX_BACKUP_TTL_S - wall_s)

    def forgotten(self, envelope: Envelope, now: float) -> bool:
        """Whether a delivery of `envelope` may have been forgotten already (the table overflowed
        past it): it can no longer be told from a replay."""
        return self.remembered_until(envelope, now) <= self._delivered.forgotten_until

    def _hold(self, held: _Held, frame: Received, now: float, out: list[RuntimeOutput]) -> Disposition:
        if len(self._held) >= self.settings.max_held_frames:
            return self.refuse(RefusalReason.inbox_full, frame, held.envelope, "too many frames waiting", now, out,
                               FrameRefusal.unavailable)  # fmt: skip
        if not self._held:
            out.append(InboxFull(len(self._held) + 1, now))
        self._held.append(held)
        self.counters.held += 1
        return _HELD

    def take_message(self, now: float) -> tuple[InboundMessage | None, list[RuntimeOutput]]:
        """The oldest message in the inbox (None: empty), and what taking it set in motion:
        frames that waited for room are delivered (and ACKed) now."""
        out: list[RuntimeOutput] = []
        if not self._inbox:
            return None, out
        message = self._inbox.popleft()
        self._inbox_bytes -= len(message.envelope.payload)
        while self._held and self._inbox_has_room(len(self._held[0].envelope.payload)):
            held = self._held.popleft()
            sender = NodeId(bytes.fromhex(held.envelope.sender))
            disposition = self.deliver(
                held.envelope, sender, held.frame, now, out, holder=held.holder, remember_until_s=held.remember_until_s,
                from_held=True,
            )
            if disposition is _Kept.HELD:  # cannot happen: there was room
                break
            out.append(ReleaseFrame(held.frame, disposition))
        return message, out

    @property
    def inbox_size(self) -> int:
        return len(self._inbox)

    @property
    def held_frames(self) -> int:
        return len(self._held)

    def _ack(self, envelope: Envelope, sender: NodeId, now: float, out: list[RuntimeOutput], *, direct: bool) -> None:
        """RecipientReceived to the sender, back along the reversed `via` (straight back for a
        message that came from a backup: its holder is not on the way back). Sealed when the
        driver sends it, after the application got the message."""
        via = () if direct else tuple(reversed(envelope.via))
        hop = NodeId(bytes.fromhex(via[0])) if via else sender
        self._send_ack(sender, envelope.id, AckType.RecipientReceived, via, hop, now, out)

    def _send_ack(
        self, sender: NodeId, original_id: str, ack_type: AckType, via: tuple[str, ...], hop: NodeId, now: float,
        out: list[RuntimeOutput],
    ) -> None:  # fmt: skip
        ack_id = new_message_id(self._random_bytes)
        payload = encode(AckPayload(original_id, ack_type))

        def seal_ack() -> bytes:
            return self.seal(sender, MessageType.Ack, payload, now, encrypt=False, via=via, message_id=ack_id)[1]

        self.counters.acks_sent += 1
        self.transmit(hop, seal_ack, ack_id, MessageType.Ack, Purpose.ack, out)

    def mark_read(self, message: InboundMessage, now: float) -> list[RuntimeOutput]:
        """Tell the sender its message was read (ReadReceipt, straight back)."""
        out: list[RuntimeOutput] = []
        sender = NodeId(bytes.fromhex(message.envelope.sender))
        payload = encode(ReadReceiptPayload(message.message_id, self.wall_ms(now)))
        receipt, wire = self.seal(sender, MessageType.ReadReceipt, payload, now, encrypt=False)
        self.transmit(sender, wire, receipt.id, MessageType.ReadReceipt, Purpose.ack, out)
        return out

    # -- forwarding -----------------------------------------------------------------------------

    def _forward(
        self, envelope: Envelope, sender: NodeId, next_hop_hex: str, frame: Received, now: float,
        out: list[RuntimeOutput],
    ) -> Disposition:  # fmt: skip
        if envelope.ttl == 0:
            return self.refuse(RefusalReason.ttl_exhausted, frame, envelope, "no hop left", now, out)
        if next_hop_hex == self._me_hex or next_hop_hex == frame.peer.hex:
            return self.refuse(RefusalReason.route_loops, frame, envelope, "the next hop is us or the sender", now, out)
        wire = encode_envelope(dataclasses.replace(envelope, ttl=envelope.ttl - 1))
        next_hop = NodeId(bytes.fromhex(next_hop_hex))
        self.transmit(next_hop, wire, envelope.id, envelope.msg_type, Purpose.forward, out)
        self.counters.forwarded += 1
        out.append(EnvelopeForwarded(envelope.id, sender, NodeId(bytes.fromhex(envelope.recipient)),
                                     next_hop, now))  # fmt: skip
        if envelope.msg_type not in UNACKED_TYPES:
            self._send_ack(sender, envelope.id, AckType.RelayForwarded, (), sender, now, out)
        return None

    # -- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [self.liveness.next_deadline(), self._next_heartbeat_check]
        for deadline in (self.tracker.next_deadline(), self.store.next_deadline()):
            if deadline is not None:
                times.append(deadline)
        for deadline in (self.outbound.next_deadline(), self.groups.next_deadline()):
            if deadline is not None:
                times.append(deadline)
        return min(times)

    def handle_timer(self, now: float) -> list[RuntimeOutput]:
        out: list[RuntimeOutput] = []
        for change in self.liveness.tick(now):
            out.append(change)
        for record in self.tracker.due(now):
            self._deadline_passed(record, now, out)
        self.outbound.retries_due(now, out)
        self.backups.handle_timer(now, out)
        self.groups.handle_timer(now, out)
        if now >= self._next_heartbeat_check:
            self._next_heartbeat_check = now + HEARTBEAT_CHECK_S
            self._heartbeats(now, out)
            self.tracker.forget_finished(now)
            self._delivered.expire(now)
            self._acks_seen.expire(now)
        return out

    def _deadline_passed(self, record: TrackedMessage, now: float, out: list[RuntimeOutput]) -> None:
        backed_up = record.backed_up_until_s is not None
        if not backed_up and record.status in (DeliveryStatus.sent, DeliveryStatus.relayed) and (
            record.resends < MAX_RESENDS
        ):
            self.tracker.resent(record)
            record.transport_attempts = 0
            self.counters.resent += 1
            out.append(MessageResent(record.message_id, record.peer, record.resends, now))
            self.outbound.enqueue(record, out)
            return
        self.advance(record.message_id, DeliveryStatus.failed, now, out)

    def _heartbeats(self, now: float, out: list[RuntimeOutput]) -> None:
        """A heartbeat to each live peer we have not sent anything to lately, so that it keeps
        us Online too (and learns it can deliver what it holds for us)."""
        interval = self.settings.heartbeat_interval_s
        for peer in self.liveness.online():
            if peer in self._linked and now - self._last_sent_to.get(peer, float("-inf")) >= interval:
                self._last_sent_to[peer] = now
                heartbeat, wire = self.seal(peer, MessageType.Heartbeat, b"", now, encrypt=False)
                self.transmit(peer, wire, heartbeat.id, MessageType.Heartbeat, Purpose.heartbeat, out)
        if len(self._last_sent_to) + len(self._linked) > 2 * self.liveness.max_peers:
            self._last_sent_to = {p: t for p, t in self._last_sent_to.items() if self.liveness.status(p) is not None}
            self._linked = {p: None for p in self._linked if self.liveness.status(p) is not None}


def _delivery_key(envelope: Envelope) -> bytes:
    """`id:from`, digested: 16 bytes instead of a 101-character string, for a table that
    remembers a day of deliveries."""
    return hashlib.blake2b(f"{envelope.id}:{envelope.sender}".encode(), digest_size=16).digest()
