"""The tom-relay server's logic, sans-IO (docs/relay-protocol.md): packets and the time in,
datagrams to send out. `tomproto/relay/server.py` owns the sockets and the timer.

Rules it enforces:
- only the holder of a NodeId's key can register it: a challenge bound to the listening socket,
  source address and NodeId, signed with the relay's id, so forged and replayed registrations
  are refused and leave the real owner's registration untouched;
- a HELLO leaves no state (the challenge is a MAC, core/relay_challenges.py); a verified
  challenge is spent (single use); signature verifications have a per-source budget;
- no answer to an address that has not registered is larger than the packet that asked for it
  (no amplification): HELLOs are padded, and a refusal that would be larger than its request is
  not sent. (CALL_FROM, larger than its CALL, goes only to registered addresses, which proved
  they receive what is sent to them.);
- it forwards only from a registered address and names the source by the NodeId registered
  there; a per-node budget of packets and bytes (core TokenBuckets) drops excess traffic,
  nothing is queued;
- one address is one registration: a NodeId registered from an address another NodeId held
  takes it over (the old one is forgotten), and a node that registers from a new address moves;
- every table is bounded (registrations, spent challenges, budgets, pair counters) and
  registrations expire: `sweep(now)` is due every `SWEEP_INTERVAL_S` (`next_deadline()`);
- it counts packets and bytes per registered node and per (source, destination) pair of
  registered nodes; a pair's counter goes when either registration expires (NodeIds cost
  nothing: counters kept for expired ones would grow with every fresh NodeId), and pairs beyond
  `max_pairs` are summed in `untracked_pair_bytes`;
- bad input never raises: it is dropped or refused, and counted in `events`.

The challenge secret and the time are given; nothing here reads a clock or a random source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tomproto.core.budget import PacketByteBudget
from tomproto.core.paths import format_host_port
from tomproto.core.relay_challenges import (
    ChallengeRefusal,
    Challenges,
    ChallengeSettings,
)
from tomproto.identity import Identity
from tomproto.relay import protocol as wire
from tomproto.relay.protocol import Address, Refusal

__all__ = ["SWEEP_INTERVAL_S", "NodeCounters", "Outgoing", "RelayCore", "RelaySettings"]

SWEEP_INTERVAL_S = 5.0


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


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Send `data` to `address` from the listening socket number `socket`."""

    data: bytes
    address: Address
    socket: int


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
    socket: int
    address: Address
    candidates: tuple[Address, ...]
    last_seen: float
    budget: PacketByteBudget
    counters: NodeCounters = field(default_factory=NodeCounters)
    pairs: set[tuple[bytes, bytes]] = field(default_factory=set)  # keys of pair_bytes with this node


def _socket_key(socket: int) -> bytes:
    # A challenge is good on the socket that issued it only (the relay may listen on several).
    return socket.to_bytes(8, "big")


def _answer(request: bytes, answer: bytes, address: Address, socket: int) -> list[Outgoing]:
    """`answer` unless it is larger than its request: a forged source must not make us an
    amplifier (a REFUSED to a 1-byte packet is dropped instead)."""
    return [Outgoing(answer, address, socket)] if len(answer) <= len(request) else []


_Handler = Callable[["RelayCore", bytes, Address, int, float], list[Outgoing]]


class RelayCore:
    def __init__(self, identity: Identity, settings: RelaySettings | None = None, *, secret: bytes, now: float) -> None:
        self.identity = identity
        self.settings = settings = settings or RelaySettings()
        self._registrations: dict[bytes, _Registration] = {}
        self._by_address: dict[tuple[int, Address], bytes] = {}
        self._challenges = Challenges(
            ChallengeSettings(
                ttl_s=settings.challenge_ttl_s,
                verifications_per_s=settings.verifications_per_s,
                verification_burst=settings.verification_burst,
                max_spent=settings.max_spent_challenges,
            ),
            secret,
        )
        self.pair_bytes: Counter[tuple[bytes, bytes]] = Counter()  # registered nodes only
        self.untracked_pair_bytes = 0  # forwarded while pair_bytes held max_pairs other pairs
        self.events: Counter[str] = Counter()
        self._next_sweep_s = now + SWEEP_INTERVAL_S

    # -- packets ------------------------------------------------------------------------------

    def handle(self, data: bytes, source: Address, now: float, socket: int = 0) -> list[Outgoing]:
        """A datagram from `source` on listening socket `socket`: what to send in answer."""
        if not data:
            return []
        handler = self._HANDLERS.get(data[0])
        if handler is None:
            self.events["unknown_kind"] += 1
            return []
        return handler(self, data, (source[0], source[1]), socket, now)

    def _hello(self, data: bytes, address: Address, socket: int, now: float) -> list[Outgoing]:
        if len(data) < wire.HELLO_BYTES:
            self.events["hello_unpadded"] += 1  # an answer would be larger than the question
            return []
        node_id = data[1 : 1 + wire.ID_BYTES]
        nonce = self._challenges.issue(_socket_key(socket), address, node_id, now)
        self.events["challenges"] += 1
        return _answer(data, wire.challenge(self.identity.node_id.raw, nonce), address, socket)

    def _register(self, data: bytes, address: Address, socket: int, now: float) -> list[Outgoing]:
        request = wire.parse_register(data)
        if request is None:
            self.events["refused_malformed"] += 1
            return _answer(data, wire.refused(Refusal.malformed, "malformed registration"), address, socket)
        refusal = self._challenges.check(_socket_key(socket), address, request.node_id, request.nonce, now)
        if refusal is None and not request.verifies(self.identity.node_id.raw):
            self.events["refused_bad_signature"] += 1
            answer = wire.refused(Refusal.bad_signature, "signature does not match the NodeId")
            return _answer(data, answer, address, socket)
        if refusal is None:
            refusal = self._challenges.spend(request.nonce, now)  # single use, once it verified
        if refusal is not None:
            self.events[f"refused_{refusal.value}"] += 1
            if refusal in (ChallengeRefusal.budget, ChallengeRefusal.full):
                answer = wire.refused(Refusal.rate_limited, "too many registrations, try again")
            else:
                answer = wire.refused(Refusal.unknown_challenge, "unknown, spent or expired challenge")
            return _answer(data, answer, address, socket)
        if request.node_id not in self._registrations and len(self._registrations) >= self.settings.max_nodes:
            self.events["refused_full"] += 1
            return _answer(data, wire.refused(Refusal.full, "relay full"), address, socket)
        holder = self._by_address.get((socket, address))
        if holder is not None and holder != request.node_id:
            # One address is one node: the one that just proved it (a restart with a new
            # identity). Left registered, the old NodeId would have its packets relayed here.
            self._drop(holder)
            self.events["address_taken"] += 1
        previous = self._registrations.get(request.node_id)
        if previous is not None:
            self._by_address.pop((previous.socket, previous.address), None)
            budget = previous.budget
        else:
            budget = PacketByteBudget.full(self.settings.packets_per_s, self.settings.bytes_per_s, now)
        registration = _Registration(request.node_id, socket, address, request.candidates, now, budget)
        if previous is not None:
            registration.counters = previous.counters
            registration.pairs = previous.pairs
        self._registrations[request.node_id] = registration
        self._by_address[(socket, address)] = request.node_id
        self.events["registered"] += 1
        return [Outgoing(wire.registered(address, self.settings.keepalive_s, self.settings.expiry_s), address, socket)]

    def _source(self, address: Address, socket: int) -> _Registration | None:
        node_id = self._by_address.get((socket, address))
        return None if node_id is None else self._registrations[node_id]

    def _not_registered(self, data: bytes, address: Address, socket: int) -> list[Outgoing]:
        self.events["not_registered"] += 1
        return _answer(data, wire.refused(Refusal.not_registered, "register first"), address, socket)

    def _keepalive(self, data: bytes, address: Address, socket: int, now: float) -> list[Outgoing]:
        source = self._source(address, socket)
        if source is None:
            return self._not_registered(data, address, socket)
        if data[1:] != source.node_id:
            return []
        source.last_seen = now
        return [Outgoing(wire.keepalive_ack(address), address, socket)]

    def _forward(self, data: bytes, address: Address, socket: int, now: float) -> list[Outgoing]:
        if len(data) <= wire.RELAY_HEADER_BYTES:
            self.events["malformed"] += 1
            return []
        source = self._source(address, socket)
        if source is None:
            return self._not_registered(data, address, socket)
        source.last_seen = now
        size = len(data) - wire.RELAY_HEADER_BYTES
        if not source.budget.take(size, now):
            source.counters.dropped_rate += 1
            return []
        destination_id = data[1 : 1 + wire.ID_BYTES]
        destination = self._registrations.get(destination_id)
        if destination is None:
            self.events["unreachable"] += 1
            return [Outgoing(wire.unreachable(destination_id), address, socket)]
        source.counters.packets_in += 1
        source.counters.bytes_in += size
        destination.counters.packets_out += 1
        destination.counters.bytes_out += size
        self._count_pair(source, destination, size)
        relayed = wire.relayed(source.node_id, data[wire.RELAY_HEADER_BYTES :])
        return [Outgoing(relayed, destination.address, destination.socket)]

    def _call(self, data: bytes, address: Address, socket: int, now: float) -> list[Outgoing]:
        if len(data) != 1 + wire.ID_BYTES:
            self.events["malformed"] += 1
            return []
        source = self._source(address, socket)
        if source is None:
            return self._not_registered(data, address, socket)
        if not source.budget.take(0, now):
            source.counters.dropped_rate += 1
            return []
        target = self._registrations.get(data[1:])
        if target is None:
            return [Outgoing(wire.unreachable(data[1:]), address, socket)]
        # Both sides at once, each with the other's observed address first: they punch together.
        self.events["calls"] += 1
        return [
            Outgoing(
                wire.call_from(source.node_id, [source.address, *source.candidates]),
                target.address,
                target.socket,
            ),
            Outgoing(
                wire.call_from(target.node_id, [target.address, *target.candidates]),
                address,
                socket,
            ),
        ]

    _HANDLERS: dict[int, _Handler] = {  # noqa: RUF012 - a constant table of the class's own methods
        wire.HELLO: _hello,
        wire.REGISTER: _register,
        wire.KEEPALIVE: _keepalive,
        wire.FORWARD: _forward,
        wire.CALL: _call,
    }

    # -- housekeeping -------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When `sweep` is next due."""
        return self._next_sweep_s

    def sweep(self, now: float) -> None:
        """Forget expired registrations, their pair counters, spent challenges and full budgets."""
        self._next_sweep_s = now + SWEEP_INTERVAL_S
        self._challenges.sweep(now)
        for node_id in [n for n, r in self._registrations.items() if now - r.last_seen > self.settings.expiry_s]:
            self._drop(node_id)
            self.events["expired"] += 1

    def _drop(self, node_id: bytes) -> None:
        """Forget a registration, and the pair counters it is part of."""
        registration = self._registrations.pop(node_id)
        if self._by_address.get((registration.socket, registration.address)) == node_id:
            del self._by_address[registration.socket, registration.address]
        for pair in registration.pairs:
            self.pair_bytes.pop(pair, None)
            other = self._registrations.get(pair[1] if pair[0] == node_id else pair[0])
            if other is not None:
                other.pairs.discard(pair)

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
