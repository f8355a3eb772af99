"""Nodes running the protocol runtime on the simulated network: each a transport core and a
`Runtime`, joined by a small driver that does what the node's real driver will.

The driver (`RuntimeNode`), for each output of the runtime, in order (an output's own outputs
are carried out before the next one: the application's answer leaves before the ACK after it):
- TransmitEnvelope: on a usable, writable connection to `next_hop`, the frame goes out at once
  (`send_frame`) and `transmitted` is reported; otherwise it waits in a bounded queue per peer
  (FIFO: nothing overtakes what waits) while a dial is under way (at the peer's address when it
  is public, through the relay otherwise) or the connection is not writable; DialFailed, a lost
  connection, no route or a full queue report `transmit_failed` for every frame that waited;
- ReleaseFrame: one call site, `release` (the transport's stream-release API comes later);
- MessagesWaiting: the application reads every message (`inbox`), unless `reading` is off;
- every fact is logged with its time and node (`RuntimeWorld.log`).
Transport events: Received → `receive`, PeerConnected → `peer_connected` (then the queue
flushes), DialSucceeded → flush, DialFailed → fail the queue.

`EnvelopeFaults`, when given, sits between the driver and the transport: each frame the driver
hands over is dropped (reported transmitted all the same: it was lost above QUIC) or duplicated
at seeded rates, and every decision is recorded so a test can check outcomes against it.

The transport is the real QUIC core (`EndpointCore`, aioquic seeded as in world.py) or, for runs
of virtual hours, the frame network (frame_transport.py: one datagram per frame, no QUIC).
Identities, secrets and every random draw come from the seed; nothing reads a clock.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from tests.sim.errors import SimulationError
from tests.sim.frame_transport import FrameCore, FrameSettings
from tests.sim.hosts import Address, MachineHost
from tests.sim.links import Impairment
from tests.sim.nat import EIM_EIF, NatBehaviour
from tests.sim.network import SimNetwork
from tests.sim.partitions import Partition
from tests.sim.randomness import seeded_aioquic
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.endpoint import EndpointCore
from tomproto.core.quic import TransportSettings
from tomproto.core.relay_server import RelayCore
from tomproto.core.runtime import Runtime, RuntimeOutput, RuntimeSettings
from tomproto.core.runtime_events import (
    InboundMessage,
    MessagesWaiting,
    Purpose,
    ReleaseFrame,
    RoomToSend,
    TransmitEnvelope,
)
from tomproto.core.transport_events import (
    DialFailed,
    DialSucceeded,
    PeerConnected,
    PeerDisconnected,
    Received,
    RelayRegistered,
    RelayRegistrationFailed,
    TransportEvent,
)
from tomproto.errors import TransportError
from tomproto.identity import Identity, NodeId
from tomproto.sealing import verify_envelope
from tomproto.wire.codec import decode
from tomproto.wire.envelope import DEFAULT_TTL, Envelope, MessageType
from tomproto.wire.payloads import AckPayload

__all__ = [
    "RELAY",
    "WALL_OFFSET_S",
    "EnvelopeFaults",
    "Fault",
    "NodeSpec",
    "RuntimeNode",
    "RuntimeWorld",
    "TimedEvent",
    "envelope_of",
]

T = TypeVar("T")

RELAY: Address = ("198.51.100.7", 7400)
WALL_OFFSET_S = 1.7e9  # every node's wall clock: virtual time 0 is this Unix time
MAX_WAITING_PER_PEER = 256  # frames waiting for a connection to one peer
MAX_OUTPUTS_PER_CALL = 100_000  # a runtime call that sets more in motion is a livelock
MAX_EVENTS_PER_CALL = 100_000


@dataclass(frozen=True, slots=True)
class TimedEvent:
    at_s: float
    node: str
    event: object  # a runtime fact or command, or a transport event


@dataclass(frozen=True, slots=True)
class Fault:
    """One frame the driver handed to the transport, and what the injector did with it."""

    at_s: float
    node: str
    tx: TransmitEnvelope
    copies: int  # 0: dropped, 1: passed, 2: duplicated
    acknowledges: str | None  # for an ACK, the id of the message it acknowledges


class EnvelopeFaults:
    """Drops or duplicates whole frames above the transport, seeded, and remembers each verdict.
    Only frames of the given purposes are touched (messages and their ACKs by default)."""

    def __init__(
        self, seed: int, *, drop: float, duplicate: float,
        purposes: frozenset[Purpose] = frozenset({Purpose.message, Purpose.ack}),
    ) -> None:  # fmt: skip
        self.rng = random.Random(f"tom-sim-envelope-faults-{seed}")
        self.drop = drop
        self.duplicate = duplicate
        self.purposes = purposes
        self.record: list[Fault] = []

    def copies(self, node: str, tx: TransmitEnvelope, now: float) -> int:
        if tx.purpose not in self.purposes:
            return 1
        copies = 0 if self.rng.random() < self.drop else 2 if self.rng.random() < self.duplicate else 1
        acknowledges = None
        if tx.msg_type is MessageType.Ack:
            acknowledges = decode(verify_envelope(tx.wire).payload, AckPayload).original_id
        self.record.append(Fault(now, node, tx, copies, acknowledges))
        return copies

    def copies_of(self, message_id: str) -> list[Fault]:
        """Each time the message itself was handed over (first send and resends), in order."""
        return [f for f in self.record if f.tx.purpose is Purpose.message and f.tx.message_id == message_id]

    def acks_of(self, message_id: str) -> list[Fault]:
        return [f for f in self.record if f.acknowledges == message_id]


class TransportCore(Protocol):
    """What the driver needs of a transport core (EndpointCore and FrameCore both have it)."""

    def connection_to(self, peer: NodeId) -> int | None: ...

    def writable(self, handle: int) -> bool: ...

    def dial(self, peer: NodeId, address: Address | None, now: float) -> int: ...

    def send_frame(self, handle: int, data: bytes, now: float) -> object: ...

    def next_event(self) -> TransportEvent | None: ...

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]: ...


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    behind_nat: bool = False
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    relays: tuple[str, ...] = ()  # nodes this one knows to have the Relay role (added to settings.relays)
    nat: NatBehaviour = EIM_EIF


class RuntimeNode:
    """A simulated host: a transport core, a Runtime, and the driver between them."""

    def __init__(self, world: RuntimeWorld, spec: NodeSpec, settings: RuntimeSettings, identity: Identity,
                 core: TransportCore, address: Address) -> None:  # fmt: skip
        self.world = world
        self.name = spec.name
        self.identity = identity
        self.node_id = identity.node_id
        self.core = core
        self.address = address  # as attached (private behind a NAT)
        self.runtime = Runtime(identity, settings, world.network.now, wall_offset_s=WALL_OFFSET_S,
                               random_bytes=world.random_bytes)  # fmt: skip
        self.reading = True  # the application takes every message as soon as it is waiting
        self.inbox: list[tuple[float, InboundMessage]] = []
        self.transmissions: list[tuple[float, TransmitEnvelope]] = []  # every TransmitEnvelope, in order
        self.releases: Counter[str] = Counter()  # frames released, by refusal ("accepted": None)
        self._waiting: dict[NodeId, deque[TransmitEnvelope]] = {}
        self._dialing: set[NodeId] = set()
        self._raw_tokens = 0

    def __repr__(self) -> str:
        return f"<RuntimeNode {self.name}>"

    # -- the host's interface -------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.core.receive_datagram(data, source, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        deadline = self.core.next_deadline()
        if deadline is not None and deadline <= now:
            self.core.handle_timer(now)
            self._drain(now)
        deadline = self.runtime.next_deadline()
        if deadline is not None and deadline <= now:
            self.carry_out(self.runtime.handle_timer(now), now)
            self._flush_all(now)

    def next_deadline(self) -> float | None:
        core, runtime = self.core.next_deadline(), self.runtime.next_deadline()
        if core is None or runtime is None:
            return runtime if core is None else core
        return min(core, runtime)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return self.core.datagrams_to_send()

    # -- what a test does -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.world.network.now

    def send(
        self, peer: RuntimeNode | NodeId, payload: bytes, *, via: Iterable[RuntimeNode | NodeId] = (),
        ttl: int = DEFAULT_TTL, message_id: str | None = None,
    ) -> str:  # fmt: skip
        """The application sends a message now; its id."""
        now = self.now
        message, outputs = self.runtime.send(
            _node_id(peer), payload, now, via=tuple(_node_id(hop) for hop in via), ttl=ttl, message_id=message_id
        )
        self.carry_out(outputs, now)
        self._poll()
        return message

    def send_raw(self, peer: RuntimeNode | NodeId, wire: bytes, msg_type: MessageType = MessageType.Chat) -> None:
        """Hand the transport a frame the runtime never saw (a crafted envelope)."""
        self._raw_tokens -= 1
        tx = TransmitEnvelope(self._raw_tokens, _node_id(peer), wire, "", msg_type, Purpose.forward)
        self.carry_out([tx], self.now)
        self._poll()

    def dial(self, peer: RuntimeNode) -> None:
        self._dial(peer.node_id, self.now)
        self._poll()

    def status(self, message_id: str) -> DeliveryStatus | None:
        record = self.runtime.tracker.get(message_id)
        return None if record is None else record.status

    def received_ids(self) -> list[str]:
        """The ids of the messages the application got, in order."""
        return [message.message_id for _, message in self.inbox]

    def facts(self, kind: type[T]) -> list[T]:
        """What this node's runtime reported (or its transport raised) of `kind`, in order."""
        return [entry.event for entry in self.world.log if entry.node == self.name and isinstance(entry.event, kind)]

    def timed(self, kind: type) -> list[TimedEvent]:
        return [entry for entry in self.world.log if entry.node == self.name and isinstance(entry.event, kind)]

    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    # -- carrying out the runtime's outputs -----------------------------------------------------

    def carry_out(self, outputs: Iterable[RuntimeOutput], now: float) -> None:
        todo: deque[RuntimeOutput] = deque(outputs)
        for _ in range(MAX_OUTPUTS_PER_CALL):
            if not todo:
                return
            more = self._carry_out_one(todo.popleft(), now)
            if more:
                todo.extendleft(reversed(more))
        raise SimulationError(f"{self.name}: over {MAX_OUTPUTS_PER_CALL} runtime outputs in one call")

    def _carry_out_one(self, output: RuntimeOutput, now: float) -> list[RuntimeOutput]:
        if isinstance(output, TransmitEnvelope):
            self.transmissions.append((now, output))
            return self._transmit(output, now)
        if isinstance(output, ReleaseFrame):
            self.release(output, now)
            return []
        self.world.log.append(TimedEvent(now, self.name, output))
        if isinstance(output, MessagesWaiting):
            return self._read(now)
        if isinstance(output, RoomToSend):
            return []
        return []  # a fact: logged

    def release(self, release: ReleaseFrame, now: float) -> None:
        """The runtime is done with a frame: the transport closes its stream (or resets it with
        the refusal), which is what lets the sender open the next one."""
        self.releases["accepted" if release.refusal is None else release.refusal.name] += 1
        frame = release.frame
        if isinstance(self.core, EndpointCore) and frame.stream_id is not None:
            self.core.release_stream(frame.connection, frame.stream_id, now, release.refusal)

    def _read(self, now: float) -> list[RuntimeOutput]:
        if not self.reading:
            return []
        message, more = self.runtime.take_message(now)
        if message is None:
            return more
        self.inbox.append((now, message))
        if self.runtime.inbox_size:
            more.append(MessagesWaiting())
        return more

    # -- transmissions --------------------------------------------------------------------------

    def _transmit(self, tx: TransmitEnvelope, now: float) -> list[RuntimeOutput]:
        peer = tx.next_hop
        handle = self.core.connection_to(peer)
        if handle is not None and peer not in self._waiting and self.core.writable(handle):
            return self._hand_over(handle, tx, now)
        queue = self._waiting.setdefault(peer, deque())
        if len(queue) >= MAX_WAITING_PER_PEER:
            return self._failed(tx, now, "too many frames waiting for the peer")
        queue.append(tx)
        if handle is None and peer not in self._dialing:
            return self._dial(peer, now)
        return []

    def _hand_over(self, handle: int, tx: TransmitEnvelope, now: float) -> list[RuntimeOutput]:
        faults = self.world.faults
        copies = 1 if faults is None else faults.copies(self.name, tx, now)
        try:
            for _ in range(copies):
                self.core.send_frame(handle, tx.wire, now)
        except TransportError as error:
            return self._failed(tx, now, str(error))
        return [] if tx.token < 0 else self.runtime.transmitted(tx.token, now)

    def _failed(self, tx: TransmitEnvelope, now: float, reason: str) -> list[RuntimeOutput]:
        return [] if tx.token < 0 else self.runtime.transmit_failed(tx.token, now, reason)

    def _dial(self, peer: NodeId, now: float) -> list[RuntimeOutput]:
        try:
            self.core.dial(peer, self.world.address_of(peer), now)
        except TransportError as error:
            return self._fail_waiting(peer, now, str(error))
        self._dialing.add(peer)
        return []

    def _fail_waiting(self, peer: NodeId, now: float, reason: str) -> list[RuntimeOutput]:
        queue = self._waiting.pop(peer, deque())
        out: list[RuntimeOutput] = []
        for tx in queue:
            out += self._failed(tx, now, reason)
        return out

    def _flush(self, peer: NodeId, now: float) -> None:
        """Frames waiting for `peer` go, in order, while its connection takes them."""
        for _ in range(MAX_OUTPUTS_PER_CALL):
            queue = self._waiting.get(peer)
            if not queue:
                self._waiting.pop(peer, None)
                return
            handle = self.core.connection_to(peer)
            if handle is None or not self.core.writable(handle):
                return
            self.carry_out(self._hand_over(handle, queue.popleft(), now), now)
        raise SimulationError(f"{self.name}: the queue for {peer.hex[:8]} does not empty")

    def _flush_all(self, now: float) -> None:
        for peer in list(self._waiting):
            self._flush(peer, now)

    # -- transport events -----------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        core = self.core
        for _ in range(MAX_EVENTS_PER_CALL):
            event = core.next_event()
            if event is None:
                break
            self._on_event(event, now)
        else:
            raise SimulationError(f"{self.name}: over {MAX_EVENTS_PER_CALL} transport events in one call")
        self._flush_all(now)

    def _on_event(self, event: TransportEvent, now: float) -> None:
        if isinstance(event, Received):
            self.carry_out(self.runtime.receive(event, now), now)
            return
        self.world.log.append(TimedEvent(now, self.name, event))
        if isinstance(event, PeerConnected):
            self.carry_out(self.runtime.peer_connected(event.peer, now), now)
            self._flush(event.peer, now)
        elif isinstance(event, DialSucceeded):
            self._dialing.discard(event.peer)
            self._flush(event.peer, now)
        elif isinstance(event, DialFailed):
            self._dialing.discard(event.peer)
            if self.core.connection_to(event.peer) is None:
                self.carry_out(self._fail_waiting(event.peer, now, str(event.error)), now)
            else:
                self._flush(event.peer, now)
        elif isinstance(event, PeerDisconnected):
            peer = event.peer
            if peer is not None and self.core.connection_to(peer) is None and peer not in self._dialing:
                self.carry_out(self._fail_waiting(peer, now, f"connection lost: {event.reason}"), now)

    def _poll(self) -> None:
        self.world.network.poll(self)


def _node_id(peer: RuntimeNode | NodeId) -> NodeId:
    return peer if isinstance(peer, NodeId) else peer.node_id


class RuntimeWorld:
    """Nodes running the runtime on one seeded network, over QUIC (`transport="quic"`) or frames.

    Public nodes sit at addresses every node knows; a node behind a NAT (QUIC only) is reached
    through the relay, with which every node then registers (`register`)."""

    def __init__(
        self, seed: int, nodes: Iterable[NodeSpec | str], *, transport: Literal["quic", "frames"] = "quic",
        impairment: Impairment | None = None, faults: EnvelopeFaults | None = None,
        transport_settings: TransportSettings | None = None, frame_settings: FrameSettings | None = None,
        trace: bool = False, max_steps: int = 5_000_000,
    ) -> None:  # fmt: skip
        self.seed = seed
        self.transport = transport
        self.faults = faults
        self.log: list[TimedEvent] = []
        # The nodes' randomness and the network's draws are separate streams of the one seed.
        self.rng = random.Random(f"tom-sim-runtime-nodes-{seed}")
        self._stack = ExitStack()
        self._stack.enter_context(seeded_aioquic(self.random_bytes))
        self.network = SimNetwork(seed, default=impairment or Impairment(), trace=trace, max_steps=max_steps)
        specs = [spec if isinstance(spec, NodeSpec) else NodeSpec(spec) for spec in nodes]
        self.relay: RelayCore | None = None
        if any(spec.behind_nat for spec in specs):
            if transport != "quic":
                raise SimulationError("the frame network has no NATs: nodes behind one need QUIC and the relay")
            self.relay = RelayCore(Identity.from_seed(self.random_bytes(32)), secret=self.random_bytes(32), now=0.0)
            self.network.attach(MachineHost(self.relay), RELAY)
        self._public: dict[NodeId, Address] = {}
        identities = {spec.name: Identity.from_seed(self.random_bytes(32)) for spec in specs}
        self.nodes: dict[str, RuntimeNode] = {}
        for index, spec in enumerate(specs, start=1):
            relays = spec.settings.relays | {identities[name].node_id for name in spec.relays}
            settings = dataclasses.replace(spec.settings, relays=relays)
            self.nodes[spec.name] = self._node(index, spec, settings, identities[spec.name],
                                               transport_settings or TransportSettings(), frame_settings)  # fmt: skip

    def _node(self, index: int, spec: NodeSpec, settings: RuntimeSettings, identity: Identity,
              transport_settings: TransportSettings, frame_settings: FrameSettings | None) -> RuntimeNode:  # fmt: skip
        if spec.behind_nat:
            address: Address = (f"192.168.{index}.2", 5000)
            nat = self.network.add_nat(f"203.0.113.{index}", spec.nat)
        else:
            address, nat = (f"198.51.100.{10 + index}", 7000), None
            self._public[identity.node_id] = address
        core: TransportCore
        if self.transport == "quic":
            core = EndpointCore(
                identity, transport_settings, now=self.network.now, random_bytes=self.random_bytes,
                relay_address=None if self.relay is None else RELAY, candidates=[address],
            )  # fmt: skip
        else:
            core = FrameCore(identity.node_id, frame_settings)
        node = RuntimeNode(self, spec, settings, identity, core, address)
        self.network.attach(node, address, nat=nat)
        return node

    def __getitem__(self, name: str) -> RuntimeNode:
        return self.nodes[name]

    def __enter__(self) -> RuntimeWorld:
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def random_bytes(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def address_of(self, peer: NodeId) -> Address | None:
        """Where to dial `peer`: its address when public, None (through the relay) otherwise."""
        return self._public.get(peer)

    @property
    def now(self) -> float:
        return self.network.now

    # -- setting up -----------------------------------------------------------------------------

    def register(self, limit_s: float = 60.0) -> None:
        """Every node registers with the relay (a registration that failed is started again, as a
        user would restart the node)."""
        nodes = [node for node in self.nodes.values() if isinstance(node.core, EndpointCore)]
        if self.relay is None or not nodes:
            return
        deadline = self.now + limit_s

        def start(node: RuntimeNode) -> None:
            assert isinstance(node.core, EndpointCore)
            node.core.register_with_relay(self.now)
            node._drain(self.now)
            self.network.poll(node)

        for node in nodes:
            start(node)
        for _ in range(1000):
            pending = [node for node in nodes if not node.facts(RelayRegistered)]
            if not pending:
                return
            failures = {node.name: len(node.facts(RelayRegistrationFailed)) for node in nodes}

            def waiting(failures: dict[str, int] = failures) -> bool:
                return any(not node.facts(RelayRegistered) for node in nodes) and all(
                    len(node.facts(RelayRegistrationFailed)) == failures[node.name] for node in nodes
                )

            self.network.run_while(waiting, max(0.0, deadline - self.now))
            for node in nodes:
                if len(node.facts(RelayRegistrationFailed)) > failures[node.name] and not node.facts(RelayRegistered):
                    start(node)
        raise SimulationError("registration did not settle")

    def connect(self, a: RuntimeNode, b: RuntimeNode, limit_s: float = 30.0) -> None:
        """`a` dials `b` now; run until both have the connection."""
        a.dial(b)
        self.run_while(lambda: a.core.connection_to(b.node_id) is None or b.core.connection_to(a.node_id) is None,
                       self.now + limit_s)  # fmt: skip

    # -- running --------------------------------------------------------------------------------

    def at(self, when_s: float, action: Callable[[], None]) -> None:
        """Call `action()` at virtual time `when_s` (a node's `send` polls the network itself)."""
        self.network.scheduler.call_at(when_s, action)

    def run_until(self, until_s: float) -> None:
        self.network.run_until(until_s)

    def run_for(self, duration_s: float) -> None:
        self.network.run_until(self.now + duration_s)

    def run_while(self, predicate: Callable[[], bool], until_s: float) -> None:
        """Run while `predicate()` holds, until virtual time `until_s` at most (then raise)."""
        self.network.run_while(predicate, max(0.0, until_s - self.now))

    def black_hole(self, node: RuntimeNode, start_s: float | None = None, end_s: float | None = None) -> Partition:
        """Every datagram to or from `node` vanishes from `start_s` (now) to `end_s` (or `lift()`)."""
        return self.network.partition([node.address], None, start_s=start_s, end_s=end_s)

    def remove(self, node: RuntimeNode) -> None:
        """Take `node` off the network for good (its machine is gone: it runs no more)."""
        self.network.detach(node)

    def cut(self, a: RuntimeNode, b: RuntimeNode) -> Partition:
        """`a` and `b` cannot reach each other (either way) until `lift()`."""
        return self.network.partition([a.address], [b.address])

    def events(self, kind: type) -> Iterator[TimedEvent]:
        return (entry for entry in self.log if isinstance(entry.event, kind))


def envelope_of(tx: TransmitEnvelope) -> Envelope:
    return verify_envelope(tx.wire)
