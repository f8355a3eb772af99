"""What the protocol runtime asks its driver to do (commands) and what it reports (facts).

Commands are imperative (`TransmitEnvelope`), facts past tense (`MessageStatusChanged`). The
driver carries out commands in the order given: an application's answer to a delivery therefore
leaves before the ACK of that delivery, which the runtime emits after it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from tomproto.core.delivery import DeliveryStatus
from tomproto.core.framing import FrameRefusal
from tomproto.core.group_events import GroupEvent
from tomproto.core.liveness import PeerStatusChanged
from tomproto.core.transport_events import Received
from tomproto.identity import NodeId
from tomproto.wire.envelope import Envelope, MessageType

__all__ = [
    "Purpose",
    "TransmitEnvelope",
    "ReleaseFrame",
    "MessagesWaiting",
    "RoomToSend",
    "RuntimeCommand",
    "InboundMessage",
    "RefusalReason",
    "MessageStatusChanged",
    "MessageResent",
    "EnvelopeForwarded",
    "EnvelopeRefused",
    "DuplicateReceived",
    "RefusedByPeer",
    "InboxFull",
    "BackupStored",
    "BackupReplicated",
    "BackupDelivered",
    "BackupExpired",
    "PeerStatusChanged",
    "RuntimeEvent",
    "RuntimeOutput",
]


class Purpose(enum.StrEnum):
    """Why an envelope is transmitted: the driver counts by it, the runtime routes its outcome."""

    message = "message"  # a tracked message of ours (first send or resend)
    ack = "ack"
    forward = "forward"  # someone else's envelope we relay
    backup = "backup"  # backup protocol traffic (replicate, deliver, confirm)
    heartbeat = "heartbeat"
    group = "group"  # the group failover's probes (pings, pongs, reports, heartbeats)


# -- commands ---------------------------------------------------------------------------------


class TransmitEnvelope:
    """Send `wire` to `next_hop` on a stream of its own; report `transmitted(token, ...)` or
    `transmit_failed(token, ...)` back.

    An acknowledgement is sealed only when its `wire` is first read, that is when the driver
    carries the command out: after the application got the message it acknowledges, so that
    signing the ACK never sits in the round trip the application measures."""

    __slots__ = ("_build", "_wire", "message_id", "msg_type", "next_hop", "purpose", "token")

    def __init__(
        self, token: int, next_hop: NodeId, wire: bytes | Callable[[], bytes], message_id: str,
        msg_type: MessageType, purpose: Purpose,
    ) -> None:  # fmt: skip
        self.token = token
        self.next_hop = next_hop
        self.message_id = message_id
        self.msg_type = msg_type
        self.purpose = purpose
        self._wire: bytes | None = wire if isinstance(wire, bytes) else None
        self._build: Callable[[], bytes] | None = None if isinstance(wire, bytes) else wire

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            assert self._build is not None  # noqa: S101 - one of the two is always set
            self._wire, self._build = self._build(), None
        return self._wire

    def __repr__(self) -> str:
        return f"TransmitEnvelope({self.token}, {self.purpose.value} {self.msg_type.value} {self.message_id})"


@dataclass(frozen=True, slots=True)
class ReleaseFrame:
    """The runtime is done with a received frame: accepted (None) or refused, with why."""

    frame: Received
    refusal: FrameRefusal | None


@dataclass(frozen=True, slots=True)
class MessagesWaiting:
    """The inbox holds messages for the application (`Runtime.take_message`)."""


@dataclass(frozen=True, slots=True)
class RoomToSend:
    """Senders waiting for back-pressure to ease may try again."""


RuntimeCommand = TransmitEnvelope | ReleaseFrame | MessagesWaiting | RoomToSend


# -- what the application gets ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message for the application: verified, decrypted, seen once."""

    envelope: Envelope
    plaintext: bytes
    frame: Received  # the frame it came in (its peer, path, connection and arrival time)
    from_backup: NodeId | None = None  # the holder that delivered it, when it came from a backup

    @property
    def message_id(self) -> str:
        return self.envelope.id

    @property
    def sender_hex(self) -> str:
        return self.envelope.sender


# -- facts ------------------------------------------------------------------------------------


class RefusalReason(enum.StrEnum):
    """Why an envelope was refused; stable names, counted and published."""

    too_large = "too_large"
    malformed = "malformed"
    noncanonical = "noncanonical"
    unsigned = "unsigned"
    bad_signature = "bad_signature"
    wrong_recipient = "wrong_recipient"
    not_encrypted = "not_encrypted"
    undecryptable = "undecryptable"
    throttled = "throttled"
    stale = "stale"  # its timestamp is too old to be told from a replay
    from_the_future = "from_the_future"
    via_too_long = "via_too_long"
    ttl_exhausted = "ttl_exhausted"
    route_loops = "route_loops"  # the next hop would be ourselves or the peer it came from
    replayed_nonce = "replayed_nonce"
    forged_ack = "forged_ack"  # an ACK from a peer that has nothing to acknowledge
    bad_payload = "bad_payload"  # an ACK, receipt or backup payload that does not parse
    inbox_full = "inbox_full"  # a datagram (which cannot wait) while the inbox is full, or too many frames waiting
    backup_refused = "backup_refused"  # a backup for someone else's message, or ours is full


@dataclass(frozen=True, slots=True)
class MessageStatusChanged:
    message_id: str
    peer: NodeId
    status: DeliveryStatus
    at_s: float


@dataclass(frozen=True, slots=True)
class MessageResent:
    message_id: str
    peer: NodeId
    resend: int  # 1 or 2
    at_s: float


@dataclass(frozen=True, slots=True)
class EnvelopeForwarded:
    """We relayed someone else's envelope one hop on."""

    message_id: str
    sender: NodeId
    recipient: NodeId
    next_hop: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class EnvelopeRefused:
    reason: RefusalReason
    peer: NodeId  # the transport peer it came from
    sender_hex: str | None  # what the envelope claims, when it decoded
    message_id: str | None
    detail: str
    at_s: float


@dataclass(frozen=True, slots=True)
class DuplicateReceived:
    """A message we already delivered came again (a resend, a replica): dropped and re-ACKed."""

    message_id: str
    sender: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class RefusedByPeer:
    """The next hop refused our envelope (for instance throttled): we can see it, and count it."""

    message_id: str
    peer: NodeId
    refusal: FrameRefusal
    at_s: float


@dataclass(frozen=True, slots=True)
class InboxFull:
    """The application is not reading: messages now wait in the transport (senders slow down)."""

    waiting: int  # messages held back, not yet acknowledged
    at_s: float


@dataclass(frozen=True, slots=True)
class BackupStored:
    message_id: str
    recipient: NodeId
    sender: NodeId
    replica: bool
    expires_at_ms: int
    at_s: float


@dataclass(frozen=True, slots=True)
class BackupReplicated:
    message_id: str
    holder: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class BackupDelivered:
    """The recipient confirmed a backed-up message (ours or a replica we held)."""

    message_id: str
    recipient: NodeId
    at_s: float


@dataclass(frozen=True, slots=True)
class BackupExpired:
    message_id: str
    recipient: NodeId
    evicted: bool  # pushed out by a full store rather than by its time
    at_s: float


RuntimeEvent = (
    MessageStatusChanged | MessageResent | EnvelopeForwarded | EnvelopeRefused | DuplicateReceived | RefusedByPeer
    | InboxFull | BackupStored | BackupReplicated | BackupDelivered | BackupExpired | PeerStatusChanged | GroupEvent
)  # fmt: skip

RuntimeOutput = RuntimeCommand | RuntimeEvent  # what the runtime returns, in the order to act on it
