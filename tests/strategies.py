"""Hypothesis strategies derived from the wire types themselves, so that every field of every
payload type is exercised without a hand-written generator per type."""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Annotated, Any

from hypothesis import strategies as st

from tomproto.identity import Identity
from tomproto.wire.codec import FixedBytesLength, UInt, Variants, wire_fields
from tomproto.wire.envelope import Envelope, MessageType

_TEXT = st.text(max_size=24)


def for_wire_type(wire_type: Any) -> st.SearchStrategy[Any]:
    if isinstance(wire_type, Variants):
        return st.one_of([for_wire_type(member) for member in wire_type.members])
    origin = typing.get_origin(wire_type)
    if origin is Annotated:
        _base, extra = typing.get_args(wire_type)
        if isinstance(extra, UInt):
            return st.integers(0, (1 << extra.bits) - 1)
        if isinstance(extra, FixedBytesLength):
            return st.binary(min_size=extra.length, max_size=extra.length)
    if wire_type is str:
        return _TEXT
    if wire_type is bool:
        return st.booleans()
    if wire_type is bytes:
        return st.binary(max_size=48)
    if origin in (typing.Union, __import__("types").UnionType):
        (inner,) = [arg for arg in typing.get_args(wire_type) if arg is not type(None)]
        return st.none() | for_wire_type(inner)
    if origin is tuple:
        element, _ = typing.get_args(wire_type)
        return st.lists(for_wire_type(element), max_size=3).map(tuple)
    if isinstance(wire_type, type) and issubclass(wire_type, enum.Enum):
        return st.sampled_from(list(wire_type))
    if isinstance(wire_type, type) and dataclasses.is_dataclass(wire_type):
        return st.builds(wire_type, *[for_wire_type(field_type) for _, field_type in wire_fields(wire_type)])
    raise TypeError(f"no strategy for {wire_type!r}")


node_id_hex = st.binary(min_size=32, max_size=32).map(bytes.hex)
message_id = st.uuids(version=4).map(str)

envelopes = st.builds(
    Envelope,
    message_id,
    node_id_hex,
    node_id_hex,
    st.lists(node_id_hex, max_size=5).map(tuple),
    st.sampled_from(list(MessageType)),
    st.binary(max_size=300),
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([b"", bytes(range(64))]),
    st.integers(0, (1 << 32) - 1),
    st.booleans(),
)

# Fixed identities keep key generation out of the examples (seeds are arbitrary test constants).
ALICE = Identity.from_seed(bytes(range(32)))
BOB = Identity.from_seed(bytes(range(32, 64)))
CAROL = Identity.from_seed(bytes(range(64, 96)))
