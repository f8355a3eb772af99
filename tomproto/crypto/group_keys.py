"""Group sender-key encryption and the group message signature (spec/protocol.md §6).

Rules: a group message is XChaCha20-Poly1305 under the sender's 32-byte key of the epoch, over
msgpack [username, text], empty associated data; when encrypted, `sender_username` and `text` stay
empty. The sender signs group_id || message_id || sender public key (32 raw bytes) ||
(ciphertext || nonce || epoch u32 LE when encrypted, else text) || sent_at u64 LE.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import replace

import nacl.bindings as sodium
from nacl.exceptions import CryptoError as SodiumError

from tomproto.errors import CryptoError, LocalError
from tomproto.identity import Identity, verify_signature
from tomproto.wire.codec import decode, encode
from tomproto.wire.group import GroupMessage, GroupMessageContent

__all__ = [
    "SENDER_KEY_BYTES",
    "group_signing_bytes",
    "seal_group_message",
    "verify_group_message",
    "open_group_message",
]

SENDER_KEY_BYTES = 32
_NONCE_BYTES = 24


def group_signing_bytes(message: GroupMessage) -> bytes:
    try:
        sender_public = bytes.fromhex(message.sender_id)
    except ValueError:
        raise CryptoError("group message sender_id is not a hex NodeId") from None
    parts = [message.group_id.encode(), message.message_id.encode(), sender_public]
    if message.encrypted:
        parts += [message.ciphertext, message.nonce, struct.pack("<I", message.key_epoch)]
    else:
        parts.append(message.text.encode())
    parts.append(struct.pack("<Q", message.sent_at))
    return b"".join(parts)


def seal_group_message(
    identity: Identity,
    *,
    group_id: str,
    message_id: str,
    username: str,
    text: str,
    sent_at_ms: int,
    sender_key: bytes | None,
    key_epoch: int = 0,
    random_bytes: Callable[[int], bytes] = os.urandom,
    nonce: bytes | None = None,
) -> GroupMessage:
    """A signed group message, encrypted under `sender_key` unless it is None (plaintext)."""
    if sender_key is None:
        message = GroupMessage(
            group_id, message_id, identity.node_id.hex, username, text, b"", bytes(_NONCE_BYTES),
            0, False, sent_at_ms, b"", 0,
        )
    else:
        if len(sender_key) != SENDER_KEY_BYTES:
            raise LocalError(f"a sender key is {SENDER_KEY_BYTES} bytes")
        nonce = nonce if nonce is not None else random_bytes(_NONCE_BYTES)
        content = encode(GroupMessageContent(username, text))
        ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(content, None, nonce, sender_key)
        message = GroupMessage(
            group_id, message_id, identity.node_id.hex, "", "", ciphertext, nonce,
            key_epoch, True, sent_at_ms, b"", 0,
        )
    return replace(message, sender_signature=identity.sign(group_signing_bytes(message)))


def verify_group_message(message: GroupMessage) -> None:
    """Raise CryptoError unless the message carries a valid signature by its sender_id."""
    if len(message.sender_signature) != 64:
        raise CryptoError("group message is not signed")
    signed = group_signing_bytes(message)
    try:
        sender = bytes.fromhex(message.sender_id)
    except ValueError:
        raise CryptoError("group message signature does not verify") from None
    if not verify_signature(message.sender_signature, signed, sender):
        raise CryptoError("group message signature does not verify")


def open_group_message(message: GroupMessage, sender_key: bytes | None) -> GroupMessageContent:
    """Verify the signature and return (username, text), decrypting with the sender's key."""
    verify_group_message(message)
    if not message.encrypted:
        return GroupMessageContent(message.sender_username, message.text)
    if sender_key is None:
        raise CryptoError("encrypted group message and no sender key for its epoch")
    try:
        content = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            message.ciphertext, None, message.nonce, sender_key
        )
    except SodiumError:
        raise CryptoError("group message does not open with the sender key") from None
    opened: GroupMessageContent = decode(content, GroupMessageContent)
    return opened
