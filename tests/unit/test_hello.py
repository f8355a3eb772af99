"""The capability hello: Hello and Welcome round trip, later versions' extra fields are accepted,
and nothing that arrives, however garbled, makes a parser raise."""

from __future__ import annotations

import math

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_probe import PROBE
from tomstress.probe import (
    CAPABILITIES,
    HELLO_TAG,
    WELCOME_TAG,
    Budget,
    Hello,
    Welcome,
    encode_hello,
    encode_probe,
    encode_welcome,
    parse_hello,
    parse_probe,
    parse_reply,
    parse_welcome,
)

HELLO = Hello("0.1.0", CAPABILITIES, "0123456789abcdef", Budget(4020.0, 8140.0, 86_400.0))
GRANTED = Welcome("0.1.0", CAPABILITIES, True, Budget(2500.0, 5000.0, 86_400.0), "capped")
REFUSED = Welcome("0.1.0", CAPABILITIES, False, None, "serving 1 campaign already")


def test_the_capabilities_named_by_the_protocol_are_all_there() -> None:
    assert {"probe-v1", "follow-up", "datagram", "runtime-acks", "budget"} <= set(CAPABILITIES)


def test_hello_and_welcome_round_trip() -> None:
    assert parse_hello(encode_hello(HELLO)) == HELLO
    assert parse_welcome(encode_welcome(GRANTED)) == GRANTED
    assert parse_welcome(encode_welcome(REFUSED)) == REFUSED
    no_budget = Welcome("0.1.0", (), True, None, "")
    assert parse_welcome(encode_welcome(no_budget)) == no_budget


def test_a_hello_fits_one_small_message() -> None:
    assert len(encode_hello(HELLO)) < 200


def test_hello_welcome_and_probes_are_never_taken_for_one_another() -> None:
    hello, welcome, probe = encode_hello(HELLO), encode_welcome(GRANTED), encode_probe(PROBE)
    assert parse_probe(hello) is None and parse_reply(hello) is None and parse_welcome(hello) is None
    assert parse_probe(welcome) is None and parse_hello(welcome) is None
    assert parse_hello(probe) is None and parse_welcome(probe) is None


def test_fields_from_a_later_version_are_accepted() -> None:
    hello = [HELLO.version, list(HELLO.capabilities), HELLO.run_id, 4020.0, 8140, 86_400, "later", {"x": 1}]
    assert parse_hello(HELLO_TAG + msgpack.packb(hello, use_bin_type=True)) == Hello(
        HELLO.version, HELLO.capabilities, HELLO.run_id, Budget(4020.0, 8140.0, 86_400.0)
    )
    welcome = ["0.2.0", ["probe-v1", "probe-v2"], True, True, 10, 20, 30, "", [1, 2], b"more"]
    parsed = parse_welcome(WELCOME_TAG + msgpack.packb(welcome, use_bin_type=True))
    assert parsed == Welcome("0.2.0", ("probe-v1", "probe-v2"), True, Budget(10.0, 20.0, 30.0), "")


def test_malformed_hellos_and_welcomes_are_none() -> None:
    good = [HELLO.version, list(HELLO.capabilities), HELLO.run_id, 1.0, 2.0, 3.0]
    for bad in (
        good[:5],  # a field short
        [1, *good[1:]],  # a version that is no string
        [good[0], "probe-v1", *good[2:]],  # capabilities that are no list
        [good[0], [7], *good[2:]],  # a capability that is no string
        [*good[:3], -1.0, 2.0, 3.0],  # a negative rate
        [*good[:3], math.nan, 2.0, 3.0],
        [*good[:3], math.inf, 2.0, 3.0],
        [*good[:3], True, 2.0, 3.0],  # a boolean is not a number here
        [good[0], ["x" * 65], *good[2:]],  # a capability name too long
        [good[0], ["c"] * 65, *good[2:]],  # too many capabilities
    ):
        assert parse_hello(HELLO_TAG + msgpack.packb(bad, use_bin_type=True)) is None, bad
    assert parse_hello(HELLO_TAG + b"\xc1") is None
    assert parse_hello(HELLO_TAG) is None
    assert parse_hello(HELLO_TAG + msgpack.packb({"a": 1})) is None
    welcome = ["0.1.0", [], True, True, 1.0, 2.0, 3.0, ""]
    for bad in (welcome[:7], [*welcome[:2], 1, *welcome[3:]], [*welcome[:7], 5], [*welcome[:7], "x" * 513]):
        assert parse_welcome(WELCOME_TAG + msgpack.packb(bad, use_bin_type=True)) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    for tag in (b"", HELLO_TAG, WELCOME_TAG):
        parse_hello(tag + data)
        parse_welcome(tag + data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=80),
                          st.binary(max_size=8), st.lists(st.text(max_size=8), max_size=3)), max_size=10))  # fmt: skip
def test_any_msgpack_array_never_raises(fields: list[object]) -> None:
    packed = msgpack.packb(fields, use_bin_type=True)
    parse_hello(HELLO_TAG + packed)
    parse_welcome(WELCOME_TAG + packed)
