"""Group messages: sender-key encryption and the sender's signature."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.strategies import ALICE, BOB
from tomproto.crypto.group_keys import open_group_message, seal_group_message, verify_group_message
from tomproto.errors import CryptoError
from tomproto.wire.group import GroupMessage

SENDER_KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(200, 232))


def message(sender_key: bytes | None = SENDER_KEY) -> GroupMessage:
    return seal_group_message(
        ALICE,
        group_id="grp-00000000-0000-4000-8000-000000000001",
        message_id="00000000-0000-4000-8000-000000000002",
        username="alice",
        text="hello group",
        sent_at_ms=1_764_000_000_000,
        sender_key=sender_key,
        key_epoch=3,
    )


def test_encrypted_group_message_hides_and_returns_the_text() -> None:
    sealed = message()
    assert sealed.encrypted and sealed.text == "" and sealed.sender_username == ""
    assert b"hello group" not in sealed.ciphertext
    content = open_group_message(sealed, SENDER_KEY)
    assert (content.username, content.text) == ("alice", "hello group")


def test_plaintext_group_message_is_still_signed() -> None:
    sealed = message(sender_key=None)
    assert not sealed.encrypted and sealed.text == "hello group"
    assert open_group_message(sealed, None).text == "hello group"


def test_wrong_sender_key_is_refused() -> None:
    with pytest.raises(CryptoError):
        open_group_message(message(), OTHER_KEY)


@pytest.mark.parametrize(
    "change",
    [
        {"group_id": "grp-other"},
        {"message_id": "00000000-0000-4000-8000-000000000009"},
        {"sender_id": BOB.node_id.hex},
        {"key_epoch": 4},
        {"sent_at": 1_764_000_000_001},
        {"nonce": bytes(24)},
        {"sender_signature": b""},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_change_to_a_signed_field_breaks_the_signature(change: dict[str, Any]) -> None:
    with pytest.raises(CryptoError):
        verify_group_message(replace(message(), **change))


def test_plaintext_text_is_covered_by_the_signature() -> None:
    with pytest.raises(CryptoError):
        verify_group_message(replace(message(sender_key=None), text="hello grouP"))


def test_hub_fields_outside_the_signature_may_change() -> None:
    # The hub assigns seq after the sender signed: it must not break the signature.
    verify_group_message(replace(message(), seq=42))
