"""Signatures and encryption: the 1-to-1 end-to-end scheme and group sender keys."""

from tomproto.crypto.e2e import decrypt_with, encrypt_for, hkdf_sha256
from tomproto.crypto.group_keys import (
    group_signing_bytes,
    open_group_message,
    seal_group_message,
    verify_group_message,
)

__all__ = [
    "encrypt_for",
    "decrypt_with",
    "hkdf_sha256",
    "group_signing_bytes",
    "seal_group_message",
    "verify_group_message",
    "open_group_message",
]
