"""The backup exchange: keeping messages for offline recipients, replicating them on other peers,
and delivering them, once, when the recipient can be reached again. Part of the runtime.

Rules it enforces (spec/protocol.md §7, with our decisions):
- a message of ours that no transport attempt could deliver is kept min(ttl, 24 h), and
  replicated (BackupReplicate) on up to 5 online peers other than the recipient; a holder keeps
  a replica only of the replicating peer's own message, sent on a link of our own (not
  forwarded), after checking the inner envelope's signature and addresses, at most
  MAX_REPLICAS_PER_SENDER per sender and never by evicting an entry (a full store refuses it),
  and confirms it (BackupReplicateAck);
- every holder tries to deliver (BackupDeliver, carrying the original envelope byte for byte)
  when the recipient comes back Online, and otherwise every 5 s doubling to 60 s (never twice
  within 5 s, however often the recipient comes back or asks); the recipient
  checks the inner envelope as if it came directly, delivers it once (its dedup holds across
  holders, for as long as the backup could live), ACKs the original sender and confirms to the
  holder (BackupConfirmDelivery), which then drops its entry (a confirmation from anyone else is
  refused); so does the sender on the ACK;
- a peer asking for its messages (BackupQuery naming itself) gets them at once;
- an entry that expires or is evicted is reported (BackupExpired); our own message then fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tomproto.core.backup import MAX_BACKUP_TTL_S, MAX_REPLICAS, BackupEntry
from tomproto.core.delivery import UNACKED_TYPES, DeliveryStatus, TrackedMessage
from tomproto.core.runtime_events import (
    BackupDelivered,
    BackupExpired,
    BackupReplicated,
    BackupStored,
    Purpose,
    RefusalReason,
)
from tomproto.core.transport_events import Received
from tomproto.errors import DecodeError
from tomproto.identity import NodeId
from tomproto.sealing import EnvelopeRejected, verify_envelope
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import MAX_ENVELOPE_BYTES, Envelope, MessageType
from tomproto.wire.payloads import (
    BackupMessageIdsPayload,
    BackupPayload,
    BackupQueryPayload,
    BackupReplicateAckPayload,
)

if TYPE_CHECKING:
    from tomproto.core.runtime import Disposition, Runtime, RuntimeOutput

__all__ = ["BackupExchange", "FIRST_RETRY_S", "MAX_RETRY_S", "MAX_REPLICAS_PER_SENDER"]

FIRST_RETRY_S = 5.0
MAX_RETRY_S = 60.0
_MAX_DOUBLINGS = 16  # FIRST_RETRY_S doubled this often is far past MAX_RETRY_S
MAX_REPLICAS_PER_SENDER = 1000  # one peer cannot fill our store with its messages
VIABILITY = 100  # the reference's viability score; we do not rank holders yet


class BackupExchange:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store

    # -- our own messages -----------------------------------------------------------------------

    def keep_own(self, record: TrackedMessage, now: float, out: list[RuntimeOutput]) -> None:
        """No transport attempt reached the recipient: keep the message, or fail it."""
        runtime = self.runtime
        settings = runtime.settings
        ttl_s = min(settings.backup_ttl_s, MAX_BACKUP_TTL_S)
        if not settings.backup or record.wire is None or not self._fits(record.wire):
            runtime.advance(record.message_id, DeliveryStatus.failed, now, out)
            return
        entry = BackupEntry(
            record.message_id, record.peer, runtime.me, record.wire, now + ttl_s, runtime.wall_ms(now + ttl_s),
            replica=False, next_attempt_s=now + FIRST_RETRY_S,
        )  # fmt: skip
        self._add(entry, now, out)
        runtime.tracker.backed_up(record.message_id, entry.expires_s)  # no longer holds senders back
        runtime.room_freed(out)
        self._replicate(entry, now, out)

    def own_delivered(self, message_id: str, now: float, out: list[RuntimeOutput]) -> None:
        entry = self.store.get(message_id)
        if entry is not None and not entry.replica:
            self.store.remove(message_id)
            out.append(BackupDelivered(message_id, entry.recipient, now))

    def _fits(self, wire: bytes) -> bool:
        """Whether a BackupDeliver carrying `wire` stays under the protocol's envelope cap (byte
        fields travel as integer arrays: up to 2 bytes each, plus the envelope around it)."""
        return 2 * len(wire) + 1024 <= MAX_ENVELOPE_BYTES

    def _add(self, entry: BackupEntry, now: float, out: list[RuntimeOutput]) -> None:
        for evicted in self.store.add(entry):
            self._gone(evicted, now, out, evicted=True)
        out.append(BackupStored(
            entry.message_id, entry.recipient, entry.sender, entry.replica, entry.expires_at_ms, now
        ))  # fmt: skip

    def _replicate(self, entry: BackupEntry, now: float, out: list[RuntimeOutput]) -> None:
        """Ask online peers (never the recipient) to keep a replica, up to MAX_REPLICAS."""
        runtime = self.runtime
        wanted = MAX_REPLICAS - len(entry.asked)
        if wanted <= 0:
            return
        holders = [p for p in runtime.liveness.online() if p != entry.recipient and p not in entry.asked][:wanted]
        for holder in holders:
            entry.asked.add(holder)
            payload = self._payload(entry)
            envelope, wire = runtime.seal(holder, MessageType.BackupReplicate, payload, now, encrypt=False)
            runtime.transmit(holder, wire, envelope.id, MessageType.BackupReplicate, Purpose.backup, out)

    def _payload(self, entry: BackupEntry) -> bytes:
        return encode(BackupPayload(
            entry.message_id, entry.wire, entry.recipient.hex, entry.sender.hex, entry.expires_at_ms, VIABILITY,
            tuple(sorted(holder.hex for holder in entry.replicated_to)),
        ))  # fmt: skip

    # -- delivering -----------------------------------------------------------------------------

    def recipient_online(self, peer: NodeId, now: float, out: list[RuntimeOutput]) -> None:
        for entry in self.store.for_recipient(peer):
            self._attempt(entry, now, out)

    def _attempt(self, entry: BackupEntry, now: float, out: list[RuntimeOutput]) -> None:
        runtime = self.runtime
        if now - entry.last_attempt_s < FIRST_RETRY_S and entry.next_attempt_s > now:
            return  # tried a moment ago (its scheduled retry is not due): a query does not resend it all
        entry.last_attempt_s = now
        entry.attempts += 1
        doublings = min(entry.attempts - 1, _MAX_DOUBLINGS)  # 2 ** 1024 does not fit a float (~17 h of tries)
        self.store.schedule(entry, now + min(MAX_RETRY_S, FIRST_RETRY_S * 2**doublings))
        envelope, wire = runtime.seal(entry.recipient, MessageType.BackupDeliver, self._payload(entry), now,
                                      encrypt=False)  # fmt: skip
        runtime.transmit(entry.recipient, wire, envelope.id, MessageType.BackupDeliver, Purpose.backup, out)

    def query(self, holder: NodeId, now: float, out: list[RuntimeOutput]) -> None:
        """Ask `holder` for the messages it keeps for us (BackupQuery naming ourselves): what a
        node that comes back sends to the peers it knows, rather than wait for their retries."""
        runtime = self.runtime
        payload = encode(BackupQueryPayload(runtime.me.hex))
        envelope, wire = runtime.seal(holder, MessageType.BackupQuery, payload, now, encrypt=False)
        runtime.transmit(holder, wire, envelope.id, MessageType.BackupQuery, Purpose.backup, out)

    def confirm(self, holder: NodeId, message_id: str, now: float, out: list[RuntimeOutput]) -> None:
        """Tell a holder its copy reached us (so it stops trying)."""
        runtime = self.runtime
        payload = encode(BackupMessageIdsPayload((message_id,)))
        envelope, wire = runtime.seal(holder, MessageType.BackupConfirmDelivery, payload, now, encrypt=False)
        runtime.transmit(holder, wire, envelope.id, MessageType.BackupConfirmDelivery, Purpose.backup, out)

    def handle_timer(self, now: float, out: list[RuntimeOutput]) -> None:
        deadline = self.store.next_deadline()
        if deadline is None or deadline > now:
            return
        for entry in self.store.expired(now):
            self._gone(entry, now, out, evicted=False)
        for entry in self.store.due_attempts(now):
            self._attempt(entry, now, out)
            if not entry.replica:
                self._replicate(entry, now, out)

    def _gone(self, entry: BackupEntry, now: float, out: list[RuntimeOutput], *, evicted: bool) -> None:
        out.append(BackupExpired(entry.message_id, entry.recipient, evicted, now))
        if not entry.replica:
            self.runtime.advance(entry.message_id, DeliveryStatus.failed, now, out)

    # -- the exchange's messages ----------------------------------------------------------------

    def handle(
        self, envelope: Envelope, sender: NodeId, frame: Received, now: float, out: list[RuntimeOutput]
    ) -> Disposition:
        msg_type = envelope.msg_type
        try:
            if msg_type in (MessageType.BackupReplicate, MessageType.BackupStore, MessageType.BackupDeliver):
                return self._backup(envelope, sender, decode(envelope.payload, BackupPayload), frame, now, out)
            if msg_type is MessageType.BackupReplicateAck:
                self._replica_kept(sender, decode(envelope.payload, BackupReplicateAckPayload).message_id, now, out)
            elif msg_type is MessageType.BackupConfirmDelivery:
                message_ids = decode(envelope.payload, BackupMessageIdsPayload).message_ids
                if [message_id for message_id in message_ids if not self._confirmed(sender, message_id, now, out)]:
                    return self.runtime.refuse(RefusalReason.backup_refused, frame, envelope,
                                               "only its recipient confirms a delivery", now, out)  # fmt: skip
            elif msg_type is MessageType.BackupQuery:
                asked_for = decode(envelope.payload, BackupQueryPayload).recipient_id
                for entry in self.store.for_recipient(sender) if asked_for == envelope.sender else []:
                    self._attempt(entry, now, out)
        except DecodeError as error:
            return self.runtime.refuse(RefusalReason.bad_payload, frame, envelope, str(error), now, out)
        return None

    def _inner(self, backup: BackupPayload) -> Envelope | str:
        """The backed-up envelope, checked against what the backup says of it; or why not."""
        try:
            inner = verify_envelope(backup.payload)
        except EnvelopeRejected as refused:
            return str(refused)
        if inner.id != backup.message_id or inner.sender != backup.sender_id:
            return "the backup does not match the envelope it carries"
        if inner.recipient != backup.recipient_id:
            return "the backup names another recipient than its envelope"
        return inner

    def _backup(
        self, envelope: Envelope, sender: NodeId, backup: BackupPayload, frame: Received, now: float,
        out: list[RuntimeOutput],
    ) -> Disposition:  # fmt: skip
        """A replica to keep or a delivery to us: the envelope it carries is checked (and its
        signature verified) once, here."""
        runtime = self.runtime
        inner = self._inner(backup)
        if isinstance(inner, str):
            return runtime.refuse(RefusalReason.backup_refused, frame, envelope, inner, now, out)
        if envelope.msg_type is not MessageType.BackupDeliver:
            if backup.sender_id != envelope.sender:
                return runtime.refuse(RefusalReason.backup_refused, frame, envelope, "only a sender replicates", now,
                                      out)  # fmt: skip
            if inner.recipient != runtime.me.hex:  # a replica of a message for us is a delivery
                return self._keep_replica(envelope, sender, backup, frame, now, out)
        return self._delivered_to_us(envelope, sender, backup, inner, frame, now, out)

    def _expires_in_s(self, backup: BackupPayload, now: float) -> float:
        """How long the backup may still live: its holder's word, 24 h at most."""
        return min(backup.expires_at_ms / 1000 - self.runtime.wall_ms(now) / 1000, MAX_BACKUP_TTL_S)

    def _keep_replica(
        self, envelope: Envelope, sender: NodeId, backup: BackupPayload, frame: Received, now: float,
        out: list[RuntimeOutput],
    ) -> Disposition:  # fmt: skip
        runtime = self.runtime
        if not runtime.settings.accept_replicas:
            return runtime.refuse(RefusalReason.backup_refused, frame, envelope, "we keep no replicas", now, out)
        if frame.peer != sender:
            return runtime.refuse(RefusalReason.backup_refused, frame, envelope, "a replica comes on its sender's link",
                                  now, out)  # fmt: skip
        expires_in_s = self._expires_in_s(backup, now)
        if expires_in_s <= 0:
            return runtime.refuse(RefusalReason.stale, frame, envelope, "the backup has expired", now, out)
        if backup.message_id not in self.store:
            if self.store.full:  # our own entries are never evicted for someone else's
                return runtime.refuse(RefusalReason.backup_refused, frame, envelope, "store full", now, out)
            if self.store.replicas_from(sender) >= MAX_REPLICAS_PER_SENDER:
                return runtime.refuse(RefusalReason.backup_refused, frame, envelope, "too many replicas from it",
                                      now, out)  # fmt: skip
            entry = BackupEntry(
                backup.message_id, NodeId(bytes.fromhex(backup.recipient_id)), sender, backup.payload,
                now + expires_in_s, backup.expires_at_ms, replica=True, next_attempt_s=now + FIRST_RETRY_S,
            )  # fmt: skip
            self._add(entry, now, out)
        payload = encode(BackupReplicateAckPayload(backup.message_id))
        ack, wire = runtime.seal(sender, MessageType.BackupReplicateAck, payload, now, encrypt=False)
        runtime.transmit(sender, wire, ack.id, MessageType.BackupReplicateAck, Purpose.backup, out)
        return None

    def _delivered_to_us(
        self, envelope: Envelope, holder: NodeId, backup: BackupPayload, inner: Envelope, frame: Received,
        now: float, out: list[RuntimeOutput],
    ) -> Disposition:  # fmt: skip
        runtime = self.runtime
        if inner.recipient != runtime.me.hex:
            return runtime.refuse(RefusalReason.wrong_recipient, frame, envelope, "a backup for another node", now, out)
        if inner.msg_type in UNACKED_TYPES:
            return runtime.refuse(RefusalReason.backup_refused, frame, envelope, "not a message", now, out)
        expires_in_s = self._expires_in_s(backup, now)
        if expires_in_s <= 0:
            return runtime.refuse(RefusalReason.stale, frame, envelope, "the backup has expired", now, out)
        # The expiry is the holder's word; the inner timestamp is the sender's, signed. A message
        # older than any backup may live cannot be told from a replay (nor one older than what we
        # still remember having delivered: `deliver` refuses that).
        if runtime.wall_ms(now) - inner.timestamp_ms > MAX_BACKUP_TTL_S * 1000:
            return runtime.refuse(RefusalReason.stale, frame, envelope, "older than any backup lives", now, out)
        original_sender = NodeId(bytes.fromhex(inner.sender))
        return runtime.deliver(inner, original_sender, frame, now, out, holder=holder,
                               remember_until_s=now + expires_in_s)  # fmt: skip

    def _replica_kept(self, holder: NodeId, message_id: str, now: float, out: list[RuntimeOutput]) -> None:
        entry = self.store.get(message_id)
        if entry is not None and not entry.replica and holder in entry.asked and holder not in entry.replicated_to:
            entry.replicated_to.add(holder)
            out.append(BackupReplicated(message_id, holder, now))

    def _confirmed(self, recipient: NodeId, message_id: str, now: float, out: list[RuntimeOutput]) -> bool:
        """False: a confirmation of an entry for someone else (only the recipient confirms)."""
        entry = self.store.get(message_id)
        if entry is None:
            return True  # confirmed already (or never ours): nothing to do
        if entry.recipient != recipient:
            return False
        self.store.remove(message_id)
        out.append(BackupDelivered(message_id, recipient, now))
        if not entry.replica:
            self.runtime.advance(message_id, DeliveryStatus.delivered, now, out)
        return True
