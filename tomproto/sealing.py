"""Sealing and opening envelopes: encrypt, then sign; verify, then decrypt.

Rules (spec/protocol.md §3):
- Chat payloads are end-to-end encrypted for the recipient; other types are signed in clear
  unless the caller asks for encryption;
- the signature covers everything but signature and ttl, and is verified with libsodium
  (`identity.verify_signature`), which refuses non-canonical signatures;
- **Decision**: an unsigned or badly signed envelope is rejected with a reason, never delivered
  with a flag; so is a Chat that is not encrypted, unless the caller explicitly allows it.
Every refusal is an `EnvelopeRejected` carrying a `RejectReason`, for counting and events.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from tomproto.crypto.e2e import decrypt_with, encrypt_for
from tomproto.errors import CryptoError, DecodeError, RemoteError
from tomproto.identity import Identity, NodeId, verify_signature
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import (
    DEFAULT_TTL,
    Envelope,
    MessageType,
    decode_envelope_and_signing_bytes,
    encode_envelope,
    pack_signed,
)
from tomproto.wire.payloads import EncryptedPayload

__all__ = [
    "RejectReason",
    "EnvelopeRejected",
    "SealedEnvelope",
    "OpenedEnvelope",
    "new_message_id",
    "seal_envelope",
    "verify_envelope",
    "open_envelope",
    "open_verified",
    "WireSizeSpread",
    "wire_size_spread",
]


class RejectReason(str, enum.Enum):
    too_large = "too_large"
    malformed = "malformed"
    noncanonical = "noncanonical"
    unsigned = "unsigned"
    bad_signature = "bad_signature"
    wrong_recipient = "wrong_recipient"
    not_encrypted = "not_encrypted"
    undecryptable = "undecryptable"


class EnvelopeRejected(RemoteError):
    """An envelope the node refuses; `reason` is stable, the message says what was wrong."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    envelope: Envelope
    wire: bytes


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """A verified envelope addressed to us; `plaintext` is the payload, decrypted if it was."""

    envelope: Envelope
    plaintext: bytes
    nonce: bytes | None = None  # the AEAD nonce, when it was encrypted (for replay detection)


def new_message_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A UUIDv4 in its lowercase hyphenated form."""
    return str(uuid.UUID(bytes=random_bytes(16), version=4))


def seal_envelope(
    identity: Identity,
    recipient: NodeId,
    msg_type: MessageType,
    payload: bytes,
    *,
    now_ms: int,
    encrypt: bool | None = None,
    via: tuple[str, ...] = (),
    ttl: int = DEFAULT_TTL,
    message_id: str | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    ephemeral_secret: bytes | None = None,
    nonce: bytes | None = None,
) -> SealedEnvelope:
    """Build, encrypt (Chat by default), sign and encode an envelope in one call.

    `ephemeral_secret` and `nonce` exist for reproducible vectors; leave them unset otherwise.
    """
    if encrypt is None:
        encrypt = msg_type is MessageType.Chat
    if encrypt:
        sealed = encrypt_for(
            recipient.raw, payload, random_bytes=random_bytes, ephemeral_secret=ephemeral_secret, nonce=nonce
        )
        payload = encode(sealed)
    envelope = Envelope(
        message_id if message_id is not None else new_message_id(random_bytes),
        identity.node_id.hex,
        recipient.hex,
        tuple(via),
        msg_type,
        bytes(payload),
        now_ms,
        b"",
        ttl,
        encrypt,
    )
    signed, wire = pack_signed(envelope, identity.sign)
    return SealedEnvelope(signed, wire)


@dataclass(frozen=True, slots=True)
class WireSizeSpread:
    """How the wire size of an envelope varies between seals of the same content.

    Bytes travel as integer arrays, in which a value under 128 takes one byte and any other more;
    the ciphertext, nonce, ephemeral key and signature are uniformly random, so every seal draws a
    new size between `low` (every random byte under 128) and `high` (none)."""

    low: int
    high: int
    random_bytes: int

    def likely_at_most(self, z: float) -> float:
        """The mean plus `z` standard deviations: each random byte is high with probability 1/2
        (its share of high - low taken as the average share)."""
        mean = (self.low + self.high) / 2
        return mean + z * (self.high - self.low) / (2 * math.sqrt(self.random_bytes))


def wire_size_spread(sealed: SealedEnvelope) -> WireSizeSpread:
    """The spread of `sealed`'s wire size, from its own shape (lengths, not values)."""
    envelope = sealed.envelope
    random_bytes = len(envelope.signature)
    encrypted = decode(envelope.payload, EncryptedPayload) if envelope.encrypted else None
    if encrypted is not None:
        random_bytes += len(encrypted.ciphertext) + len(encrypted.nonce) + len(encrypted.ephemeral_pk)

    def size_with_every_random_byte(value: int) -> int:
        payload = envelope.payload
        if encrypted is not None:
            fields = (encrypted.ciphertext, encrypted.nonce, encrypted.ephemeral_pk)
            payload = encode(EncryptedPayload(*(bytes([value]) * len(field) for field in fields)))
        filled = dataclasses.replace(envelope, payload=payload, signature=bytes([value]) * len(envelope.signature))
        return len(encode_envelope(filled))

    return WireSizeSpread(size_with_every_random_byte(0), size_with_every_random_byte(255), random_bytes)


def _decode(data: bytes) -> tuple[Envelope, bytes]:
    try:
        return decode_envelope_and_signing_bytes(data)
    except DecodeError as error:
        raise EnvelopeRejected(RejectReason(error.reason), str(error)) from None


def _key_bytes(node_id_hex: str) -> bytes:
    """The raw key a hex NodeId names; empty (which verifies nothing) when it is not hex."""
    try:
        return bytes.fromhex(node_id_hex)
    except ValueError:
        return b""


def _verify(envelope: Envelope, signed: bytes) -> None:
    if not envelope.is_signed:
        raise EnvelopeRejected(RejectReason.unsigned, "envelope carries no signature")
    if not verify_signature(envelope.signature, signed, _key_bytes(envelope.sender)):
        raise EnvelopeRejected(RejectReason.bad_signature, "signature does not verify against the sender's key")


def verify_envelope(data: bytes) -> Envelope:
    """Decode and check the signature, without decrypting: what a relaying peer needs."""
    envelope, signed = _decode(data)
    _verify(envelope, signed)
    return envelope


def open_envelope(identity: Identity, data: bytes, *, allow_plain_chat: bool = False) -> OpenedEnvelope:
    """Decode, verify, check it is ours, and decrypt; or raise EnvelopeRejected with a reason."""
    envelope, signed = _decode(data)
    _verify(envelope, signed)
    return open_verified(identity, envelope, allow_plain_chat=allow_plain_chat)


def open_verified(identity: Identity, envelope: Envelope, *, allow_plain_chat: bool = False) -> OpenedEnvelope:
    """The second half of `open_envelope`, for an envelope already verified (`verify_envelope`):
    check it is ours and decrypt it."""
    if envelope.recipient != identity.node_id.hex:
        raise EnvelopeRejected(RejectReason.wrong_recipient, "envelope is addressed to another node")
    if not envelope.encrypted:
        if envelope.msg_type is MessageType.Chat and not allow_plain_chat:
            raise EnvelopeRejected(RejectReason.not_encrypted, "a Chat must be end-to-end encrypted")
        return OpenedEnvelope(envelope, envelope.payload)
    try:
        sealed = decode(envelope.payload, EncryptedPayload)
        plaintext = decrypt_with(identity.x25519_secret, sealed)
    except (DecodeError, CryptoError) as error:
        raise EnvelopeRejected(RejectReason.undecryptable, str(error)) from None
    return OpenedEnvelope(envelope, plaintext, sealed.nonce)
