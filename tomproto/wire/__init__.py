"""Wire format: the compact MessagePack codec, the envelope and every payload type.

`decode_payload(msg_type, data)` reads the payload an envelope of that type carries; Chat and
Heartbeat payloads are opaque bytes to this layer (a Chat is application data, or an
EncryptedPayload when the envelope says `encrypted`).
"""

from __future__ import annotations

from typing import Any

from tomproto.errors import DecodeError, LocalError
from tomproto.wire import group
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import (
    DEFAULT_TTL,
    MAX_ENVELOPE_BYTES,
    Envelope,
    MessageType,
    decode_envelope,
    encode_envelope,
    signing_bytes,
)
from tomproto.wire.group import GROUP_PAYLOAD, GROUP_VARIANTS
from tomproto.wire.payloads import (
    AckPayload,
    AckType,
    BackupMessageIdsPayload,
    BackupPayload,
    BackupQueryPayload,
    BackupReplicateAckPayload,
    EncryptedPayload,
    NodeRole,
    PeerAnnounce,
    ReadReceiptPayload,
)

__all__ = [
    "DEFAULT_TTL",
    "MAX_ENVELOPE_BYTES",
    "Envelope",
    "MessageType",
    "encode_envelope",
    "decode_envelope",
    "signing_bytes",
    "AckPayload",
    "AckType",
    "ReadReceiptPayload",
    "NodeRole",
    "PeerAnnounce",
    "EncryptedPayload",
    "BackupPayload",
    "BackupReplicateAckPayload",
    "BackupQueryPayload",
    "BackupMessageIdsPayload",
    "GROUP_PAYLOAD",
    "PAYLOAD_TYPES",
    "group",
    "encode_payload",
    "decode_payload",
    "message_type_of",
]

_GROUP_TYPES = {MessageType("Group" + cls.VARIANT): cls for cls in GROUP_VARIANTS}
_GROUP_MESSAGE_TYPE = {cls: message_type for message_type, cls in _GROUP_TYPES.items()}

PAYLOAD_TYPES: dict[MessageType, Any] = {
    MessageType.Ack: AckPayload,
    MessageType.ReadReceipt: ReadReceiptPayload,
    MessageType.PeerAnnounce: PeerAnnounce,
    MessageType.BackupStore: BackupPayload,
    MessageType.BackupDeliver: BackupPayload,
    MessageType.BackupReplicate: BackupPayload,
    MessageType.BackupReplicateAck: BackupReplicateAckPayload,
    MessageType.BackupQuery: BackupQueryPayload,
    MessageType.BackupQueryResponse: BackupMessageIdsPayload,
    MessageType.BackupConfirmDelivery: BackupMessageIdsPayload,
    **dict.fromkeys(_GROUP_TYPES, GROUP_PAYLOAD),
}


def message_type_of(payload: Any) -> MessageType:
    """The msg_type of the envelope that carries a group payload (one type per variant)."""
    found = _GROUP_MESSAGE_TYPE.get(type(payload))
    if found is None:
        raise LocalError(f"{type(payload).__name__} is not a group payload")
    return found


def encode_payload(payload: Any) -> bytes:
    """Encode any payload value; group variants are wrapped as {Variant: fields}."""
    if type(payload) in _GROUP_MESSAGE_TYPE:
        return encode(payload, GROUP_PAYLOAD)
    return encode(payload)


def decode_payload(msg_type: MessageType, data: bytes) -> Any:
    """Decode the payload of an envelope of type `msg_type` (DecodeError on anything wrong)."""
    wire_type = PAYLOAD_TYPES.get(msg_type)
    if wire_type is None:
        raise LocalError(f"{msg_type.value} payloads are opaque bytes, not a wire struct")
    value = decode(data, wire_type)
    if wire_type is GROUP_PAYLOAD and _GROUP_TYPES[msg_type] is not type(value):
        raise DecodeError(
            f"{msg_type.value} envelope carries a {type(value).VARIANT} payload", reason="type_mismatch"
        )
    return value
