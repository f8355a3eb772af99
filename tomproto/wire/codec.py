"""The compact MessagePack codec of the ToM protocol.

Rules it enforces (spec/protocol.md §2):
- a struct is an array of its fields in declaration order; a transparent newtype is its one field;
- byte fields are arrays of integers 0..255, never msgpack `bin`;
- a unit enum is its variant name; a struct variant is a one-entry map {name: [fields]};
- optional values are nil or the value;
- decoding accepts exactly what the encoder writes: `bin` where an integer array belongs is a type
  error, and after decoding the value is encoded again and must give the same bytes, which rejects
  non-minimal integers, booleans in byte arrays, non-minimal headers and any other alternative
  spelling of a value;
- decoding untrusted bytes returns a value or raises `DecodeError`, nothing else. msgpack's own
  length limits (no container longer than the input) keep a lying header from allocating.

Wire types are frozen dataclasses whose field annotations name the wire type: `str`, `bool`,
`U8`/`U32`/`U64`, `bytes` or `FixedBytes(n)`, `X | None`, `tuple[X, ...]`, a str `Enum`,
another wire struct, or a `Variants` union.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

import msgpack

from tomproto.errors import DecodeError, LocalError

__all__ = [
    "U8",
    "U32",
    "U64",
    "UInt",
    "FixedBytes",
    "Bytes24",
    "Bytes32",
    "Variants",
    "wire_fields",
    "to_wire",
    "from_wire",
    "encode",
    "decode",
    "unpack_untrusted",
]

T = TypeVar("T")
Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class UInt:
    """An unsigned integer of `bits` bits."""

    bits: int


@dataclasses.dataclass(frozen=True, slots=True)
class FixedBytesLength:
    """A byte array of exactly `length` bytes (a Rust `[u8; N]`)."""

    length: int


def FixedBytes(length: int) -> Any:  # noqa: N802 - reads as a type in annotations
    return Annotated[bytes, FixedBytesLength(length)]


U8 = Annotated[int, UInt(8)]
U32 = Annotated[int, UInt(32)]
U64 = Annotated[int, UInt(64)]
Bytes24 = FixedBytes(24)
Bytes32 = FixedBytes(32)


class Variants:
    """A Rust enum of struct variants: each member class declares `VARIANT: ClassVar[str]`."""

    def __init__(self, name: str, members: tuple[type, ...]) -> None:
        self.name = name
        self.members = members
        self.by_name: dict[str, type] = {member.VARIANT: member for member in members}  # type: ignore[attr-defined]
        if len(self.by_name) != len(members):
            raise LocalError(f"{name}: two variants share a name")

    def __repr__(self) -> str:
        return f"Variants({self.name})"


def wire_fields(cls: type) -> list[tuple[str, Any]]:
    """The (name, wire type) of each field of a wire struct, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(field.name, hints[field.name]) for field in dataclasses.fields(cls)]


def is_transparent(cls: type) -> bool:
    """A newtype that encodes as its single field (a Rust `struct X(T)` or a bare value)."""
    return bool(getattr(cls, "WIRE_TRANSPARENT", False))


_compiled: dict[Any, tuple[Encoder, Decoder]] = {}


def _converters(wire_type: Any) -> tuple[Encoder, Decoder]:
    found = _compiled.get(wire_type)
    if found is None:
        found = _compile(wire_type)
        _compiled[wire_type] = found
    return found


def _fail(message: str) -> typing.NoReturn:
    raise DecodeError(message)


def _compile(wire_type: Any) -> tuple[Encoder, Decoder]:
    if isinstance(wire_type, Variants):
        return _compile_variants(wire_type)
    origin = typing.get_origin(wire_type)
    if origin is Annotated:
        base, *extras = typing.get_args(wire_type)
        (extra,) = extras
        if base is int and isinstance(extra, UInt):
            return _compile_uint(extra.bits)
        if base is bytes and isinstance(extra, FixedBytesLength):
            return _compile_bytes(extra.length)
        raise LocalError(f"unsupported wire annotation {wire_type!r}")
    if wire_type is str:
        return _identity, _decode_str
    if wire_type is bool:
        return _identity, _decode_bool
    if wire_type is bytes:
        return _compile_bytes(None)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(wire_type) if arg is not type(None)]
        if len(options) != 1:
            raise LocalError(f"only `X | None` unions are wire types, not {wire_type!r}")
        return _compile_optional(options[0])
    if origin is tuple:
        element, ellipsis = typing.get_args(wire_type)
        if ellipsis is not Ellipsis:
            raise LocalError(f"sequences are written tuple[X, ...], not {wire_type!r}")
        return _compile_sequence(element)
    if isinstance(wire_type, type) and issubclass(wire_type, enum.Enum):
        return _compile_enum(wire_type)
    if isinstance(wire_type, type) and dataclasses.is_dataclass(wire_type):
        return _compile_struct(wire_type)
    if isinstance(wire_type, str) or origin is ClassVar:
        raise LocalError(f"unresolved wire type {wire_type!r}")
    raise LocalError(f"{wire_type!r} is not a wire type")


def _identity(value: Any) -> Any:
    return value


def _decode_str(obj: Any) -> str:
    if type(obj) is not str:
        _fail(f"expected a string, got {type(obj).__name__}")
    return obj


def _decode_bool(obj: Any) -> bool:
    if type(obj) is not bool:
        _fail(f"expected a boolean, got {type(obj).__name__}")
    return obj


def _compile_uint(bits: int) -> tuple[Encoder, Decoder]:
    limit = 1 << bits

    def encode_uint(value: Any) -> int:
        if type(value) is not int or not 0 <= value < limit:
            raise LocalError(f"expected an unsigned {bits}-bit integer, got {value!r}")
        return value

    def decode_uint(obj: Any) -> int:
        if type(obj) is not int:
            _fail(f"expected an unsigned {bits}-bit integer, got {type(obj).__name__}")
        if not 0 <= obj < limit:
            _fail(f"integer {obj} out of range for u{bits}")
        return obj

    return encode_uint, decode_uint


def bytes_from_wire(obj: Any, length: int | None = None) -> bytes:
    """A byte field: an array of integers 0..255 (booleans are caught by the canonical check)."""
    if type(obj) is not list:
        _fail(f"expected a byte array (array of integers), got {type(obj).__name__}")
    try:
        value = bytes(obj)
    except (TypeError, ValueError):
        _fail("byte array holds something other than integers 0..255")
    if length is not None and len(value) != length:
        _fail(f"expected {length} bytes, got {len(value)}")
    return value


def _compile_bytes(length: int | None) -> tuple[Encoder, Decoder]:
    def encode_bytes(value: Any) -> list[int]:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise LocalError(f"expected bytes, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise LocalError(f"expected {length} bytes, got {len(value)}")
        return list(value)

    def decode_bytes(obj: Any) -> bytes:
        return bytes_from_wire(obj, length)

    return encode_bytes, decode_bytes


def _compile_optional(inner: Any) -> tuple[Encoder, Decoder]:
    encode_inner, decode_inner = _converters(inner)

    def encode_optional(value: Any) -> Any:
        return None if value is None else encode_inner(value)

    def decode_optional(obj: Any) -> Any:
        return None if obj is None else decode_inner(obj)

    return encode_optional, decode_optional


def _compile_sequence(element: Any) -> tuple[Encoder, Decoder]:
    encode_element, decode_element = _converters(element)

    def encode_sequence(value: Any) -> list[Any]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise LocalError(f"expected a tuple, got {type(value).__name__}")
        return [encode_element(item) for item in value]

    def decode_sequence(obj: Any) -> tuple[Any, ...]:
        if type(obj) is not list:
            _fail(f"expected an array, got {type(obj).__name__}")
        items = []
        for index, item in enumerate(obj):
            try:
                items.append(decode_element(item))
            except DecodeError as error:
                raise DecodeError(f"[{index}]: {error}") from None
        return tuple(items)

    return encode_sequence, decode_sequence


def _compile_enum(enum_type: type[enum.Enum]) -> tuple[Encoder, Decoder]:
    by_name = {member.value: member for member in enum_type}

    def encode_enum(value: Any) -> str:
        if not isinstance(value, enum_type):
            raise LocalError(f"expected a {enum_type.__name__}, got {value!r}")
        name: str = value.value
        return name

    def decode_enum(obj: Any) -> enum.Enum:
        if type(obj) is not str:
            _fail(f"expected a {enum_type.__name__} name, got {type(obj).__name__}")
        member = by_name.get(obj)
        if member is None:
            _fail(f"unknown {enum_type.__name__} {obj[:40]!r}")
        return member

    return encode_enum, decode_enum


def _compile_struct(cls: type) -> tuple[Encoder, Decoder]:
    fields = wire_fields(cls)
    names = [name for name, _ in fields]
    converters = [_converters(wire_type) for _, wire_type in fields]
    encoders = [encoder for encoder, _ in converters]
    decoders = [decoder for _, decoder in converters]
    count = len(fields)
    label = cls.__name__

    if is_transparent(cls):
        if count != 1:
            raise LocalError(f"{label}: a transparent newtype has exactly one field")
        (name,), (encode_field,), (decode_field,) = names, encoders, decoders

        def encode_newtype(value: Any) -> Any:
            if not isinstance(value, cls):
                raise LocalError(f"expected a {label}, got {type(value).__name__}")
            return encode_field(getattr(value, name))

        def decode_newtype(obj: Any) -> Any:
            try:
                return cls(decode_field(obj))
            except DecodeError as error:
                raise DecodeError(f"{label}: {error}") from None

        return encode_newtype, decode_newtype

    def encode_struct(value: Any) -> list[Any]:
        if not isinstance(value, cls):
            raise LocalError(f"expected a {label}, got {type(value).__name__}")
        try:
            return [encode(getattr(value, name)) for name, encode in zip(names, encoders, strict=True)]
        except LocalError as error:
            raise LocalError(f"{label}: {error}") from None

    def decode_struct(obj: Any) -> Any:
        if type(obj) is not list:
            _fail(f"{label}: expected an array of {count} fields, got {type(obj).__name__}")
        if len(obj) != count:
            _fail(f"{label}: expected {count} fields, got {len(obj)}")
        values = []
        for name, decode, item in zip(names, decoders, obj, strict=True):
            try:
                values.append(decode(item))
            except DecodeError as error:
                raise DecodeError(f"{label}.{name}: {error}") from None
        return cls(*values)

    return encode_struct, decode_struct


def _compile_variants(union: Variants) -> tuple[Encoder, Decoder]:
    members = {cls: (cls.VARIANT, _converters(cls)) for cls in union.members}  # type: ignore[attr-defined]
    by_name = {name: converters[1] for name, converters in members.values()}

    def encode_variant(value: Any) -> dict[str, Any]:
        found = members.get(type(value))
        if found is None:
            raise LocalError(f"{type(value).__name__} is not a {union.name} variant")
        name, (encode_member, _) = found
        return {name: encode_member(value)}

    def decode_variant(obj: Any) -> Any:
        if type(obj) is not dict or len(obj) != 1:
            _fail(f"{union.name}: expected a one-entry map {{variant: fields}}")
        ((name, fields),) = obj.items()
        decode_member = by_name.get(name)
        if decode_member is None:
            _fail(f"{union.name}: unknown variant {str(name)[:40]!r}")
        return decode_member(fields)

    return encode_variant, decode_variant


def to_wire(value: Any, wire_type: Any = None) -> Any:
    """The msgpack-ready form (lists, ints, strings, dicts) of a wire value."""
    encoder, _ = _converters(type(value) if wire_type is None else wire_type)
    return encoder(value)


def from_wire(obj: Any, wire_type: Any) -> Any:
    """The wire value of type `wire_type` that the msgpack object `obj` spells."""
    _, decoder = _converters(wire_type)
    return decoder(obj)


def pack(obj: Any) -> bytes:
    """msgpack with the protocol's settings (str8 for strings, minimal integers)."""
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def unpack_untrusted(data: bytes | bytearray | memoryview) -> Any:
    """Parse msgpack from the network. Anything msgpack objects to becomes `DecodeError`."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as error:  # msgpack raises many types (ValueError, FormatError, ...)
        raise DecodeError(f"not valid MessagePack: {type(error).__name__}: {error}") from None


def encode(value: Any, wire_type: Any = None) -> bytes:
    """Encode a wire value (its type is taken from the value unless given, e.g. a Variants)."""
    return pack(to_wire(value, wire_type))


def decode(data: bytes | bytearray | memoryview, wire_type: Any) -> Any:
    """Decode untrusted bytes into a value of `wire_type`, or raise `DecodeError`."""
    data = bytes(data)
    value = from_wire(unpack_untrusted(data), wire_type)
    try:
        canonical = encode(value, wire_type)
    except LocalError as error:  # cannot happen for a decoded value; kept as a typed failure
        raise DecodeError(f"decoded value does not encode: {error}") from None
    if canonical != data:
        raise DecodeError(
            "not the canonical encoding (non-minimal integer or header, or a boolean where "
            "a byte belongs)",
            reason="noncanonical",
        )
    return value
