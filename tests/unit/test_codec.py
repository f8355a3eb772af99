"""The codec round-trips every payload type and refuses everything else with DecodeError only."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import envelopes, for_wire_type
from tomproto.errors import DecodeError
from tomproto.wire import PAYLOAD_TYPES, decode_payload, encode_payload, message_type_of
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    MessageType,
    decode_envelope,
    encode_envelope,
)
from tomproto.wire.group import GROUP_PAYLOAD, GROUP_VARIANTS, GroupHubPing, GroupMessageContent
from tomproto.wire.payloads import EncryptedPayload

# Every payload wire type, plus the ones that travel nested inside other payloads' bytes.
WIRE_TYPES: list[Any] = [*dict.fromkeys(PAYLOAD_TYPES.values()), EncryptedPayload, GroupMessageContent]
NODE_A = "a" * 64
NODE_B = "b" * 64


def sample_envelope(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "id": "00000000-0000-4000-8000-000000000000",
        "sender": NODE_A,
        "recipient": NODE_B,
        "via": (),
        "msg_type": MessageType.Chat,
        "payload": b"hi\xff",
        "timestamp_ms": 1708000000000,
        "signature": b"",
        "ttl": 4,
        "encrypted": False,
    }
    fields.update(changes)
    return Envelope(**fields)


def raw_envelope_fields() -> list[Any]:
    return msgpack.unpackb(encode_envelope(sample_envelope()))


def decodes_or_refuses(data: bytes, wire_type: Any) -> None:
    """Decoding returns a value whose canonical bytes are exactly `data`, or raises DecodeError."""
    try:
        value = decode(data, wire_type)
    except DecodeError:
        return
    assert encode(value, wire_type) == data


@pytest.mark.parametrize("wire_type", WIRE_TYPES, ids=repr)
@given(data=st.data())
def test_every_payload_type_round_trips(wire_type: Any, data: st.DataObject) -> None:
    value = data.draw(for_wire_type(wire_type))
    assert decode(encode(value, wire_type), wire_type) == value


@given(payload=for_wire_type(GROUP_PAYLOAD))
def test_group_payloads_travel_under_their_own_message_type(payload: Any) -> None:
    msg_type = message_type_of(payload)
    assert msg_type.value == "Group" + type(payload).VARIANT
    assert decode_payload(msg_type, encode_payload(payload)) == payload


def test_every_group_message_type_has_a_variant() -> None:
    group_types = {t for t in MessageType if t.value.startswith("Group")}
    assert {MessageType("Group" + cls.VARIANT) for cls in GROUP_VARIANTS} == group_types
    assert all(PAYLOAD_TYPES[t] is GROUP_PAYLOAD for t in group_types)
    assert len(MessageType) == 36


def test_group_payload_under_the_wrong_message_type_is_refused() -> None:
    with pytest.raises(DecodeError) as refused:
        decode_payload(MessageType.GroupHubPong, encode_payload(GroupHubPing("grp-x")))
    assert refused.value.reason == "type_mismatch"


@given(envelope=envelopes)
def test_envelopes_round_trip(envelope: Envelope) -> None:
    assert decode_envelope(encode_envelope(envelope)) == envelope


@given(data=st.binary(max_size=600))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    for wire_type in WIRE_TYPES:
        decodes_or_refuses(data, wire_type)
    try:
        envelope = decode_envelope(data)
    except DecodeError:
        return
    assert encode_envelope(envelope) == data


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), st.integers(0, 10**6), st.integers(0, 255)
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, position, value in steps:
        if not buffer:
            break
        index = position % len(buffer)
        if kind == "flip":
            buffer[index] ^= 1 << (value % 8)
        elif kind == "set":
            buffer[index] = value
        elif kind == "insert":
            buffer.insert(index, value)
        elif kind == "delete":
            del buffer[index]
        else:
            del buffer[index:]
    return bytes(buffer)


@pytest.mark.parametrize("wire_type", WIRE_TYPES, ids=repr)
@given(data=st.data(), steps=mutations)
def test_mutated_payloads_only_ever_raise_decode_error(wire_type: Any, data: st.DataObject, steps: Any) -> None:
    original = encode(data.draw(for_wire_type(wire_type)), wire_type)
    decodes_or_refuses(mutate(original, steps), wire_type)


@given(envelope=envelopes, steps=mutations)
def test_mutated_envelopes_only_ever_raise_decode_error(envelope: Envelope, steps: Any) -> None:
    mutated = mutate(encode_envelope(envelope), steps)
    try:
        decoded = decode_envelope(mutated)
    except DecodeError:
        return
    assert encode_envelope(decoded) == mutated


LYING_HEADERS = {
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff",
    "bin32": b"\xc6\xff\xff\xff\xff",
    "array16": b"\xdc\xff\xff",
}


@pytest.mark.parametrize("header", LYING_HEADERS.values(), ids=LYING_HEADERS.keys())
def test_a_header_claiming_billions_of_elements_fails_without_allocating(header: bytes) -> None:
    fields = raw_envelope_fields()
    prefix = msgpack.packb(fields[:5])[1:]  # the five fields before the payload, without their array header
    envelope_with_lying_payload = b"\x9a" + prefix + header + b"\x01\x02\x03"
    tracemalloc.start()
    try:
        for data in (header, header + b"\x00" * 16, envelope_with_lying_payload):
            with pytest.raises(DecodeError):
                decode_envelope(data)
            for wire_type in WIRE_TYPES:
                with pytest.raises(DecodeError):
                    decode(data, wire_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_envelope(b"\x91" * 100_000 + b"\x00")


def test_oversized_input_is_refused_before_parsing() -> None:
    huge = encode_envelope(sample_envelope(payload=bytes(MAX_ENVELOPE_BYTES)))
    with pytest.raises(DecodeError) as refused:
        decode_envelope(huge)
    assert refused.value.reason == "too_large"


def replace_field(index: int, value: Any, *, bin_type: bool = True) -> bytes:
    fields = raw_envelope_fields()
    fields[index] = value
    return msgpack.packb(fields, use_bin_type=bin_type)


NON_CANONICAL = {
    # each decodes to a valid envelope value, but is not how the protocol writes it
    "boolean inside a byte array": replace_field(5, [104, True, 255]),
    "ttl as uint32": encode_envelope(sample_envelope())[:-2] + b"\xce\x00\x00\x00\x04" + b"\xc2",
    "id with a str16 header": encode_envelope(sample_envelope()).replace(b"\xd9\x24", b"\xda\x00\x24", 1),
}


@pytest.mark.parametrize("data", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_alternative_spellings_are_refused_as_noncanonical(data: bytes) -> None:
    with pytest.raises(DecodeError) as refused:
        decode_envelope(data)
    assert refused.value.reason == "noncanonical"


MALFORMED = {
    "payload as msgpack bin": replace_field(5, b"hi\xff"),
    "unknown message type": replace_field(4, "Chit"),
    "uppercase hex sender": replace_field(1, NODE_A.upper()),
    "short recipient": replace_field(2, "b" * 63),
    "id not a uuid": replace_field(0, "m1"),
    "via not a list": replace_field(3, NODE_A),
    "byte above 255": replace_field(5, [1, 256]),
    "negative byte": replace_field(5, [-1]),
    "signature of 63 bytes": replace_field(7, [0] * 63),
    "negative timestamp": replace_field(6, -1),
    "ttl above u32": replace_field(8, 1 << 32),
    "encrypted as integer": replace_field(9, 1),
    "nine fields": msgpack.packb(raw_envelope_fields()[:9]),
    "trailing garbage": encode_envelope(sample_envelope()) + b"\x00",
    "truncated": encode_envelope(sample_envelope())[:-3],
    "empty": b"",
    "invalid utf-8 string": encode_envelope(sample_envelope()).replace(b"Chat", b"Ch\xff\xfe", 1),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_envelopes_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError) as refused:
        decode_envelope(data)
    assert refused.value.reason == "malformed"


def test_decode_errors_say_where_the_problem_is() -> None:
    bad_role = msgpack.packb({"MemberJoined": ["grp-1", ["n", "u", 1, "Boss"]]})
    with pytest.raises(DecodeError, match=r"GroupMember\.role: unknown GroupMemberRole 'Boss'"):
        decode(bad_role, GROUP_PAYLOAD)
