"""The admission policy: who opens a connection at once, who gets a Retry, who is dropped."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from tomproto.core.admission import Action, AdmissionPolicy, AdmissionSettings, Verdict
from tomproto.core.quic import TransportSettings

SECRET = b"k" * 32
NOW = 5_000.0


def counting_random() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def policy(**settings: object) -> AdmissionPolicy:
    return AdmissionPolicy(AdmissionSettings(**settings), SECRET, counting_random(), NOW)  # type: ignore[arg-type]


def dcids() -> Callable[[], bytes]:
    counter = itertools.count(1 << 40)
    return lambda: next(counter).to_bytes(8, "big")


def from_host(host: str, port: int = 50000) -> tuple[str, int]:
    return (host, port)


def follow_retry(admission: AdmissionPolicy, retry: Verdict, address: tuple[str, int], now: float) -> Verdict:
    """What an honest client does with a Retry: the same Initial again, to the Retry's source ID,
    with the token."""
    assert retry.action is Action.retry and retry.token is not None and retry.retry_source_id is not None
    return admission.initial(now, retry.retry_source_id, retry.token, address)


def test_a_quiet_endpoint_accepts_an_initial_without_a_retry() -> None:
    admission, new_dcid = policy(), dcids()
    dcid = new_dcid()
    verdict = admission.initial(NOW, dcid, b"", from_host("192.0.2.1"))
    assert verdict.action is Action.accept
    assert verdict.original_destination_id == dcid and verdict.retry_source_id is None
    assert admission.half_open == admission.unvalidated_half_open == 1


def test_always_sends_a_retry_and_the_client_that_follows_it_is_accepted_validated() -> None:
    admission, new_dcid = policy(address_validation="always"), dcids()
    dcid, address = new_dcid(), from_host("192.0.2.1")
    retry = admission.initial(NOW, dcid, b"", address)
    assert retry.action is Action.retry and retry.reason == "retry_always"
    assert admission.half_open == 0  # a Retry leaves no state behind
    accepted = follow_retry(admission, retry, address, NOW + 0.05)
    assert accepted.action is Action.accept and accepted.reason == "accepted_validated"
    # What the server must put in its transport parameters (RFC 9000 §7.3).
    assert accepted.original_destination_id == dcid
    assert accepted.retry_source_id == retry.retry_source_id
    assert admission.unvalidated_half_open == 0 and admission.half_open == 1


def test_one_source_ip_holds_a_few_unvalidated_handshakes_whatever_its_ports() -> None:
    admission, new_dcid = policy(max_unvalidated_per_source=3, retry_threshold=100), dcids()
    verdicts = [admission.initial(NOW, new_dcid(), b"", from_host("203.0.113.9", port)) for port in range(1000, 1010)]
    assert [v.action for v in verdicts] == [Action.accept] * 3 + [Action.retry] * 7
    assert {v.reason for v in verdicts[3:]} == {"retry_source_cap"}
    # Another host is not affected.
    assert admission.initial(NOW, new_dcid(), b"", from_host("198.51.100.1")).action is Action.accept


def honest_dial(admission: AdmissionPolicy, dcid: bytes, address: tuple[str, int], now: float) -> Verdict:
    """A token-less Initial, and the same again with the token if a Retry comes back."""
    verdict = admission.initial(now, dcid, b"", address)
    if verdict.action is Action.retry:
        verdict = follow_retry(admission, verdict, address, now + 0.01)
    return verdict


@pytest.mark.parametrize(
    "settings",
    [AdmissionSettings(), AdmissionSettings(address_validation="always"), TransportSettings.low_memory().admission],
    ids=["default", "always", "low-memory"],
)
def test_one_host_that_follows_every_retry_holds_its_share_and_another_still_gets_in(
    settings: AdmissionSettings,
) -> None:
    admission, new_dcid = AdmissionPolicy(settings, SECRET, counting_random(), NOW), dcids()
    flooder = "203.0.113.9"
    # A real host dials 50 times a second (its whole Retry budget) for 10 s, follows every
    # Retry, and completes no handshake; the endpoint closes what times out.
    most_held = 0
    for index in range(500):
        now = NOW + index / 50
        admission.expired(now)
        honest_dial(admission, new_dcid(), from_host(flooder, 1024 + index), now)
        most_held = max(most_held, admission.held_by(flooder))
    share = settings.max_validated_per_source + (
        0 if settings.address_validation == "always" else settings.max_unvalidated_per_source
    )
    assert most_held == share < settings.max_half_open
    assert admission.refused_per_source[flooder] > 0
    # Someone else dials in the middle of it, and gets in.
    verdict = honest_dial(admission, new_dcid(), from_host("198.51.100.1"), NOW + 10)
    assert verdict.action is Action.accept, verdict.reason
    # Users behind one CGNAT address still get in together, as many at once as the validated cap.
    cgnat = [
        honest_dial(admission, new_dcid(), from_host("192.0.2.77", port), NOW + 10)
        for port in range(settings.max_validated_per_source)
    ]
    assert all(v.action is Action.accept for v in cgnat)


def test_fresh_node_ids_through_a_relay_cannot_fill_the_table_and_a_direct_user_still_gets_in() -> None:
    admission, new_dcid = policy(), dcids()
    settings = admission.settings
    # NodeIds cost nothing: 300 fresh ones, each up to its own per-NodeId cap.
    for index in range(300):
        node_id = index.to_bytes(32, "big")
        for _ in range(settings.max_unvalidated_per_source):
            admission.initial(NOW, new_dcid(), b"", None, relayed_from=node_id)
    assert admission.relayed_half_open == admission.half_open == settings.max_relayed_half_open
    assert admission.decisions["relayed_full"] == 300 * settings.max_unvalidated_per_source - admission.half_open
    assert len(admission.refused_per_source) <= 257
    direct = honest_dial(admission, new_dcid(), from_host("198.51.100.1"), NOW)
    assert direct.action is Action.accept


def test_unvalidated_handshakes_time_out_quickly_and_validated_or_relayed_ones_get_the_dial_timeout() -> None:
    admission, new_dcid = policy(max_unvalidated_per_source=1, half_open_timeout_s=3.0), dcids()
    address = from_host("192.0.2.1")
    unvalidated = admission.initial(NOW, new_dcid(), b"", address)
    validated = honest_dial(admission, new_dcid(), address, NOW)  # its second dial: a Retry first
    relayed = admission.initial(NOW + 0.5, new_dcid(), b"", None, relayed_from=b"r" * 32)
    later = admission.initial(NOW + 1, new_dcid(), b"", from_host("198.51.100.1"))
    assert [v.reason for v in (unvalidated, validated, relayed, later)] == [
        "accepted_unvalidated", "accepted_validated", "accepted_relayed", "accepted_unvalidated"
    ]
    keys = [v.retry_source_id or v.original_destination_id for v in (unvalidated, validated, relayed, later)]
    assert admission.expired(NOW + 2.9) == [] and admission.next_deadline() == NOW + 3.0
    assert admission.expired(NOW + 3.0) == [keys[0]]
    # Opened after the validated one, due before it: timed out at its own deadline.
    assert admission.next_deadline() == NOW + 4.0
    assert admission.expired(NOW + 4.0) == [keys[3]]
    # A real client whose server flight was lost twice is still waiting at 4.99 s: so are we.
    assert admission.next_deadline() == NOW + 0.01 + 5.0  # its token came back after 10 ms
    assert admission.expired(NOW + 4.99) == []
    assert admission.expired(NOW + 6.0) == [keys[1], keys[2]]
    assert admission.timeouts == 4 and admission.half_open == 0 and admission.next_deadline() is None


def test_a_validated_handshake_is_kept_as_long_as_its_dialer_waits_and_no_longer() -> None:
    for transport in (TransportSettings(), TransportSettings.low_memory()):
        admission = transport.admission
        assert admission.validated_half_open_timeout_s == transport.handshake_timeout_s
        assert admission.half_open_timeout_s < transport.handshake_timeout_s


def test_past_the_threshold_every_token_less_initial_gets_a_retry() -> None:
    admission, new_dcid = policy(retry_threshold=4, max_unvalidated_per_source=100), dcids()
    first = [admission.initial(NOW, new_dcid(), b"", from_host(f"192.0.2.{i}")) for i in range(4)]
    assert all(v.action is Action.accept for v in first)
    later = admission.initial(NOW, new_dcid(), b"", from_host("198.51.100.50"))
    assert later.action is Action.retry and later.reason == "retry_threshold"


def test_retries_are_rate_bounded_in_all_and_the_rest_dropped_and_counted() -> None:
    admission, new_dcid = policy(address_validation="always", retries_per_s=100.0), dcids()
    verdicts = [admission.initial(NOW, new_dcid(), b"", from_host(f"10.0.{i // 250}.{i % 250}")) for i in range(1000)]
    retries = sum(v.action is Action.retry for v in verdicts)
    assert retries == 10  # the burst: a tenth of a second's worth
    assert admission.decisions["retry_rate"] == 990
    assert admission.refused_per_source["10.0.0.20"] == 1
    # The budget refills with time.
    assert admission.initial(NOW + 1.0, new_dcid(), b"", from_host("192.0.2.1")).action is Action.retry


def test_one_flooding_host_cannot_spend_the_retries_of_everyone_else() -> None:
    admission, new_dcid = policy(address_validation="always", retries_per_source_per_s=50.0), dcids()
    flood = [admission.initial(NOW, new_dcid(), b"", from_host("203.0.113.66", p)) for p in range(5000)]
    assert sum(v.action is Action.retry for v in flood) == 50  # its own burst, a second's worth
    assert admission.decisions["retry_source_rate"] == 4950
    assert admission.refused_per_source["203.0.113.66"] == 4950
    honest = admission.initial(NOW, new_dcid(), b"", from_host("192.0.2.1"))
    assert honest.action is Action.retry


def test_a_forged_or_stale_token_is_dropped_with_its_reason() -> None:
    admission, new_dcid = policy(address_validation="always"), dcids()
    address = from_host("192.0.2.1")
    retry = admission.initial(NOW, new_dcid(), b"", address)
    assert retry.token is not None and retry.retry_source_id is not None
    elsewhere = admission.initial(NOW, retry.retry_source_id, retry.token, from_host("192.0.2.2"))
    late = admission.initial(NOW + 60, retry.retry_source_id, retry.token, address)
    garbage = admission.initial(NOW, new_dcid(), b"\x01garbage", address)
    assert [v.action for v in (elsewhere, late, garbage)] == [Action.drop] * 3
    assert [v.reason for v in (elsewhere, late, garbage)] == ["token_forged", "token_expired", "token_malformed"]
    assert admission.half_open == 0


def test_half_open_handshakes_time_out_and_free_their_source() -> None:
    admission, new_dcid = policy(max_unvalidated_per_source=2, half_open_timeout_s=3.0), dcids()
    keys = [new_dcid() for _ in range(2)]
    for key in keys:
        admission.initial(NOW, key, b"", from_host("192.0.2.1"))
    assert admission.initial(NOW + 1, new_dcid(), b"", from_host("192.0.2.1")).action is Action.retry
    assert admission.expired(NOW + 2.9) == []
    assert admission.next_deadline() == NOW + 3.0
    assert admission.expired(NOW + 3.0) == keys
    assert admission.timeouts == 2 and admission.half_open == 0
    assert admission.initial(NOW + 3.1, new_dcid(), b"", from_host("192.0.2.1")).action is Action.accept


def test_a_completed_handshake_frees_its_slot_and_is_never_timed_out() -> None:
    admission, new_dcid = policy(max_unvalidated_per_source=1), dcids()
    key = new_dcid()
    admission.initial(NOW, key, b"", from_host("192.0.2.1"))
    admission.completed(key)
    assert admission.half_open == 0 and admission.expired(NOW + 100) == []
    assert admission.initial(NOW, new_dcid(), b"", from_host("192.0.2.1")).action is Action.accept


def test_a_full_half_open_table_drops_even_validated_initials() -> None:
    admission, new_dcid = policy(max_half_open=2, address_validation="always"), dcids()
    addresses = [from_host("192.0.2.1", port) for port in (1, 2, 3)]
    retries = [admission.initial(NOW, new_dcid(), b"", address) for address in addresses]
    verdicts = [follow_retry(admission, retry, address, NOW) for retry, address in zip(retries, addresses, strict=True)]
    assert [v.action for v in verdicts] == [Action.accept, Action.accept, Action.drop]
    assert verdicts[2].reason == "half_open_full" and admission.half_open == 2
    # Nor is a Retry sent while it is full: the token would only meet the same full table.
    assert admission.initial(NOW, new_dcid(), b"", addresses[0]).reason == "half_open_full"


def test_relayed_initials_get_no_retry_and_are_capped_per_node_id() -> None:
    admission, new_dcid = policy(address_validation="always", max_unvalidated_per_source=2), dcids()
    alice, bob = b"a" * 32, b"b" * 32
    verdicts = [admission.initial(NOW, new_dcid(), b"", None, relayed_from=alice) for _ in range(3)]
    assert [v.action for v in verdicts] == [Action.accept, Action.accept, Action.drop]
    assert verdicts[2].reason == "relayed_source_cap"
    assert admission.initial(NOW, new_dcid(), b"", None, relayed_from=bob).action is Action.accept
    # They do not count towards the Retry threshold of direct Initials.
    assert admission.unvalidated_half_open == 0
    assert admission.initial(NOW, new_dcid(), b"x", None, relayed_from=bob).reason == "token_relayed"


def test_ipv6_sources_are_capped_per_slash_64() -> None:
    admission, new_dcid = policy(max_unvalidated_per_source=1, retry_threshold=100), dcids()
    assert admission.initial(NOW, new_dcid(), b"", ("2001:db8:1:2::1", 1)).action is Action.accept
    assert admission.initial(NOW, new_dcid(), b"", ("2001:db8:1:2::ffff", 1)).action is Action.retry
    assert admission.initial(NOW, new_dcid(), b"", ("2001:db8:1:3::1", 1)).action is Action.accept


def test_the_refusal_table_per_source_stays_bounded_under_a_spoofed_flood() -> None:
    admission, new_dcid = policy(address_validation="always", retries_per_s=1.0), dcids()
    for i in range(2000):
        admission.initial(NOW, new_dcid(), b"", (f"10.{i // 250}.{i % 250}.1", 1))
    assert len(admission.refused_per_source) <= 257
    assert sum(admission.refused_per_source.values()) == admission.decisions["retry_rate"]
