"""The opener accepts exactly what an honest sender sealed for us, and says why it refuses the rest."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import ALICE, BOB, CAROL, node_id_hex
from tomproto.crypto.e2e import decrypt_with
from tomproto.errors import CryptoError
from tomproto.sealing import (
    EnvelopeRejected,
    RejectReason,
    open_envelope,
    seal_envelope,
    verify_envelope,
    wire_size_spread,
)
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import MAX_ENVELOPE_BYTES, Envelope, MessageType, encode_envelope, pack_signed
from tomproto.wire.payloads import AckPayload, AckType, EncryptedPayload

NOW_MS = 1_764_000_000_000


def chat(plaintext: bytes = b"probe", **options: Any) -> bytes:
    return seal_envelope(ALICE, BOB.node_id, MessageType.Chat, plaintext, now_ms=NOW_MS, **options).wire


def rejection(identity: object, data: bytes) -> RejectReason:
    with pytest.raises(EnvelopeRejected) as refused:
        open_envelope(identity, data)  # type: ignore[arg-type]
    return refused.value.reason


def test_a_sealed_chat_opens_for_its_recipient_only_decrypted() -> None:
    wire = chat(b"hello bob")
    opened = open_envelope(BOB, wire)
    assert opened.plaintext == b"hello bob"
    assert opened.envelope.encrypted and opened.envelope.is_signed
    assert opened.envelope.sender == ALICE.node_id.hex
    assert b"hello bob" not in wire


def test_each_seal_uses_fresh_randomness() -> None:
    first, second = (open_envelope(BOB, chat(b"same")).envelope for _ in range(2))
    assert first.id != second.id
    assert decode(first.payload, EncryptedPayload).ephemeral_pk != decode(second.payload, EncryptedPayload).ephemeral_pk


@pytest.mark.parametrize("plaintext_bytes", [64, 250])
def test_the_wire_size_spread_predicts_the_sizes_seals_draw(plaintext_bytes: int) -> None:
    # What datagram probes rely on: a size that 9 seals in 10 fit (the fit is re-drawn otherwise).
    def sealed():
        return seal_envelope(ALICE, BOB.node_id, MessageType.Chat, b"p" * plaintext_bytes, now_ms=NOW_MS)

    spread = wire_size_spread(sealed())
    sizes = [len(sealed().wire) for _ in range(1000)]
    assert spread.low <= min(sizes) and max(sizes) <= spread.high
    bound = spread.likely_at_most(z=1.3)
    share_within = sum(size <= bound for size in sizes) / len(sizes)
    assert 0.8 <= share_within <= 0.97  # 0.90 expected; 0.8 is ten standard errors away


def test_a_ciphertext_for_another_recipient_is_refused() -> None:
    wire = chat(b"for bob")
    assert rejection(CAROL, wire) is RejectReason.wrong_recipient
    # Carol cannot open Bob's ciphertext by hand either.
    sealed = decode(open_envelope(BOB, wire).envelope.payload, EncryptedPayload)
    with pytest.raises(CryptoError):
        decrypt_with(CAROL.x25519_secret, sealed)


def test_an_honestly_signed_envelope_holding_someone_elses_ciphertext_does_not_decrypt() -> None:
    """Someone re-addresses Bob's ciphertext to Carol under a valid signature of their own."""
    sealed_for_bob = decode(open_envelope(BOB, chat(b"for bob")).envelope.payload, EncryptedPayload)
    envelope = Envelope(
        "00000000-0000-4000-8000-000000000001", ALICE.node_id.hex, CAROL.node_id.hex, (),
        MessageType.Chat, encode(sealed_for_bob), NOW_MS, b"", 4, True,
    )
    _, wire = pack_signed(envelope, ALICE.sign)
    assert rejection(CAROL, wire) is RejectReason.undecryptable


def test_unsigned_envelopes_are_refused() -> None:
    signed = open_envelope(BOB, chat()).envelope
    assert rejection(BOB, encode_envelope(replace(signed, signature=b""))) is RejectReason.unsigned


def test_a_plaintext_chat_is_refused_unless_allowed() -> None:
    wire = chat(b"in clear", encrypt=False)
    assert rejection(BOB, wire) is RejectReason.not_encrypted
    assert open_envelope(BOB, wire, allow_plain_chat=True).plaintext == b"in clear"


def test_other_types_travel_signed_in_clear() -> None:
    payload = encode(AckPayload("00000000-0000-4000-8000-000000000000", AckType.RecipientReceived))
    wire = seal_envelope(BOB, ALICE.node_id, MessageType.Ack, payload, now_ms=NOW_MS).wire
    opened = open_envelope(ALICE, wire)
    assert opened.envelope.encrypted is False and opened.plaintext == payload
    assert verify_envelope(wire) == opened.envelope


def test_garbage_and_oversized_input_are_refused_with_reasons() -> None:
    assert rejection(BOB, b"\x00\x01\x02") is RejectReason.malformed
    assert rejection(BOB, bytes(MAX_ENVELOPE_BYTES + 1)) is RejectReason.too_large


def flip(data: bytes, bit: int) -> bytes:
    buffer = bytearray(data)
    buffer[bit // 8] ^= 1 << (bit % 8)
    return bytes(buffer)


def check_bit_flip(wire: bytes, bit: int, ttl: int) -> None:
    """A flipped bit outside ttl is refused; inside ttl the envelope still opens (relays may
    lower ttl), unless the flip turns the ttl into something that is not an integer."""
    ttl_byte = len(wire) - 2  # wire ends with ttl (a positive fixint here) then `encrypted`
    flipped = flip(wire, bit)
    if bit // 8 == ttl_byte and bit % 8 < 7:
        opened = open_envelope(BOB, flipped)
        assert opened.envelope.ttl == ttl ^ (1 << (bit % 8))
        assert opened.plaintext == open_envelope(BOB, wire).plaintext
        return
    with pytest.raises(EnvelopeRejected):
        open_envelope(BOB, flipped)


def test_every_single_bit_flip_of_a_sealed_chat_is_caught() -> None:
    wire = chat(b"bit flip probe", ttl=4)
    reasons: dict[RejectReason, int] = {}
    for bit in range(len(wire) * 8):
        flipped = flip(wire, bit)
        try:
            opened = open_envelope(BOB, flipped)
        except EnvelopeRejected as refused:
            reasons[refused.reason] = reasons.get(refused.reason, 0) + 1
            continue
        # The only flips that may open are the ttl's low bits: the signature does not cover ttl.
        assert bit // 8 == len(wire) - 2 and bit % 8 < 7, f"bit {bit} flipped and the envelope still opened"
        assert opened.envelope.ttl == 4 ^ (1 << (bit % 8))
    # Flips that keep the structure valid are caught by the signature, the rest by the decoder.
    assert reasons[RejectReason.bad_signature] > 0 and reasons[RejectReason.malformed] > 0
    assert sum(reasons.values()) == len(wire) * 8 - 7


@settings(max_examples=60, deadline=None)
@given(
    plaintext=st.binary(max_size=200),
    via=st.lists(node_id_hex, max_size=3),
    ttl=st.integers(0, 127),
    seed=st.integers(0, 2**32),
    bit_choice=st.integers(0, 2**32),
)
def test_a_flipped_bit_in_any_signed_field_is_refused(
    plaintext: bytes, via: list[str], ttl: int, seed: int, bit_choice: int
) -> None:
    # A seeded source for ids, keys and nonces keeps every example reproducible.
    wire = chat(plaintext, via=tuple(via), ttl=ttl, random_bytes=random.Random(seed).randbytes)
    check_bit_flip(wire, bit_choice % (len(wire) * 8), ttl)
