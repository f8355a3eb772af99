"""Non-QUIC packets on the node's UDP socket, and the signed reset notice.

Rules (spec/lab-and-packaging.md, aioquic facts): a packet whose first byte has both top bits
clear (`b[0] & 0xC0 == 0`) is not QUIC; its first byte says what it is. Relay and punch packets
will join here.

Reset notice: aioquic neither sends nor honours QUIC stateless resets, and a restarted node could
not produce the old connection's reset token anyway. So a node that receives a short-header QUIC
packet for a connection ID it does not know answers with a notice signed by its identity: "I,
NodeId N, know no connection with ID c". The receiver acts only if c is a live connection whose
authenticated peer is N and the signature verifies, then closes it at once and redials, instead of
waiting out the idle timeout. A forged notice needs the peer's key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tomproto.identity import Identity, verify_signature

__all__ = ["KIND_RESET_NOTICE", "is_quic_packet", "ResetNotice", "encode_reset_notice", "decode_reset_notice"]

KIND_RESET_NOTICE = 0x01
_CONTEXT = b"tom-reset-notice-v1"
_MAX_CID_BYTES = 20


def is_quic_packet(data: bytes) -> bool:
    return bool(data) and data[0] & 0xC0 != 0


@dataclass(frozen=True, slots=True)
class ResetNotice:
    node_id_raw: bytes
    connection_id: bytes
    signature: bytes

    def verifies(self) -> bool:
        return verify_signature(self.signature, _signed(self.node_id_raw, self.connection_id), self.node_id_raw)


def _signed(node_id_raw: bytes, connection_id: bytes) -> bytes:
    return _CONTEXT + node_id_raw + bytes([len(connection_id)]) + connection_id


def encode_reset_notice(identity: Identity, connection_id: bytes) -> bytes:
    node = identity.node_id.raw
    signature = identity.sign(_signed(node, connection_id))
    return bytes([KIND_RESET_NOTICE]) + node + bytes([len(connection_id)]) + connection_id + signature


def decode_reset_notice(data: bytes) -> ResetNotice | None:
    """The notice in `data`, or None when the packet is not a well-formed notice."""
    if len(data) < 1 + 32 + 1 + 64 or data[0] != KIND_RESET_NOTICE:
        return None
    cid_length = data[33]
    if cid_length > _MAX_CID_BYTES or len(data) != 1 + 32 + 1 + cid_length + 64:
        return None
    return ResetNotice(data[1:33], data[34 : 34 + cid_length], data[34 + cid_length :])
