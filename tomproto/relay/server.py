"""The tom-relay server: registration, relaying, punch coordination (docs/relay-protocol.md).

Rules it enforces:
- only the holder of a NodeId's key can register it: a challenge bound to the socket, source
  address and NodeId, signed with the relay's id, so forged and replayed registrations are refused
  and leave the real owner's registration untouched;
- a HELLO leaves no state (the challenge is a MAC, core/relay_challenges.py); a verified challenge is spent
  (single use); signature verifications have a per-source budget;
- no answer is larger than the packet that asked for it (no amplification): HELLOs are padded,
  and a refusal that would be larger than its request is not sent;
- it forwards only from a registered address and names the source by the NodeId registered
  there; per-source token buckets (packets and bytes) drop excess traffic, nothing is queued;
- every table is bounded (registrations, spent challenges, budgets, pair counters) and
  registrations expire;
- it counts packets and bytes per registered node and per (source, destination) pair of
  registered nodes; a pair's counter goes when either registration expires (NodeIds cost
  nothing: counters kept for expired ones would grow with every fresh NodeId), and pairs beyond
  `max_pairs` are summed in `untracked_pair_bytes`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tomproto.addresses import format_host_port
from tomproto.core.budget import PacketByteBudget
from tomproto.identity import Identity
from tomproto.relay import protocol as wire
from tomproto.core.relay_challenges import ChallengeRefusal, Challenges, ChallengeSettings
from tomproto.relay.protocol import Address, Refusal

__all__ = ["RelaySettings", "RelayServer", "NodeCounters"]


@dataclass(frozen=True, slots=True)
class RelaySettings:
    keepalive_s: int = 15
    expiry_s: int = 60
    challenge_ttl_s: float = 10.0
    max_nodes: int = 10_000
    max_spent_challenges: int = 100_000
    verifications_per_s: float = 10.0  # REGISTER signatures checked per source IP (or IPv6 /64)
    verification_burst: float = 20.0
    packets_per_s: float = 5_000.0  # per source node
    bytes_per_s: float = 8_000_000.0
    max_pairs: int = 100_000  # (source, destination) byte counters; beyond, summed in one number


@dataclass(slots=True)
class NodeCounters:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped_rate: int = 0


@dataclass(slots=True)
class _Registration:
    node_id: bytes
    socket: _RelaySocket
    address: Address
    candidates: tuple[Address, ...]
    last_seen: float
    budget: PacketByteBudget
    counters: NodeCounters = field(default_factory=NodeCounters)
    pairs: set[tuple[bytes, bytes]] = field(default_factory=set)  # keys of pair_bytes with this node


class _RelaySocket(asyncio.DatagramProtocol):
    def __init__(self, server: RelayServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, address: Address) -> None:  # type: ignore[override]
        self.server.handle(self, data, (address[0], address[1]))

    def send(self, data: bytes, address: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, address)

    @property
    def address(self) -> Address:
        assert self.transport is not None  # noqa: S101
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


def _socket_key(relay_socket: _RelaySocket) -> bytes:
    # A challenge is good on the socket that issued it only (the relay may listen on several).
    return id(relay_socket).to_bytes(8, "big")


class RelayServer:
    def __init__(self, identity: Identity, settings: RelaySettings | None = None, *, secret: bytes | None = None) -> None:
        self.identity = identity
        self.settings = settings = settings or RelaySettings()
        self.sockets: list[_RelaySocket] = []
        self._registrations: dict[bytes, _Registration] = {}
        self._by_address: dict[tuple[int, Address], bytes] = {}
        self._challenges = Challenges(
            ChallengeSettings(
                ttl_s=settings.challenge_ttl_s,
                verifications_per_s=settings.verifications_per_s,
                verification_burst=settings.verification_burst,
                max_spent=settings.max_spent_challenges,
            ),
            secret or os.urandom(32),
        )
        self.pair_bytes: Counter[tuple[bytes, bytes]] = Counter()  # registered nodes only
        self.untracked_pair_bytes = 0  # forwarded while pair_bytes held max_pairs other pairs
        self.events: Counter[str] = Counter()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, listens: list[Address]) -> None:
        loop = asyncio.get_running_loop()
        for host, port in listens:
            _, relay_socket = await loop.create_datagram_endpoint(lambda: _RelaySocket(self), local_addr=(host, port))
            self.sockets.append(relay_socket)
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    @property
    def addresses(self) -> list[Address]:
        return [relay_socket.address for relay_socket in self.sockets]

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for relay_socket in self.sockets:
            if relay_socket.transport is not None:
                relay_socket.transport.close()

    # -- packets ------------------------------------------------------------------------------

    def handle(self, relay_socket: _RelaySocket, data: bytes, address: Address, now: float | None = None) -> None:
        if not data:
            return
        kind = data[0]
        now = time.monotonic() if now is None else now
        handler = self._HANDLERS.get(kind)
        if handler is None:
            self.events["unknown_kind"] += 1
            return
        handler(self, relay_socket, data, address, now)

    @staticmethod
    def _answer(relay_socket: _RelaySocket, request: bytes, answer: bytes, address: Address) -> None:
        """Send `answer` unless it is larger than its request: a forged source must not make us
        an amplifier (a REFUSED to a 1-byte packet is dropped instead)."""
        if len(answer) <= len(request):
            relay_socket.send(answer, address)

    def _hello(self, relay_socket: _RelaySocket, data: bytes, address: Address, now: float) -> None:
        if len(data) < wire.HELLO_BYTES:
            self.events["hello_unpadded"] += 1  # an answer would be larger than the question
            return
        node_id = data[1 : 1 + wire.ID_BYTES]
        nonce = self._challenges.issue(_socket_key(relay_socket), address, node_id, now)
        self.events["challenges"] += 1
        self._answer(relay_socket, data, wire.challenge(self.identity.node_id.raw, nonce), address)

    def _register(self, relay_socket: _RelaySocket, data: bytes, address: Address, now: float) -> None:
        request = wire.parse_register(data)
        if request is None:
            self.events["refused_malformed"] += 1
            self._answer(relay_socket, data, wire.refused(Refusal.malformed, "malformed registration"), address)
            return
        refusal = self._challenges.check(_socket_key(relay_socket), address, request.node_id, request.nonce, now)
        if refusal is None and not request.verifies(self.identity.node_id.raw):
            self.events["refused_bad_signature"] += 1
            self._answer(relay_socket, data, wire.refused(Refusal.bad_signature, "signature does not match the NodeId"), address)
            return
        if refusal is None:
            refusal = self._challenges.spend(request.nonce, now)  # single use, once it verified
        if refusal is not None:
            self.events[f"refused_{refusal.value}"] += 1
            if refusal in (ChallengeRefusal.budget, ChallengeRefusal.full):
                answer = wire.refused(Refusal.rate_limited, "too many registrations, try again")
            else:
                answer = wire.refused(Refusal.unknown_challenge, "unknown, spent or expired challenge")
            self._answer(relay_socket, data, answer, address)
            return
        if request.node_id not in self._registrations and len(self._registrations) >= self.settings.max_nodes:
            self._answer(relay_socket, data, wire.refused(Refusal.full, "relay full"), address)
            return
        previous = self._registrations.get(request.node_id)
        if previous is not None:
            self._by_address.pop((id(previous.socket), previous.address), None)
        budget = previous.budget if previous else PacketByteBudget.full(self.settings.packets_per_s, self.settings.bytes_per_s, now)
        registration = _Registration(request.node_id, relay_socket, address, request.candidates, now, budget)
        if previous is not None:
            registration.counters = previous.counters
            registration.pairs = previous.pairs
        self._registrations[request.node_id] = registration
        self._by_address[(id(relay_socket), address)] = request.node_id
        self.events["registered"] += 1
        relay_socket.send(wire.registered(address, self.settings.keepalive_s, self.settings.expiry_s), address)

    def _source(self, relay_socket: _RelaySocket, data: bytes, address: Address) -> _Registration | None:
        node_id = self._by_address.get((id(relay_socket), address))
        if node_id is None:
            self._answer(relay_socket, data, wire.refused(Refusal.not_registered, "register first"), address)
            self.events["not_registered"] += 1
            return None
        return self._registrations[node_id]

    def _keepalive(self, relay_socket: _RelaySocket, data: bytes, address: Address, now: float) -> None:
        source = self._source(relay_socket, data, address)
        if source is None or data[1:] != source.node_id:
            return
        source.last_seen = now
        relay_socket.send(wire.keepalive_ack(address), address)

    def _forward(self, relay_socket: _RelaySocket, data: bytes, address: Address, now: float) -> None:
        if len(data) <= wire.RELAY_HEADER_BYTES:
            self.events["malformed"] += 1
            return
        source = self._source(relay_socket, data, address)
        if source is None:
            return
        source.last_seen = now
        size = len(data) - wire.RELAY_HEADER_BYTES
        if not source.budget.take(size, now):
            source.counters.dropped_rate += 1
            return
        destination = self._registrations.get(data[1 : 1 + wire.ID_BYTES])
        if destination is None:
            relay_socket.send(wire.unreachable(data[1 : 1 + wire.ID_BYTES]), address)
            self.events["unreachable"] += 1
            return
        source.counters.packets_in += 1
        source.counters.bytes_in += size
        destination.counters.packets_out += 1
        destination.counters.bytes_out += size
        self._count_pair(source, destination, size)
        destination.socket.send(wire.relayed(source.node_id, data[wire.RELAY_HEADER_BYTES :]), destination.address)

    def _call(self, relay_socket: _RelaySocket, data: bytes, address: Address, now: float) -> None:
        if len(data) != 1 + wire.ID_BYTES:
            self.events["malformed"] += 1
            return
        source = self._source(relay_socket, data, address)
        if source is None:
            return
        if not source.budget.take(0, now):
            source.counters.dropped_rate += 1
            return
        target = self._registrations.get(data[1:])
        if target is None:
            relay_socket.send(wire.unreachable(data[1:]), address)
            return
        # Both sides at once, each with the other's observed address first: they punch together.
        self.events["calls"] += 1
        target.socket.send(wire.call_from(source.node_id, [source.address, *source.candidates]), target.address)
        relay_socket.send(wire.call_from(target.node_id, [target.address, *target.candidates]), address)

    _HANDLERS = {
        wire.HELLO: _hello,
        wire.REGISTER: _register,
        wire.KEEPALIVE: _keepalive,
        wire.FORWARD: _forward,
        wire.CALL: _call,
    }

    # -- housekeeping -------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(5)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Forget expired registrations, their pair counters, spent challenges and full budgets."""
        self._challenges.sweep(now)
        for node_id in [n for n, r in self._registrations.items() if now - r.last_seen > self.settings.expiry_s]:
            registration = self._registrations.pop(node_id)
            self._by_address.pop((id(registration.socket), registration.address), None)
            for pair in registration.pairs:
                self.pair_bytes.pop(pair, None)
                other = self._registrations.get(pair[1] if pair[0] == node_id else pair[0])
                if other is not None:
                    other.pairs.discard(pair)
            self.events["expired"] += 1

    def _count_pair(self, source: _Registration, destination: _Registration, size: int) -> None:
        pair = (source.node_id, destination.node_id)
        if pair not in self.pair_bytes and len(self.pair_bytes) >= self.settings.max_pairs:
            self.untracked_pair_bytes += size
            return
        self.pair_bytes[pair] += size
        source.pairs.add(pair)
        destination.pairs.add(pair)

    def stats(self) -> dict[str, Any]:
        return {
            "nodes": {
                node_id.hex(): {
                    "address": format_host_port(r.address),
                    "packets_in": r.counters.packets_in,
                    "bytes_in": r.counters.bytes_in,
                    "packets_out": r.counters.packets_out,
                    "bytes_out": r.counters.bytes_out,
                    "dropped_rate": r.counters.dropped_rate,
                }
                for node_id, r in self._registrations.items()
            },
            "pairs": [
                {"from": source.hex(), "to": destination.hex(), "bytes": size}
                for (source, destination), size in self.pair_bytes.items()
            ],
            "untracked_pair_bytes": self.untracked_pair_bytes,
            "events": dict(self.events),
        }
