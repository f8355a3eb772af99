"""The envelope: the one message shape of the ToM protocol, and its exact bytes.

Rules it enforces (spec/protocol.md §2-§3):
- an envelope is the msgpack array [id, from, to, via, msg_type, payload, timestamp, signature,
  ttl, encrypted]; byte fields are integer arrays;
- the signed bytes are the 8-element array without signature and ttl, so relays may lower ttl;
- `id` is a lowercase hyphenated UUID, `from`/`to`/`via` entries are 64 lowercase hex characters,
  the signature is empty or 64 bytes, timestamp is u64 Unix ms, ttl is u32;
- raw input over MAX_ENVELOPE_BYTES is refused before parsing; decoding accepts only the canonical
  encoding (see codec.py).

Whether the ids are real Ed25519 keys, and whether the signature verifies, is the opener's
business (tomproto.sealing): the golden vectors use ids such as 64 x "a".

This module is hand-written rather than driven by the generic codec: every probe goes through it
twice, and the signed bytes and the wire bytes share all but two fields, so they are packed once.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from tomproto.errors import DecodeError, LocalError
from tomproto.wire.codec import bytes_from_wire, pack, unpack_untrusted

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "DEFAULT_TTL",
    "SIGNATURE_BYTES",
    "MessageType",
    "Envelope",
    "encode_envelope",
    "decode_envelope",
    "decode_envelope_and_signing_bytes",
    "signing_bytes",
    "pack_signed",
]

MAX_ENVELOPE_BYTES = 256 * 1024
DEFAULT_TTL = 4
SIGNATURE_BYTES = 64
_U32_LIMIT = 1 << 32
_U64_LIMIT = 1 << 64
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NODE_ID_HEX = re.compile(r"[0-9a-f]{64}")


class MessageType(str, enum.Enum):
    """The 36 message types; each is written on the wire as its name."""

    Chat = "Chat"
    Ack = "Ack"
    ReadReceipt = "ReadReceipt"
    Heartbeat = "Heartbeat"
    GroupCreate = "GroupCreate"
    GroupCreated = "GroupCreated"
    GroupInvite = "GroupInvite"
    GroupJoin = "GroupJoin"
    GroupSync = "GroupSync"
    GroupMessage = "GroupMessage"
    GroupLeave = "GroupLeave"
    GroupMemberJoined = "GroupMemberJoined"
    GroupMemberLeft = "GroupMemberLeft"
    GroupHubMigration = "GroupHubMigration"
    GroupDeliveryAck = "GroupDeliveryAck"
    GroupHubHeartbeat = "GroupHubHeartbeat"
    GroupSenderKeyDistribution = "GroupSenderKeyDistribution"
    GroupHubPing = "GroupHubPing"
    GroupHubPong = "GroupHubPong"
    GroupHubShadowSync = "GroupHubShadowSync"
    GroupCandidateAssigned = "GroupCandidateAssigned"
    GroupHubUnreachable = "GroupHubUnreachable"
    GroupKickMember = "GroupKickMember"
    GroupUpdateMemberRole = "GroupUpdateMemberRole"
    GroupMemberRoleChanged = "GroupMemberRoleChanged"
    GroupInviteMember = "GroupInviteMember"
    GroupSyncRequest = "GroupSyncRequest"
    GroupSyncResponse = "GroupSyncResponse"
    BackupStore = "BackupStore"
    BackupDeliver = "BackupDeliver"
    BackupReplicate = "BackupReplicate"
    BackupReplicateAck = "BackupReplicateAck"
    BackupQuery = "BackupQuery"
    BackupQueryResponse = "BackupQueryResponse"
    BackupConfirmDelivery = "BackupConfirmDelivery"
    PeerAnnounce = "PeerAnnounce"


_MESSAGE_TYPES: dict[str, MessageType] = {member.value: member for member in MessageType}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One protocol message. `sender` and `recipient` are the spec's `from` and `to` (hex NodeIds);
    `via` is the relay chain in forward order; `ttl` is the hop budget."""

    id: str
    sender: str
    recipient: str
    via: tuple[str, ...]
    msg_type: MessageType
    payload: bytes
    timestamp_ms: int
    signature: bytes
    ttl: int
    encrypted: bool

    @property
    def is_signed(self) -> bool:
        return len(self.signature) == SIGNATURE_BYTES


def _signed_fields(envelope: Envelope) -> list[Any]:
    return [
        envelope.id,
        envelope.sender,
        envelope.recipient,
        list(envelope.via),
        envelope.msg_type.value,
        list(envelope.payload),
        envelope.timestamp_ms,
        envelope.encrypted,
    ]


def _check_for_encoding(envelope: Envelope) -> None:
    """Refuse values the decoder would refuse, so that we never send what peers must reject."""
    if not _UUID.fullmatch(envelope.id):
        raise LocalError(f"envelope id must be a lowercase UUID, got {envelope.id[:40]!r}")
    for label, node in (("from", envelope.sender), ("to", envelope.recipient)):
        if not _NODE_ID_HEX.fullmatch(node):
            raise LocalError(f"envelope {label} must be 64 lowercase hex characters")
    if not all(_NODE_ID_HEX.fullmatch(hop) for hop in envelope.via):
        raise LocalError("every via entry must be 64 lowercase hex characters")
    if len(envelope.signature) not in (0, SIGNATURE_BYTES):
        raise LocalError(f"signature must be empty or {SIGNATURE_BYTES} bytes")
    if not 0 <= envelope.timestamp_ms < _U64_LIMIT or not 0 <= envelope.ttl < _U32_LIMIT:
        raise LocalError("timestamp must fit u64 and ttl u32")


def _assemble(signed: bytes, signature: bytes, ttl: int) -> bytes:
    # `signed` is fixarray(8) + the 7 leading fields + `encrypted` (one byte: c2/c3). The wire
    # form is fixarray(10) + the same 7 fields + signature + ttl + that last byte.
    return b"\x9a" + signed[1:-1] + pack(list(signature)) + pack(ttl) + signed[-1:]


def signing_bytes(envelope: Envelope) -> bytes:
    """The bytes an envelope's signature covers: everything but signature and ttl."""
    return pack(_signed_fields(envelope))


def encode_envelope(envelope: Envelope) -> bytes:
    _check_for_encoding(envelope)
    return _assemble(signing_bytes(envelope), envelope.signature, envelope.ttl)


def pack_signed(envelope: Envelope, sign: Any) -> tuple[Envelope, bytes]:
    """Sign `envelope` with `sign(signed_bytes) -> signature` and encode it, packing once."""
    _check_for_encoding(envelope)
    signed = signing_bytes(envelope)
    signature = sign(signed)
    signed_envelope = _replace_signature(envelope, signature)
    return signed_envelope, _assemble(signed, signature, envelope.ttl)


def _replace_signature(envelope: Envelope, signature: bytes) -> Envelope:
    return Envelope(
        envelope.id,
        envelope.sender,
        envelope.recipient,
        envelope.via,
        envelope.msg_type,
        envelope.payload,
        envelope.timestamp_ms,
        signature,
        envelope.ttl,
        envelope.encrypted,
    )


def _node_id_field(label: str, value: Any) -> str:
    if type(value) is not str or not _NODE_ID_HEX.fullmatch(value):
        raise DecodeError(f"envelope {label}: expected 64 lowercase hex characters")
    return value


def decode_envelope_and_signing_bytes(data: bytes | bytearray | memoryview) -> tuple[Envelope, bytes]:
    """Decode untrusted bytes; also return the signed bytes, which the decoder rebuilds anyway."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise DecodeError(
            f"envelope of {len(data)} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte cap",
            reason="too_large",
        )
    data = bytes(data)
    fields = unpack_untrusted(data)
    if type(fields) is not list or len(fields) != 10:
        raise DecodeError("an envelope is an array of 10 fields")
    envelope_id, sender, recipient, via, msg_type, payload, timestamp, signature, ttl, encrypted = fields
    if type(envelope_id) is not str or not _UUID.fullmatch(envelope_id):
        raise DecodeError("envelope id: expected a lowercase hyphenated UUID")
    _node_id_field("from", sender)
    _node_id_field("to", recipient)
    if type(via) is not list:
        raise DecodeError("envelope via: expected an array of NodeIds")
    for hop in via:
        _node_id_field("via", hop)
    message_type = _MESSAGE_TYPES.get(msg_type) if type(msg_type) is str else None
    if message_type is None:
        raise DecodeError(f"envelope msg_type: unknown message type {str(msg_type)[:40]!r}")
    try:
        payload_bytes = bytes_from_wire(payload)
        signature_bytes = bytes_from_wire(signature)
    except DecodeError as error:
        raise DecodeError(f"envelope payload/signature: {error}") from None
    if len(signature_bytes) not in (0, SIGNATURE_BYTES):
        raise DecodeError(f"envelope signature: expected 0 or 64 bytes, got {len(signature_bytes)}")
    if type(timestamp) is not int or not 0 <= timestamp < _U64_LIMIT:
        raise DecodeError("envelope timestamp: expected a u64")
    if type(ttl) is not int or not 0 <= ttl < _U32_LIMIT:
        raise DecodeError("envelope ttl: expected a u32")
    if type(encrypted) is not bool:
        raise DecodeError("envelope encrypted: expected a boolean")
    envelope = Envelope(
        envelope_id,
        sender,
        recipient,
        tuple(via),
        message_type,
        payload_bytes,
        timestamp,
        signature_bytes,
        ttl,
        encrypted,
    )
    signed = pack([envelope_id, sender, recipient, via, msg_type, list(payload_bytes), timestamp, encrypted])
    if _assemble(signed, signature_bytes, ttl) != data:
        raise DecodeError(
            "envelope is not in canonical encoding (non-minimal integer or header, or a "
            "boolean where a byte belongs)",
            reason="noncanonical",
        )
    return envelope, signed


def decode_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """Decode untrusted bytes into an Envelope, or raise `DecodeError` (with a `reason`)."""
    return decode_envelope_and_signing_bytes(data)[0]
