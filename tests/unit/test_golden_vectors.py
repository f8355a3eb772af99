"""Our bytes are the protocol's bytes: every golden vector, both ways."""

from __future__ import annotations

import nacl.bindings as sodium
import pytest

from tests.vectors import load_vectors
from tomproto.crypto.e2e import E2E_INFO, encrypt_for, hkdf_sha256
from tomproto.crypto.group_keys import group_signing_bytes, open_group_message, seal_group_message
from tomproto.identity import Identity
from tomproto.sealing import open_envelope, seal_envelope
from tomproto.wire import GROUP_PAYLOAD, decode_payload, encode_payload
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import Envelope, MessageType, decode_envelope, encode_envelope, signing_bytes
from tomproto.wire.group import GroupHubPing, GroupMessage
from tomproto.wire.payloads import AckPayload, AckType, EncryptedPayload, NodeRole, PeerAnnounce

VECTORS = load_vectors()


def vector_bytes(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name]["hex"])


def unsigned_chat() -> Envelope:
    fields = VECTORS["envelope_unsigned_chat"]["fields"]
    return Envelope(
        id=fields["id"],
        sender=fields["from"],
        recipient=fields["to"],
        via=tuple(fields["via"]),
        msg_type=MessageType(fields["msg_type"]),
        payload=bytes.fromhex(fields["payload_hex"]),
        timestamp_ms=fields["timestamp"],
        signature=bytes.fromhex(fields["signature_hex"]),
        ttl=fields["ttl"],
        encrypted=fields["encrypted"],
    )


def test_every_vector_is_covered_here() -> None:
    covered = {
        "envelope_unsigned_chat",
        "signing_bytes_of_envelope_unsigned_chat",
        "ack_payload",
        "group_payload_hub_ping",
        "group_payload_message",
        "peer_announce",
        "envelope_signed_encrypted_chat",
        "group_payload_message_encrypted_signed",
    }
    assert set(VECTORS) == covered


def test_unsigned_chat_envelope_both_ways() -> None:
    envelope = unsigned_chat()
    assert encode_envelope(envelope) == vector_bytes("envelope_unsigned_chat")
    assert decode_envelope(vector_bytes("envelope_unsigned_chat")) == envelope


def test_signing_bytes_leave_out_signature_and_ttl() -> None:
    assert signing_bytes(unsigned_chat()) == vector_bytes("signing_bytes_of_envelope_unsigned_chat")


@pytest.mark.parametrize(
    ("name", "value", "wire_type"),
    [
        ("ack_payload", AckPayload("m1", AckType.RecipientReceived), AckPayload),
        ("group_payload_hub_ping", GroupHubPing("grp-x"), GROUP_PAYLOAD),
        (
            "group_payload_message",
            GroupMessage("g", "m", "s", "u", "t", b"", bytes(24), 0, False, 1, b"", 0),
            GROUP_PAYLOAD,
        ),
        ("peer_announce", PeerAnnounce("n", "u", (NodeRole.Peer,), None, 5), PeerAnnounce),
    ],
)
def test_payload_vectors_both_ways(name: str, value: object, wire_type: object) -> None:
    assert encode(value, wire_type) == vector_bytes(name)
    assert decode(vector_bytes(name), wire_type) == value


def test_payload_helpers_wrap_group_variants_by_message_type() -> None:
    assert encode_payload(GroupHubPing("grp-x")) == vector_bytes("group_payload_hub_ping")
    assert decode_payload(MessageType.GroupHubPing, vector_bytes("group_payload_hub_ping")) == GroupHubPing("grp-x")


def test_signed_encrypted_chat_is_reproduced_byte_for_byte() -> None:
    vector = VECTORS["envelope_signed_encrypted_chat"]
    sender = Identity.from_seed(bytes.fromhex(vector["sender_seed_hex"]))
    recipient = Identity.from_seed(bytes.fromhex(vector["recipient_seed_hex"]))
    assert sender.node_id.hex == vector["sender_node_id"]
    assert recipient.node_id.hex == vector["recipient_node_id"]
    expected_wire = vector_bytes("envelope_signed_encrypted_chat")
    reference = decode_envelope(expected_wire)

    sealed = seal_envelope(
        sender,
        recipient.node_id,
        MessageType.Chat,
        bytes.fromhex(vector["plaintext_hex"]),
        now_ms=reference.timestamp_ms,
        message_id=reference.id,
        ephemeral_secret=bytes.fromhex(vector["ephemeral_secret_hex"]),
        nonce=bytes.fromhex(vector["nonce_hex"]),
    )
    assert sealed.wire == expected_wire
    assert sealed.envelope == reference
    assert sealed.envelope.signature.hex() == vector["signature_hex"]
    assert sealed.envelope.payload.hex() == vector["encrypted_payload_hex"]


def test_signed_encrypted_chat_intermediate_values() -> None:
    vector = VECTORS["envelope_signed_encrypted_chat"]
    recipient = Identity.from_seed(bytes.fromhex(vector["recipient_seed_hex"]))
    sealed = encrypt_for(
        recipient.node_id.raw,
        bytes.fromhex(vector["plaintext_hex"]),
        ephemeral_secret=bytes.fromhex(vector["ephemeral_secret_hex"]),
        nonce=bytes.fromhex(vector["nonce_hex"]),
    )
    assert sealed.ephemeral_pk.hex() == vector["ephemeral_public_hex"]
    assert encode(sealed).hex() == vector["encrypted_payload_hex"]
    assert decode(bytes.fromhex(vector["encrypted_payload_hex"]), EncryptedPayload) == sealed
    shared = sodium.crypto_scalarmult(
        bytes.fromhex(vector["ephemeral_secret_hex"]),
        sodium.crypto_sign_ed25519_pk_to_curve25519(recipient.node_id.raw),
    )
    assert hkdf_sha256(shared, E2E_INFO).hex() == vector["hkdf_key_hex"]


def test_signed_encrypted_chat_opens_for_its_recipient() -> None:
    vector = VECTORS["envelope_signed_encrypted_chat"]
    recipient = Identity.from_seed(bytes.fromhex(vector["recipient_seed_hex"]))
    opened = open_envelope(recipient, vector_bytes("envelope_signed_encrypted_chat"))
    assert opened.plaintext == bytes.fromhex(vector["plaintext_hex"])
    assert opened.envelope.sender == vector["sender_node_id"]


def test_encrypted_group_message_both_ways() -> None:
    vector = VECTORS["group_payload_message_encrypted_signed"]
    sender = Identity.from_seed(bytes.fromhex(vector["sender_seed_hex"]))
    decoded = decode(vector_bytes("group_payload_message_encrypted_signed"), GROUP_PAYLOAD)
    assert isinstance(decoded, GroupMessage)
    message = seal_group_message(
        sender,
        group_id=decoded.group_id,
        message_id=decoded.message_id,
        username=vector["username"],
        text=vector["text"],
        sent_at_ms=vector["sent_at"],
        sender_key=bytes.fromhex(vector["sender_key_hex"]),
        key_epoch=vector["key_epoch"],
        nonce=bytes.fromhex(vector["nonce_hex"]),
    )
    assert message == decoded
    assert message.sender_id == vector["sender_node_id"]
    assert message.ciphertext.hex() == vector["ciphertext_hex"]
    assert group_signing_bytes(message).hex() == vector["signing_bytes_hex"]
    assert message.sender_signature.hex() == vector["signature_hex"]
    assert encode(message, GROUP_PAYLOAD) == vector_bytes("group_payload_message_encrypted_signed")

    content = open_group_message(decoded, bytes.fromhex(vector["sender_key_hex"]))
    assert (content.username, content.text) == (vector["username"], vector["text"])
    assert encode(content).hex() == vector["content_hex"]
