"""The tom-relay wire protocol (docs/relay-protocol.md), sans-IO: packet layouts and signatures.

Rules it enforces: every packet kind has one exact layout; decoding returns None for anything
that does not fit it (never an exception); signed texts start with a context string so no
signature can be replayed as another kind of message.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum

from tomproto.identity import Identity, verify_signature

__all__ = [
    "HELLO", "CHALLENGE", "REGISTER", "REGISTERED", "REFUSED", "KEEPALIVE", "KEEPALIVE_ACK",
    "FORWARD", "RELAYED", "UNREACHABLE", "CALL", "CALL_FROM", "PUNCH", "PUNCH_ACK",
    "RELAY_KINDS", "Refusal", "Address", "pack_address", "unpack_address",
    "hello", "challenge", "register", "Register", "parse_register", "registered", "refused",
    "keepalive", "keepalive_ack", "forward", "relayed", "unreachable", "call", "call_from",
    "parse_call_from", "punch", "Punch", "parse_punch", "MAX_CANDIDATES",
    "RELAY_HEADER_BYTES", "HELLO_BYTES", "CHALLENGE_BYTES",
]  # fmt: skip

HELLO, CHALLENGE, REGISTER, REGISTERED, KEEPALIVE, KEEPALIVE_ACK = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
REFUSED = 0x1F
FORWARD, RELAYED, UNREACHABLE = 0x20, 0x21, 0x22
CALL, CALL_FROM = 0x30, 0x31
PUNCH, PUNCH_ACK = 0x3A, 0x3B  # below 0x40: a first byte with either top bit set is QUIC
RELAY_KINDS = frozenset({HELLO, CHALLENGE, REGISTER, REGISTERED, KEEPALIVE, KEEPALIVE_ACK, REFUSED,
                         FORWARD, RELAYED, UNREACHABLE, CALL, CALL_FROM})  # fmt: skip

ID_BYTES = 32
SIG_BYTES = 64
ADDRESS_BYTES = 18
NONCE_BYTES = 8
MAX_CANDIDATES = 8
RELAY_HEADER_BYTES = 1 + ID_BYTES  # FORWARD / RELAYED header before the QUIC packet
CHALLENGE_NONCE_BYTES = 32
CHALLENGE_BYTES = 1 + ID_BYTES + CHALLENGE_NONCE_BYTES
# A HELLO is padded to the size of the CHALLENGE it gets back: a forged source address cannot
# make the relay send more bytes to a victim than the forger sent (no amplification).
HELLO_BYTES = CHALLENGE_BYTES

_REGISTER_CONTEXT = b"tom-relay-register-v1"
_PUNCH_CONTEXT = {PUNCH: b"tom-punch-v1", PUNCH_ACK: b"tom-punch-ack-v1"}

Address = tuple[str, int]


class Refusal(IntEnum):
    """Why the relay refused a packet: the second byte of a REFUSED."""

    bad_signature = 1
    unknown_challenge = 2
    malformed = 3
    rate_limited = 4
    full = 5
    not_registered = 6


def pack_address(address: Address) -> bytes:
    host, port = address[0], address[1]
    ip = ipaddress.ip_address(host.split("%")[0])
    if ip.version == 4:
        ip = ipaddress.IPv6Address(f"::ffff:{ip}")
    return ip.packed + struct.pack(">H", port)


def unpack_address(data: bytes) -> Address:
    ip = ipaddress.IPv6Address(data[:16])
    port = struct.unpack(">H", data[16:18])[0]
    host = str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
    return host, port


def hello(node_id: bytes) -> bytes:
    return (bytes([HELLO]) + node_id).ljust(HELLO_BYTES, b"\0")


def challenge(relay_id: bytes, nonce: bytes) -> bytes:
    return bytes([CHALLENGE]) + relay_id + nonce


def _candidates_blob(candidates: list[Address]) -> bytes:
    return bytes([len(candidates)]) + b"".join(pack_address(address) for address in candidates)


def _register_signed(relay_id: bytes, node_id: bytes, nonce: bytes, blob: bytes) -> bytes:
    return _REGISTER_CONTEXT + relay_id + node_id + nonce + blob


def register(identity: Identity, relay_id: bytes, nonce: bytes, candidates: list[Address]) -> bytes:
    blob = _candidates_blob(candidates[:MAX_CANDIDATES])
    node_id = identity.node_id.raw
    signature = identity.sign(_register_signed(relay_id, node_id, nonce, blob))
    return bytes([REGISTER]) + node_id + nonce + blob + signature


@dataclass(frozen=True, slots=True)
class Register:
    node_id: bytes
    nonce: bytes
    candidates: tuple[Address, ...]
    signed: bytes  # without the relay id, which the relay adds when it verifies
    signature: bytes

    def verifies(self, relay_id: bytes) -> bool:
        return verify_signature(self.signature, _REGISTER_CONTEXT + relay_id + self.signed, self.node_id)


def _parse_candidates(data: bytes) -> tuple[tuple[Address, ...], int] | None:
    if not data:
        return None
    count = data[0]
    end = 1 + count * ADDRESS_BYTES
    if count > MAX_CANDIDATES or len(data) < end:
        return None
    try:
        addresses = tuple(
            unpack_address(data[1 + i * ADDRESS_BYTES : 1 + (i + 1) * ADDRESS_BYTES]) for i in range(count)
        )
    except ValueError:
        return None
    return addresses, end


def parse_register(data: bytes) -> Register | None:
    body = data[1:]
    if len(body) < ID_BYTES + 32 + 1 + SIG_BYTES:
        return None
    node_id, nonce = body[:ID_BYTES], body[ID_BYTES : ID_BYTES + 32]
    parsed = _parse_candidates(body[ID_BYTES + 32 : -SIG_BYTES])
    if parsed is None or parsed[1] != len(body) - ID_BYTES - 32 - SIG_BYTES:
        return None
    return Register(node_id, nonce, parsed[0], body[: -SIG_BYTES], body[-SIG_BYTES:])


def registered(observed: Address, keepalive_s: int, expiry_s: int) -> bytes:
    return bytes([REGISTERED]) + pack_address(observed) + struct.pack(">HH", keepalive_s, expiry_s)


def refused(code: int, message: str) -> bytes:
    return bytes([REFUSED, code]) + message.encode()[:200]


def keepalive(node_id: bytes) -> bytes:
    return bytes([KEEPALIVE]) + node_id


def keepalive_ack(observed: Address) -> bytes:
    return bytes([KEEPALIVE_ACK]) + pack_address(observed)


def forward(destination: bytes, payload: bytes) -> bytes:
    return bytes([FORWARD]) + destination + payload


def relayed(source: bytes, payload: bytes) -> bytes:
    return bytes([RELAYED]) + source + payload


def unreachable(destination: bytes) -> bytes:
    return bytes([UNREACHABLE]) + destination


def call(target: bytes) -> bytes:
    return bytes([CALL]) + target


def call_from(peer: bytes, addresses: list[Address]) -> bytes:
    return bytes([CALL_FROM]) + peer + _candidates_blob(addresses[: MAX_CANDIDATES + 1])


def parse_call_from(data: bytes) -> tuple[bytes, tuple[Address, ...]] | None:
    if len(data) < 1 + ID_BYTES + 1:
        return None
    parsed = _parse_candidates(data[1 + ID_BYTES :])
    if parsed is None or 1 + ID_BYTES + parsed[1] != len(data):
        return None
    return data[1 : 1 + ID_BYTES], parsed[0]


@dataclass(frozen=True, slots=True)
class Punch:
    kind: int
    sender: bytes
    receiver: bytes
    nonce: bytes
    signature: bytes

    def verifies(self) -> bool:
        message = _PUNCH_CONTEXT[self.kind] + self.sender + self.receiver + self.nonce
        return verify_signature(self.signature, message, self.sender)


def punch(kind: int, identity: Identity, receiver: bytes, nonce: bytes) -> bytes:
    sender = identity.node_id.raw
    signature = identity.sign(_PUNCH_CONTEXT[kind] + sender + receiver + nonce)
    return bytes([kind]) + sender + receiver + nonce + signature


def parse_punch(data: bytes) -> Punch | None:
    if len(data) != 1 + 2 * ID_BYTES + NONCE_BYTES + SIG_BYTES or data[0] not in _PUNCH_CONTEXT:
        return None
    sender, receiver = data[1 : 1 + ID_BYTES], data[1 + ID_BYTES : 1 + 2 * ID_BYTES]
    nonce = data[1 + 2 * ID_BYTES : 1 + 2 * ID_BYTES + NONCE_BYTES]
    return Punch(data[0], sender, receiver, nonce, data[-SIG_BYTES:])
