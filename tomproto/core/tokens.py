"""QUIC Retry tokens (RFC 9000 §8.1.2), minted and checked without any per-client state.

    token = version (1) | issued_s (4, big-endian) | len(odcid) (1) | odcid | retry scid (8)
            | HMAC-SHA256(secret, context | everything before | host | port)[:16]

The token proves that whoever presents it received our Retry at (host, port) at most
`lifetime_s` ago. It is dated in whole seconds, rounded down, and its age is measured from that
date, so it is good for at most `lifetime_s` and at least `lifetime_s` - 1 s after it was minted
(never longer: a 10 s token is refused 10 s after it was minted, whatever the fraction).
It carries the original destination connection ID because the server must echo it in its
transport parameters, and that Initial is gone by the time the token comes back;
it carries the Retry source connection ID so that a token is good only on the Initial sent to
that ID. An HMAC costs about a microsecond, where aioquic's own Retry tokens cost an RSA
operation each. A token may be replayed within its lifetime from the same address: that still
proves the address, which is all a Retry token is for (RFC 9000 §8.1.4).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import Enum

__all__ = ["RETRY_SCID_BYTES", "TOKEN_VERSION", "RetryToken", "TokenError", "check_token", "mint_token"]

TOKEN_VERSION = 1
RETRY_SCID_BYTES = 8
MAC_BYTES = 16
MAX_CID_BYTES = 20
_CONTEXT = b"tom-quic-retry-v1"
_HEAD = struct.Struct(">BIB")  # version, issued_s, len(odcid)


class TokenError(str, Enum):
    """Why a token was refused (the counter's label)."""

    malformed = "token_malformed"
    forged = "token_forged"  # the MAC does not verify: not ours, tampered, or another address
    expired = "token_expired"
    wrong_connection_id = "token_wrong_connection_id"


@dataclass(frozen=True, slots=True)
class RetryToken:
    original_destination_id: bytes
    retry_source_id: bytes
    issued_s: int


def _mac(secret: bytes, body: bytes, address: tuple[str, int]) -> bytes:
    host, port = address[0], address[1]
    message = b"".join((_CONTEXT, body, host.encode(), b"|", str(port).encode()))
    return hmac.digest(secret, message, hashlib.sha256)[:MAC_BYTES]


def mint_token(
    secret: bytes, address: tuple[str, int], original_destination_id: bytes, retry_source_id: bytes, now_s: float
) -> bytes:
    if len(original_destination_id) > MAX_CID_BYTES or len(retry_source_id) != RETRY_SCID_BYTES:
        raise ValueError("connection id of the wrong length")
    body = _HEAD.pack(TOKEN_VERSION, int(now_s) & 0xFFFFFFFF, len(original_destination_id))
    body += original_destination_id + retry_source_id
    return body + _mac(secret, body, address)


def check_token(
    secret: bytes, token: bytes, address: tuple[str, int], destination_id: bytes, now_s: float, lifetime_s: float
) -> RetryToken | TokenError:
    """The token's content if it is ours, for this address, for this Initial, and fresh."""
    if len(token) < _HEAD.size + RETRY_SCID_BYTES + MAC_BYTES:
        return TokenError.malformed
    version, issued_s, odcid_bytes = _HEAD.unpack_from(token)
    if version != TOKEN_VERSION or odcid_bytes > MAX_CID_BYTES:
        return TokenError.malformed
    body_end = _HEAD.size + odcid_bytes + RETRY_SCID_BYTES
    if len(token) != body_end + MAC_BYTES:
        return TokenError.malformed
    body = token[:body_end]
    if not hmac.compare_digest(token[body_end:], _mac(secret, body, address)):
        return TokenError.forged
    # Against `now_s` itself, not its whole seconds: that would add up to a second of life.
    age_s = now_s - issued_s
    if not 0 <= age_s <= lifetime_s:
        return TokenError.expired
    retry_source_id = body[body_end - RETRY_SCID_BYTES :]
    # The client sends its token-bearing Initial to the Retry's source ID, and to nothing else.
    if not hmac.compare_digest(retry_source_id, destination_id):
        return TokenError.wrong_connection_id
    return RetryToken(body[_HEAD.size : _HEAD.size + odcid_bytes], retry_source_id, issued_s)
