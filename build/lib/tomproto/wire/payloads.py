"""Payloads carried inside envelopes, other than group payloads (see group.py).

Rules (spec/protocol.md §2, §7): each payload is a wire struct encoded with the compact codec.
Ids inside payloads are plain strings to the codec; whether they name a member, a message or a
valid key is checked by the state machine that consumes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from tomproto.wire.codec import U8, U64, Bytes24, Bytes32

__all__ = [
    "AckType",
    "AckPayload",
    "ReadReceiptPayload",
    "NodeRole",
    "PeerAnnounce",
    "EncryptedPayload",
    "BackupPayload",
    "BackupReplicateAckPayload",
    "BackupQueryPayload",
    "BackupMessageIdsPayload",
]


class AckType(str, enum.Enum):
    RelayForwarded = "RelayForwarded"
    RecipientReceived = "RecipientReceived"


@dataclass(frozen=True, slots=True)
class AckPayload:
    """Payload of an Ack: which message, and who acknowledges it (a relay or the recipient)."""

    original_id: str
    ack_type: AckType


@dataclass(frozen=True, slots=True)
class ReadReceiptPayload:
    original_id: str
    read_at_ms: U64


class NodeRole(str, enum.Enum):
    Peer = "Peer"
    Relay = "Relay"


@dataclass(frozen=True, slots=True)
class PeerAnnounce:
    node_id: str
    username: str
    roles: tuple[NodeRole, ...]
    encryption_key: bytes | None
    timestamp_ms: U64


@dataclass(frozen=True, slots=True)
class EncryptedPayload:
    """End-to-end encrypted content: XChaCha20-Poly1305 ciphertext (with its 16-byte tag), the
    24-byte nonce and the sender's ephemeral X25519 public key."""

    ciphertext: bytes
    nonce: Bytes24
    ephemeral_pk: Bytes32


@dataclass(frozen=True, slots=True)
class BackupPayload:
    """A message held for an offline recipient (BackupStore, BackupDeliver, BackupReplicate)."""

    message_id: str
    payload: bytes
    recipient_id: str
    sender_id: str
    expires_at_ms: U64
    viability_score: U8
    replicated_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BackupReplicateAckPayload:
    """BackupReplicateAck: the id of the replicated message, written as a bare string."""

    WIRE_TRANSPARENT: ClassVar[bool] = True
    message_id: str


@dataclass(frozen=True, slots=True)
class BackupQueryPayload:
    """BackupQuery: whose messages the sender asks for, written as a bare NodeId string."""

    WIRE_TRANSPARENT: ClassVar[bool] = True
    recipient_id: str


@dataclass(frozen=True, slots=True)
class BackupMessageIdsPayload:
    """BackupQueryResponse and BackupConfirmDelivery: a bare array of message ids."""

    WIRE_TRANSPARENT: ClassVar[bool] = True
    message_ids: tuple[str, ...]
