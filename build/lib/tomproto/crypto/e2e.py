"""One-to-one end-to-end encryption (spec/protocol.md §3).

Rules: a fresh ephemeral X25519 key per message; the recipient's X25519 key is its Ed25519 key
converted by libsodium; key = HKDF-SHA256(ikm=shared secret, no salt,
info="tom-protocol-e2e-xchacha20poly1305-v1", 32 bytes); XChaCha20-Poly1305 (IETF) with a random
24-byte nonce and empty associated data. Randomness is injected so the golden vector can be
reproduced and tests can be deterministic.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from functools import lru_cache

import nacl.bindings as sodium
from nacl.exceptions import CryptoError as SodiumError

from tomproto.errors import CryptoError, LocalError
from tomproto.wire.payloads import EncryptedPayload

__all__ = ["E2E_INFO", "NONCE_BYTES", "KEY_BYTES", "hkdf_sha256", "encrypt_for", "decrypt_with"]

E2E_INFO = b"tom-protocol-e2e-xchacha20poly1305-v1"
NONCE_BYTES = 24
KEY_BYTES = 32
_NO_SALT = bytes(32)  # RFC 5869: an absent salt is HashLen zero bytes


def hkdf_sha256(ikm: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 (RFC 5869) without salt, for outputs of at most one hash block."""
    if length > 32:
        raise LocalError("this HKDF serves keys of at most 32 bytes")
    pseudo_random_key = hmac.digest(_NO_SALT, ikm, "sha256")
    return hmac.digest(pseudo_random_key, info + b"\x01", "sha256")[:length]


@lru_cache(maxsize=4096)
def _x25519_public_of(ed25519_public: bytes) -> bytes:
    # The conversion costs as much as a scalar multiplication; peers are few, messages many.
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(ed25519_public)
    except SodiumError:
        raise CryptoError("recipient key is not a valid Ed25519 public key") from None


def _message_key(secret: bytes, public: bytes) -> bytes:
    try:
        shared = sodium.crypto_scalarmult(secret, public)
    except SodiumError:  # libsodium refuses low-order points (an all-zero shared secret)
        raise CryptoError("key exchange failed: low-order public key") from None
    return hkdf_sha256(shared, E2E_INFO)


def encrypt_for(
    recipient_ed25519_public: bytes,
    plaintext: bytes,
    *,
    random_bytes: Callable[[int], bytes] = os.urandom,
    ephemeral_secret: bytes | None = None,
    nonce: bytes | None = None,
) -> EncryptedPayload:
    """Encrypt `plaintext` so that only the holder of the recipient's Ed25519 key can read it."""
    ephemeral_secret = ephemeral_secret if ephemeral_secret is not None else random_bytes(32)
    nonce = nonce if nonce is not None else random_bytes(NONCE_BYTES)
    if len(ephemeral_secret) != 32 or len(nonce) != NONCE_BYTES:
        raise LocalError("ephemeral secret must be 32 bytes and nonce 24 bytes")
    key = _message_key(ephemeral_secret, _x25519_public_of(bytes(recipient_ed25519_public)))
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, None, nonce, key)
    return EncryptedPayload(
        ciphertext=ciphertext,
        nonce=nonce,
        ephemeral_pk=sodium.crypto_scalarmult_base(ephemeral_secret),
    )


def decrypt_with(x25519_secret: bytes, sealed: EncryptedPayload) -> bytes:
    """Open an EncryptedPayload with the recipient's X25519 secret, or raise CryptoError."""
    key = _message_key(x25519_secret, sealed.ephemeral_pk)
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(sealed.ciphertext, None, sealed.nonce, key)
    except SodiumError:
        raise CryptoError("ciphertext does not open with this key (not for us, or altered)") from None
