"""NodeIds parse as the spec says; identity files are exact, private and never clobbered."""

from __future__ import annotations

import stat
from pathlib import Path

import nacl.bindings as sodium
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tomproto.errors import IdentityError
from tomproto.identity import (
    Identity,
    NodeId,
    create_identity_file,
    load_identity,
    load_or_create_identity,
    verify_signature,
)

SEED = bytes(range(32))
KNOWN = Identity.from_seed(SEED)


def test_hex_and_base32_name_the_same_node() -> None:
    node = KNOWN.node_id
    assert len(node.hex) == 64 and node.hex == node.hex.lower()
    assert len(node.base32) == 52
    assert NodeId.parse(node.hex) == node
    assert NodeId.parse(node.base32) == node
    assert NodeId.parse(node.base32.upper()) == node
    assert str(node) == node.hex


def test_uppercase_hex_is_refused_with_a_reason() -> None:
    with pytest.raises(IdentityError, match="lowercase"):
        NodeId.parse(KNOWN.node_id.hex.upper())


@pytest.mark.parametrize("text", ["", "abc", "0" * 63, "0" * 65, "g" * 64, "1" * 52, "a" * 53])
def test_malformed_node_ids_are_refused(text: str) -> None:
    with pytest.raises(IdentityError):
        NodeId.parse(text)


@pytest.mark.parametrize(
    "raw_hex",
    [
        "aa" * 32,  # not a point on the curve
        "01" + "00" * 31,  # the neutral element: small order
        "00" * 32,  # a point of small order
    ],
)
def test_bytes_that_are_not_a_usable_ed25519_key_are_refused(raw_hex: str) -> None:
    with pytest.raises(IdentityError, match="Ed25519"):
        NodeId.parse(raw_hex)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=6))
def test_node_ids_order_by_bytes_which_is_hex_order(seeds: list[bytes]) -> None:
    nodes = [Identity.from_seed(seed).node_id for seed in seeds]
    assert [node.hex for node in sorted(nodes)] == sorted(node.hex for node in nodes)


def test_signature_verifies_with_the_node_id() -> None:
    signature = KNOWN.sign(b"hello")
    assert len(signature) == 64
    assert sodium.crypto_sign_open(signature + b"hello", KNOWN.node_id.raw) == b"hello"
    assert verify_signature(signature, b"hello", KNOWN.node_id.raw)


def test_only_the_keys_own_signature_of_those_very_bytes_verifies_and_garbage_never_raises() -> None:
    signature = KNOWN.sign(b"hello")
    other = Identity.from_seed(b"o" * 32)
    assert not verify_signature(signature, b"hellO", KNOWN.node_id.raw)
    assert not verify_signature(signature, b"hello", other.node_id.raw)
    assert not verify_signature(other.sign(b"hello"), b"hello", KNOWN.node_id.raw)
    # A 63-byte signature must not borrow the message's first byte to make up 64.
    short = KNOWN.sign(b"ello")
    assert not verify_signature(short[:63], short[63:] + b"ello", KNOWN.node_id.raw)
    for key in (b"", b"k" * 31, b"\xff" * 32, b"k" * 33):
        assert not verify_signature(signature, b"hello", key)


def test_identity_file_is_created_private_with_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "identity"
    created = create_identity_file(path)
    assert path.read_bytes() == created.seed
    assert len(created.seed) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path).node_id == created.node_id


def test_existing_identity_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    first = create_identity_file(path)
    with pytest.raises(IdentityError, match="already exists"):
        create_identity_file(path)
    assert load_identity(path).node_id == first.node_id
    second = create_identity_file(path, overwrite=True)
    assert second.node_id != first.node_id
    assert load_identity(path).node_id == second.node_id
    assert [entry.name for entry in tmp_path.iterdir()] == ["identity"]  # no temporary left over


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_identity_file_of_any_other_length_is_a_clear_error(tmp_path: Path, length: int) -> None:
    path = tmp_path / "identity"
    path.write_bytes(b"\x01" * length)
    with pytest.raises(IdentityError, match=f"holds {length} bytes.*exactly 32"):
        load_identity(path)


def test_missing_identity_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="does not exist"):
        load_identity(tmp_path / "nope")


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    created = load_or_create_identity(path)
    assert load_or_create_identity(path).node_id == created.node_id
    assert load_or_create_identity(None).node_id != load_or_create_identity(None).node_id
