"""tom-relay's tables stay bounded by what is registered now, and it names IPv6 addresses the way
people write them. The server is driven packet by packet, with the time given, through a socket
that only records what it would send."""

from __future__ import annotations

import asyncio

import pytest

from tomproto.identity import Identity
from tomproto.relay import protocol as wire
from tomproto.relay.server import RelayServer, RelaySettings
from tomproto.transport.errors import TransportError
from tomproto.transport.interfaces import RelayClient

NOW = 9_000.0
EXPIRY_S = 60


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))


def relay(**settings: object) -> tuple[RelayServer, RecordingSocket]:
    server = RelayServer(Identity.generate(), RelaySettings(expiry_s=EXPIRY_S, **settings))  # type: ignore[arg-type]
    return server, RecordingSocket()


Address = tuple[str, int]


def register(server: RelayServer, sock: RecordingSocket, identity: Identity, address: Address, now: float) -> None:
    server.handle(sock, wire.hello(identity.node_id.raw), address, now)  # type: ignore[arg-type]
    challenge = sock.sent[-1][0]
    assert challenge[0] == wire.CHALLENGE
    registration = wire.register(identity, challenge[1:33], challenge[33:], [])
    server.handle(sock, registration, address, now)  # type: ignore[arg-type]
    assert sock.sent[-1][0][0] == wire.REGISTERED


def forward(server: RelayServer, sock: RecordingSocket, address: Address, to: Identity, now: float) -> None:
    server.handle(sock, wire.forward(to.node_id.raw, b"\x40" * 100), address, now)  # type: ignore[arg-type]


def keep_alive(server: RelayServer, sock: RecordingSocket, identity: Identity, address: Address, now: float) -> None:
    server.handle(sock, wire.keepalive(identity.node_id.raw), address, now)  # type: ignore[arg-type]


def pairs(server: RelayServer) -> dict[tuple[str, str], int]:
    return {(pair["from"], pair["to"]): pair["bytes"] for pair in server.stats()["pairs"]}


def test_fresh_node_ids_cannot_grow_the_pair_counters_beyond_the_live_registrations() -> None:
    server, sock = relay()
    bob, bob_address = Identity.generate(), ("192.0.2.1", 7000)
    now = NOW
    register(server, sock, bob, bob_address, now)
    for wave in range(4):  # every wave: fresh NodeIds that send to Bob once, then vanish
        for index in range(25):
            address = (f"10.{wave}.{index}.1", 5000)
            register(server, sock, Identity.generate(), address, now)
            forward(server, sock, address, bob, now)
        assert len(pairs(server)) == 25
        now += EXPIRY_S / 2
        keep_alive(server, sock, bob, bob_address, now)
        now += EXPIRY_S / 2 + 1
        keep_alive(server, sock, bob, bob_address, now)
        server.sweep(now)
        stats = server.stats()
        assert list(stats["nodes"]) == [bob.node_id.hex] and stats["pairs"] == []
    assert server.events["expired"] == 100


def test_a_pair_is_forgotten_when_its_destination_expires_and_the_senders_own_counters_are_kept() -> None:
    server, sock = relay()
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    addresses = {alice: ("192.0.2.1", 1), bob: ("192.0.2.2", 2), carol: ("192.0.2.3", 3)}
    for identity, address in addresses.items():
        register(server, sock, identity, address, NOW)
    forward(server, sock, addresses[alice], bob, NOW)
    forward(server, sock, addresses[alice], carol, NOW)
    forward(server, sock, addresses[alice], carol, NOW)
    assert pairs(server) == {(alice.node_id.hex, bob.node_id.hex): 100, (alice.node_id.hex, carol.node_id.hex): 200}
    # Bob goes quiet and expires; Alice and Carol stay.
    later = NOW + EXPIRY_S + 1
    for identity in (alice, carol):
        keep_alive(server, sock, identity, addresses[identity], NOW + EXPIRY_S / 2)
    server.sweep(later)
    assert pairs(server) == {(alice.node_id.hex, carol.node_id.hex): 200}
    # Bob comes back: his pair starts again from what goes through now.
    register(server, sock, bob, addresses[bob], later)
    forward(server, sock, addresses[alice], bob, later)
    assert pairs(server)[alice.node_id.hex, bob.node_id.hex] == 100
    # A node's own counters last as long as its registration: all Alice sent.
    assert server.stats()["nodes"][alice.node_id.hex]["bytes_in"] == 400


def test_pairs_beyond_the_cap_are_summed_not_listed() -> None:
    server, sock = relay(max_pairs=2)
    alice, alice_address = Identity.generate(), ("192.0.2.1", 1)
    register(server, sock, alice, alice_address, NOW)
    others = [Identity.generate() for _ in range(4)]
    for index, other in enumerate(others):
        register(server, sock, other, (f"192.0.2.{10 + index}", 1), NOW)
        forward(server, sock, alice_address, other, NOW)
    stats = server.stats()
    assert len(stats["pairs"]) == 2 and stats["untracked_pair_bytes"] == 200
    assert sum(pairs(server).values()) + stats["untracked_pair_bytes"] == stats["nodes"][alice.node_id.hex]["bytes_in"]


def test_the_stats_name_an_ipv6_node_in_brackets() -> None:
    server, sock = relay()
    node = Identity.generate()
    register(server, sock, node, ("2001:db8::7", 40000), NOW)
    assert server.stats()["nodes"][node.node_id.hex]["address"] == "[2001:db8::7]:40000"


class _Endpoint:
    def __init__(self) -> None:
        self.identity = Identity.generate()


def test_a_relay_refusal_names_an_ipv6_relay_in_brackets() -> None:
    async def scenario() -> None:
        client: RelayClient

        def send(data: bytes, address: tuple[str, int]) -> None:  # the relay answers at once
            client.handle(wire.refused(wire.Refusal.full, "relay full"))

        client = RelayClient(_Endpoint(), ("2001:db8::1", 7478), send)  # type: ignore[arg-type]
        with pytest.raises(TransportError, match=r"relay \[2001:db8::1\]:7478 refused us: relay full"):
            await client.register(timeout_s=5.0)

    asyncio.run(scenario())
