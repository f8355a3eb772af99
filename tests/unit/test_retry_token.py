"""Retry tokens prove an address for a short while, for one connection, and nothing else."""

from __future__ import annotations

import pytest

from tomproto.core.tokens import RetryToken, TokenError, check_token, mint_token

SECRET = b"s" * 32
ADDRESS = ("198.51.100.7", 40000)
ODCID = bytes.fromhex("0011223344556677")
SCID = bytes.fromhex("8899aabbccddeeff")
LIFETIME_S = 10.0
NOW = 1_000_000.25


def minted(now: float = NOW) -> bytes:
    return mint_token(SECRET, ADDRESS, ODCID, SCID, now)


def test_a_fresh_token_from_the_same_address_gives_back_both_connection_ids() -> None:
    checked = check_token(SECRET, minted(), ADDRESS, SCID, NOW + 0.5, LIFETIME_S)
    assert checked == RetryToken(ODCID, SCID, int(NOW))


@pytest.mark.parametrize("fraction_s", [0.0, 0.25, 0.999])
def test_a_token_is_good_for_at_least_its_lifetime_less_a_second_and_never_longer(fraction_s: float) -> None:
    minted_at = 1_000_000 + fraction_s  # whatever the fraction of a second it was minted at
    token = minted(minted_at)
    still_good = check_token(SECRET, token, ADDRESS, SCID, minted_at + LIFETIME_S - 1, LIFETIME_S)
    assert isinstance(still_good, RetryToken)
    too_old = check_token(SECRET, token, ADDRESS, SCID, minted_at + LIFETIME_S + 0.001, LIFETIME_S)
    assert too_old is TokenError.expired


def test_a_token_from_the_future_is_refused() -> None:
    # A secret reused across a clock step must not make tokens live longer.
    assert check_token(SECRET, minted(NOW + 60), ADDRESS, SCID, NOW, LIFETIME_S) is TokenError.expired


def test_another_host_or_another_port_cannot_use_the_token() -> None:
    assert check_token(SECRET, minted(), ("198.51.100.8", 40000), SCID, NOW, LIFETIME_S) is TokenError.forged
    assert check_token(SECRET, minted(), ("198.51.100.7", 40001), SCID, NOW, LIFETIME_S) is TokenError.forged


def test_every_tampered_byte_is_caught() -> None:
    token = minted()
    for index in range(len(token)):
        tampered = token[:index] + bytes([token[index] ^ 0x01]) + token[index + 1 :]
        assert not isinstance(check_token(SECRET, tampered, ADDRESS, SCID, NOW, LIFETIME_S), RetryToken), index


def test_a_token_made_with_another_secret_is_forged() -> None:
    other = mint_token(b"t" * 32, ADDRESS, ODCID, SCID, NOW)
    assert check_token(SECRET, other, ADDRESS, SCID, NOW, LIFETIME_S) is TokenError.forged


def test_garbage_tokens_are_malformed_not_exceptions() -> None:
    for garbage in (b"", b"\x01", b"\x02" + minted()[1:], minted() + b"x", bytes(200), b"\x01" + b"\xff" * 40):
        assert check_token(SECRET, garbage, ADDRESS, SCID, NOW, LIFETIME_S) in (TokenError.malformed, TokenError.forged)


def test_the_token_is_only_good_on_the_initial_sent_to_the_retry_source_id() -> None:
    checked = check_token(SECRET, minted(), ADDRESS, ODCID, NOW, LIFETIME_S)
    assert checked is TokenError.wrong_connection_id


def test_a_replay_within_the_lifetime_from_the_same_address_is_accepted() -> None:
    # The token proves an address, nothing more (RFC 9000 §8.1.4): replaying it proves it again.
    token = minted()
    first = check_token(SECRET, token, ADDRESS, SCID, NOW + 1, LIFETIME_S)
    again = check_token(SECRET, token, ADDRESS, SCID, NOW + 2, LIFETIME_S)
    assert first == again == RetryToken(ODCID, SCID, int(NOW))
