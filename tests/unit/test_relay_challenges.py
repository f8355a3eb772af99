"""tom-relay's registration challenges: no state per HELLO, single use once verified, a
per-source budget of signature checks."""

from __future__ import annotations

import pytest

from tomproto.core.relay_challenges import ChallengeRefusal, Challenges, ChallengeSettings
from tomproto.relay import protocol as wire

SECRET = b"r" * 32
SOCKET = b"socket-1"
ADDRESS = ("192.0.2.10", 40000)
NODE = b"n" * 32
NOW = 7_000.0


def challenges(**settings: object) -> Challenges:
    return Challenges(ChallengeSettings(**settings), SECRET)  # type: ignore[arg-type]


def test_issuing_a_challenge_stores_nothing_and_a_padded_hello_is_as_large_as_its_answer() -> None:
    table = challenges()
    for index in range(10_000):
        table.issue(SOCKET, ("192.0.2.10", index), NODE, NOW)
    assert table.spent_count == 0
    assert len(wire.hello(NODE)) == wire.HELLO_BYTES >= len(wire.challenge(b"r" * 32, b"c" * 32))


def test_a_challenge_is_good_for_its_socket_address_and_node_id_only() -> None:
    table = challenges()
    nonce = table.issue(SOCKET, ADDRESS, NODE, NOW)
    assert table.check(SOCKET, ADDRESS, NODE, nonce, NOW + 1) is None
    assert table.check(b"socket-2", ADDRESS, NODE, nonce, NOW) is ChallengeRefusal.unknown
    assert table.check(SOCKET, ("192.0.2.11", 40000), NODE, nonce, NOW) is ChallengeRefusal.unknown
    assert table.check(SOCKET, ("192.0.2.10", 40001), NODE, nonce, NOW) is ChallengeRefusal.unknown
    assert table.check(SOCKET, ADDRESS, b"m" * 32, nonce, NOW) is ChallengeRefusal.unknown
    forged = nonce[:-1] + bytes([nonce[-1] ^ 1])
    assert table.check(SOCKET, ADDRESS, NODE, forged, NOW) is ChallengeRefusal.unknown
    assert table.check(SOCKET, ADDRESS, NODE, b"short", NOW) is ChallengeRefusal.unknown


@pytest.mark.parametrize("fraction_s", [0.0, 0.25, 0.999])
def test_a_challenge_is_good_for_at_least_its_ttl_less_a_second_and_never_longer(fraction_s: float) -> None:
    table = challenges(ttl_s=10.0, verification_burst=100.0)
    issued_at = NOW + fraction_s  # whatever the fraction of a second it was issued at
    nonce = table.issue(SOCKET, ADDRESS, NODE, issued_at)
    assert table.check(SOCKET, ADDRESS, NODE, nonce, issued_at + 9.0) is None
    assert table.check(SOCKET, ADDRESS, NODE, nonce, issued_at + 10.001) is ChallengeRefusal.expired


def test_a_spent_challenge_is_refused_until_it_would_have_expired_anyway() -> None:
    table = challenges(ttl_s=10.0)
    nonce = table.issue(SOCKET, ADDRESS, NODE, NOW)
    assert table.check(SOCKET, ADDRESS, NODE, nonce, NOW) is None
    assert table.spend(nonce, NOW) is None
    assert table.check(SOCKET, ADDRESS, NODE, nonce, NOW + 1) is ChallengeRefusal.spent
    table.sweep(NOW + 12)
    assert table.spent_count == 0  # forgotten once expired: the MAC's time refuses it now


def test_signature_checks_are_budgeted_per_source_ip() -> None:
    table = challenges(verifications_per_s=10.0, verification_burst=20.0)
    outcomes = []
    for port in range(100):  # one host, many ports: one budget
        address = ("192.0.2.10", 1000 + port)
        outcomes.append(table.check(SOCKET, address, NODE, table.issue(SOCKET, address, NODE, NOW), NOW))
    assert outcomes.count(None) == 20
    assert outcomes.count(ChallengeRefusal.budget) == 80
    other = ("198.51.100.3", 5)
    assert table.check(SOCKET, other, NODE, table.issue(SOCKET, other, NODE, NOW), NOW) is None
    later = table.issue(SOCKET, ADDRESS, NODE, NOW + 1)
    assert table.check(SOCKET, ADDRESS, NODE, later, NOW + 1) is None  # refilled: 10 a second


def test_the_spent_table_is_bounded_and_refuses_when_full() -> None:
    table = challenges(max_spent=5, verification_burst=100.0)
    results = []
    for port in range(7):
        address = ("192.0.2.10", port)
        nonce = table.issue(SOCKET, address, NODE, NOW)
        assert table.check(SOCKET, address, NODE, nonce, NOW) is None
        results.append(table.spend(nonce, NOW))
    assert results == [None] * 5 + [ChallengeRefusal.full] * 2
    assert table.spent_count == 5
