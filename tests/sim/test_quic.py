"""aioquic runs on the simulated network: seeded, two runs of a QUIC connection are the same
bytes at the same virtual times, another seed gives other bytes, and QUIC's retransmission
carries the handshake and a stream across 5 % loss each way, in virtual time."""

from __future__ import annotations

import random
from typing import Any

import aioquic.quic.connection
import aioquic.quic.packet
import aioquic.tls
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sim.links import Impairment
from tests.sim.quic_hosts import dial_and_send
from tests.sim.randomness import seeded_aioquic

PAYLOAD = bytes(range(256)) * 200  # 51 200 bytes: a few dozen packets


def test_the_same_seed_gives_byte_identical_packets_and_another_seed_other_bytes() -> None:
    impairment = Impairment(delay_s=0.020, jitter_s=0.005)
    first, _, server, _ = dial_and_send(1, impairment, PAYLOAD)
    again, _, _, _ = dial_and_send(1, impairment, PAYLOAD)
    other, _, _, _ = dial_and_send(2, impairment, PAYLOAD)
    assert bytes(server.received[0]) == PAYLOAD
    assert len(first) > 20
    assert first == again
    assert [data for *_, data in first] != [data for *_, data in other]
    assert first[0][3] != other[0][3]  # the very first Initial: new connection ids and key share


@pytest.mark.parametrize("seed", range(5))
def test_quic_completes_its_handshake_and_delivers_a_stream_across_5_percent_loss_each_way(seed: int) -> None:
    _, client, server, network = dial_and_send(seed, Impairment(delay_s=0.020, jitter_s=0.005, loss=0.05), PAYLOAD)
    assert bytes(server.received[0]) == PAYLOAD
    assert client.handshake_completed_s is not None and client.handshake_completed_s < 5.0
    assert network.counters.lost > 0
    # QUIC's loss detection saw packets go missing, and what it sent again got the stream through.
    assert client.counters.packets_lost + server.counters.packets_lost > 0


def looked_up() -> dict[str, Any]:
    """What aioquic finds when it looks up its randomness at call time."""
    return {
        "connection.os": vars(aioquic.quic.connection)["os"],
        "packet.os": vars(aioquic.quic.packet)["os"],
        "tls.os": vars(aioquic.tls)["os"],
        "tls.x25519": vars(aioquic.tls)["x25519"],
        "tls.x448": vars(aioquic.tls)["x448"],
        "tls.ec": vars(aioquic.tls)["ec"],
    }


def draws(seed: int) -> list[bytes]:
    """Every kind of draw aioquic makes, as aioquic would make it, under seeded_aioquic."""
    with seeded_aioquic(random.Random(seed).randbytes):
        names = looked_up()
        return [
            names["tls.x25519"].X25519PrivateKey.generate().private_bytes_raw(),
            names["tls.x448"].X448PrivateKey.generate().private_bytes_raw(),
            names["tls.ec"].generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big"),
            names["tls.ec"].generate_private_key(ec.SECP384R1()).private_numbers().private_value.to_bytes(48, "big"),
            names["connection.os"].urandom(8),
            names["packet.os"].urandom(1),
            names["tls.os"].urandom(32),
        ]


def test_seeded_aioquic_draws_every_key_share_and_random_from_the_given_bytes() -> None:
    assert draws(5) == draws(5)
    assert all(first != other for first, other in zip(draws(5), draws(6), strict=True))


def test_seeded_aioquic_puts_aioquic_back_as_it_was_even_when_the_body_fails() -> None:
    before = looked_up()
    with seeded_aioquic(bytes):
        assert all(looked_up()[name] is not module for name, module in before.items())
    assert looked_up() == before
    with pytest.raises(RuntimeError), seeded_aioquic(bytes):
        raise RuntimeError("the body failed")
    assert looked_up() == before
