"""tom-relay over loopback: nobody registers someone else's NodeId, replays are refused, the real
owner's traffic goes on, and the relay counts what it forwards."""

from __future__ import annotations

import asyncio
import socket

from tests.integration.test_transport import Inbox, endpoint, run
from tomproto.core.relay_registration import RegistrationState, RelayRegistration
from tomproto.identity import Identity
from tomproto.relay import protocol as wire
from tomproto.relay.server import RelayServer
from tomstress.natreport import probe_mappings

BOUND_S = 5.0


class RawClient:
    """A bare UDP socket speaking the relay protocol by hand (the attacker's tool)."""

    def __init__(self, relay: tuple[str, int]) -> None:
        self.relay = relay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def ask(self, packet: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        self.sock.sendto(packet, self.relay)
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65536), BOUND_S)

    async def register(self, identity: Identity) -> bytes:
        """Register `identity` from this socket, as a node does (RelayRegistration, one answer
        awaited per packet); the REGISTER that was accepted, to replay."""
        node = RelayRegistration(identity, self.relay, [("192.0.2.2", 7400)])
        node.start(0.0)
        accepted = b""
        while node.state is RegistrationState.registering:
            datagrams = node.datagrams_to_send()
            assert datagrams, f"still registering, nothing to send (refused: {node.refusal})"
            for datagram in datagrams:
                node.receive(await self.ask(datagram), 0.0)
                accepted = datagram if datagram[0] == wire.REGISTER else accepted
        assert node.state is RegistrationState.registered, node.refusal
        return accepted

    def close(self) -> None:
        self.sock.close()


def test_registering_someone_elses_node_id_is_refused_and_the_owner_is_unaffected() -> None:
    async def scenario() -> None:
        relay = RelayServer(Identity.generate())
        await relay.start([("127.0.0.1", 0)])
        alice, bob, mallory = Identity.generate(), Identity.generate(), Identity.generate()
        relay_address = relay.addresses[0]
        inbox = Inbox()
        try:
            async with endpoint(alice, relay=relay_address, echo=True) as alice_end, endpoint(
                bob, relay=relay_address, inbox=inbox
            ) as bob_end:
                attacker = RawClient(relay_address)
                challenge = await attacker.ask(wire.hello(alice.node_id.raw))
                assert challenge[0] == wire.CHALLENGE
                relay_id, nonce = challenge[1:33], challenge[33:]
                # Mallory signs a registration for Alice's NodeId with her own key.
                forged = wire.register(mallory, relay_id, nonce, [])
                forged = forged[:1] + alice.node_id.raw + forged[33:]
                answer = await attacker.ask(forged)
                assert answer[:2] == bytes([wire.REFUSED, wire.Refusal.bad_signature])
                assert relay.events["refused_bad_signature"] == 1
                # Alice is still registered at her own address and reachable through the relay.
                assert relay.stats()["nodes"][alice.node_id.hex]["address"] == (
                    f"127.0.0.1:{alice_end.local_address[1]}"
                )
                await bob_end.send_frame(alice.node_id, b"still alice?", None)
                assert await inbox.next() == (alice.node_id, b"echo:still alice?")
                attacker.close()
        finally:
            relay.close()

    run(scenario())


def test_a_replayed_registration_is_refused() -> None:
    async def scenario() -> None:
        relay = RelayServer(Identity.generate())
        await relay.start([("127.0.0.1", 0)])
        carol = Identity.generate()
        try:
            client = RawClient(relay.addresses[0])
            registration = await client.register(carol)
            # The same bytes again, from the same address and from another: the challenge is spent.
            assert (await client.ask(registration))[:2] == bytes([wire.REFUSED, wire.Refusal.unknown_challenge])
            other = RawClient(relay.addresses[0])
            assert (await other.ask(registration))[:2] == bytes([wire.REFUSED, wire.Refusal.unknown_challenge])
            # An unregistered address cannot relay.
            answer = await other.ask(wire.forward(carol.node_id.raw, b"\x40" * 40))
            assert answer[:2] == bytes([wire.REFUSED, wire.Refusal.not_registered])
            client.close()
            other.close()
        finally:
            relay.close()

    run(scenario())


def test_the_relay_counts_what_it_forwards_per_node_and_per_pair() -> None:
    async def scenario() -> None:
        relay = RelayServer(Identity.generate())
        await relay.start([("127.0.0.1", 0)])
        dialer, listener = Identity.generate(), Identity.generate()
        inbox = Inbox()
        try:
            async with endpoint(listener, relay=relay.addresses[0], echo=True) as _, endpoint(
                dialer, relay=relay.addresses[0], inbox=inbox
            ) as dialer_end:
                await dialer_end.send_frame(listener.node_id, b"hello", None)
                await inbox.next()
            stats = relay.stats()
            forwarded = stats["nodes"][dialer.node_id.hex]
            assert forwarded["packets_in"] > 0 and forwarded["bytes_in"] > 0
            pairs = {(pair["from"], pair["to"]): pair["bytes"] for pair in stats["pairs"]}
            assert pairs[dialer.node_id.hex, listener.node_id.hex] == forwarded["bytes_in"]
        finally:
            relay.close()

    run(scenario())


def test_nat_report_registers_on_every_relay_address_and_gets_its_own_mapping_back() -> None:
    async def scenario() -> None:
        relay = RelayServer(Identity.generate())
        await relay.start([("127.0.0.1", 0), ("127.0.0.1", 0)])
        try:
            local, mappings = await probe_mappings(relay.addresses, timeout_s=1.0)
            # No NAT on loopback: both relay sockets see our socket's own address.
            assert mappings == [("127.0.0.1", local[1]), ("127.0.0.1", local[1])]
            assert relay.events["registered"] == 2
        finally:
            relay.close()

    run(scenario())
