"""Real node cores on the simulated network: two homes behind NATs and a relay on a public address.

`World` builds, from one seed, everything a scenario needs: the network (delay, jitter, loss),
the relay's core (tomproto.core.relay_server), and two `SimNode`s, each the node's own transport
core (tomproto.core.endpoint) with its identity, its secrets and its randomness drawn from the
seed. aioquic's draws are seeded too (`seeded_aioquic`), so a seed fixes the whole run: the same
seed gives the same packets and the same events at the same virtual times.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

from tests.sim.hosts import Address, MachineHost
from tests.sim.links import Impairment
from tests.sim.nat import EIM_EIF, NatBehaviour
from tests.sim.network import SimNetwork
from tests.sim.randomness import seeded_aioquic
from tomproto.core.endpoint import EndpointCore
from tomproto.core.paths import Path
from tomproto.core.quic import TransportSettings
from tomproto.core.relay_server import RelayCore
from tomproto.core.transport_events import (
    PathChanged,
    PeerConnected,
    Received,
    RelayRegistered,
    RelayRegistrationFailed,
    TransportEvent,
)
from tomproto.identity import Identity

__all__ = ["RELAY", "SimNode", "World", "TimedEvent"]

RELAY: Address = ("198.51.100.7", 7400)
HOME_A_PUBLIC, HOME_B_PUBLIC = "203.0.113.1", "203.0.113.2"
A_PRIVATE: Address = ("192.168.1.2", 5000)
B_PRIVATE: Address = ("192.168.2.2", 5000)
A_PUBLIC: Address = (HOME_A_PUBLIC, 5000)
B_PUBLIC: Address = (HOME_B_PUBLIC, 5000)


@dataclass(frozen=True, slots=True)
class TimedEvent:
    at_s: float
    node: str
    event: TransportEvent


class SimNode:
    """A node's transport core as a simulated host; every event it raises is logged with its time.
    Each frame received is released as accepted at once (as the shell does after its handler),
    unless `holds` is set: the test then releases it (`core.release_stream`)."""

    def __init__(self, name: str, identity: Identity, core: EndpointCore, log: list[TimedEvent]) -> None:
        self.name = name
        self.identity = identity
        self.core = core
        self.holds = False
        self._log = log

    @property
    def events(self) -> list[TransportEvent]:
        return [entry.event for entry in self._log if entry.node == self.name]

    def timed(self, kind: type) -> list[TimedEvent]:
        return [entry for entry in self._log if entry.node == self.name and isinstance(entry.event, kind)]

    def received(self) -> list[Received]:
        return [event for event in self.events if isinstance(event, Received)]

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.core.receive_datagram(data, source, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)
        self._drain(now)

    def next_deadline(self) -> float | None:
        return self.core.next_deadline()

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return self.core.datagrams_to_send()

    def _drain(self, now: float) -> None:
        while (event := self.core.next_event()) is not None:
            self._log.append(TimedEvent(now, self.name, event))
            if isinstance(event, Received) and event.stream_id is not None and not self.holds:
                self.core.release_stream(event.connection, event.stream_id, now)


@dataclass
class World:
    """Alice and Bob, each behind a NAT of its own, and the relay, on one seeded network."""

    seed: int
    impairment: Impairment = field(default_factory=Impairment)
    nat_a: NatBehaviour = EIM_EIF
    nat_b: NatBehaviour = EIM_EIF
    trace: bool = False
    settings: TransportSettings = field(default_factory=TransportSettings)
    behind_nats: bool = True

    def __post_init__(self) -> None:
        # The nodes' and relay's randomness and the network's draws (loss, delay) are separate
        # streams of the one seed: the same stream for both would tie keys to losses.
        self.rng = random.Random(f"tom-sim-nodes-{self.seed}")
        self.log: list[TimedEvent] = []
        self._stack = ExitStack()
        self._stack.enter_context(seeded_aioquic(self.random_bytes))
        self.network = SimNetwork(self.seed, default=self.impairment, trace=self.trace)
        relay_identity = Identity.from_seed(self.random_bytes(32))
        self.relay = RelayCore(relay_identity, secret=self.random_bytes(32), now=0.0)
        self._relay_host = MachineHost(self.relay)
        self.network.attach(self._relay_host, RELAY)
        if self.behind_nats:
            home_a = self.network.add_nat(HOME_A_PUBLIC, self.nat_a)
            home_b = self.network.add_nat(HOME_B_PUBLIC, self.nat_b)
            self.alice = self._node("alice", A_PRIVATE)
            self.bob = self._node("bob", B_PRIVATE)
            self.network.attach(self.alice, A_PRIVATE, nat=home_a)
            self.network.attach(self.bob, B_PRIVATE, nat=home_b)
        else:  # both on public addresses: they can dial each other at a known address
            self.alice = self._node("alice", A_PUBLIC)
            self.bob = self._node("bob", B_PUBLIC)
            self.network.attach(self.alice, A_PUBLIC)
            self.network.attach(self.bob, B_PUBLIC)

    def restart_relay(self) -> None:
        """The relay restarts: same identity and address, every registration forgotten."""
        self.network.detach(self._relay_host)
        self.relay = RelayCore(self.relay.identity, secret=self.random_bytes(32), now=self.network.now)
        self._relay_host = MachineHost(self.relay)
        self.network.attach(self._relay_host, RELAY)

    def random_bytes(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def _node(self, name: str, private: Address) -> SimNode:
        identity = Identity.from_seed(self.random_bytes(32))
        core = EndpointCore(
            identity, self.settings, now=0.0, random_bytes=self.random_bytes, relay_address=RELAY,
            candidates=[private],
        )  # fmt: skip
        return SimNode(name, identity, core, self.log)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    # -- acting at a virtual time ------------------------------------------------------------------

    def at(self, when_s: float, node: SimNode, action: Callable[[float], object]) -> None:
        """Call `action(now)` on `node` at virtual time `when_s`, then let the network see the result."""

        def act() -> None:
            action(self.network.now)
            node._drain(self.network.now)
            self.network.poll(node)

        self.network.scheduler.call_at(when_s, act)

    def register(self, limit_s: float = 30.0) -> None:
        """Both nodes register with the relay (HELLOs are resent while lost; a registration that
        times out is started again, as a user would start the node again)."""
        for node in (self.alice, self.bob):
            self.at(self.network.now, node, node.core.register_with_relay)
        deadline = self.network.now + limit_s
        while not (self.registered(self.alice) and self.registered(self.bob)):
            failures = len(self.timed(RelayRegistrationFailed))

            def waiting(failures: int = failures) -> bool:  # this pass's count, bound now
                return (
                    not (self.registered(self.alice) and self.registered(self.bob))
                    and len(self.timed(RelayRegistrationFailed)) == failures
                )

            self.network.run_while(waiting, max(0.0, deadline - self.network.now))
            for entry in self.timed(RelayRegistrationFailed)[failures:]:
                node = self.alice if entry.node == "alice" else self.bob
                self.at(self.network.now, node, node.core.register_with_relay)

    def timed(self, kind: type) -> list[TimedEvent]:
        return [entry for entry in self.log if isinstance(entry.event, kind)]

    def registered(self, node: SimNode) -> bool:
        return any(isinstance(event, RelayRegistered) for event in node.events)

    def dial_through_relay(self, at_s: float) -> None:
        self.at(at_s, self.alice, lambda now: self.alice.core.dial(self.bob.identity.node_id, None, now))

    def connected_at(self, node: SimNode) -> float | None:
        return next((entry.at_s for entry in node.timed(PeerConnected)), None)

    def switched_at(self, node: SimNode, path: Path, after_s: float = 0.0) -> float | None:
        """When `node` first switched to `path` at or after `after_s`."""
        for entry in node.timed(PathChanged):
            event = entry.event
            if isinstance(event, PathChanged) and event.current is path and entry.at_s >= after_s:
                return entry.at_s
        return None

    def direct_at(self, node: SimNode, after_s: float = 0.0) -> float | None:
        return self.switched_at(node, Path.direct, after_s)

    def relay_at(self, node: SimNode, after_s: float = 0.0) -> float | None:
        return self.switched_at(node, Path.relay, after_s)

    def run_until(self, until_s: float) -> None:
        self.network.run_until(until_s)

    def run_while(self, predicate: Callable[[], bool], until_s: float) -> None:
        """Run while `predicate()` holds, until virtual time `until_s` at most (then raise)."""
        self.network.run_while(predicate, max(0.0, until_s - self.network.now))

    def event_trace(self) -> Iterator[str]:
        for entry in self.log:
            yield f"{entry.at_s:.9f} {entry.node} {entry.event!r}"
