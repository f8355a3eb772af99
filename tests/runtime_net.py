"""A few protocol runtimes wired together in memory, with the driver's calling contract (as the
node carries it out) and nothing else: no sockets, no sleeps, every time an argument.

- `TransmitEnvelope` → the transmission is reported `transmitted` (or `transmit_failed` when
  `unreachable` says so) and its wire reaches the next hop's `receive` as a `Received` frame;
  `lose` drops a transmission on the way (it left, and never arrived);
- `MessagesWaiting` → the application takes every message (unless `reading` is off for that node);
- `ReleaseFrame` is recorded per node, so tests can see which frames were released, how, and
  which are still held;
- `advance(until)` fires every runtime's timer at its `next_deadline()`, in time order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tomproto.core.delivery import DeliveryStatus
from tomproto.core.paths import Path, Transport
from tomproto.core.runtime import Runtime, RuntimeOutput, RuntimeSettings
from tomproto.core.runtime_events import (
    EnvelopeRefused,
    InboundMessage,
    MessageStatusChanged,
    MessagesWaiting,
    ReleaseFrame,
    TransmitEnvelope,
)
from tomproto.core.transport_events import Received
from tomproto.identity import Identity, NodeId
from tomproto.sealing import seal_envelope
from tomproto.wire.envelope import DEFAULT_TTL, MessageType

__all__ = ["WALL_OFFSET_S", "Node", "Net", "Sent"]

WALL_OFFSET_S = 1.7e9  # Unix seconds at monotonic 0


@dataclass(frozen=True, slots=True)
class Sent:
    """One transmission a runtime asked for, as the driver saw it."""

    source: str
    command: TransmitEnvelope
    wire: bytes
    at_s: float


@dataclass
class Node:
    name: str
    identity: Identity
    runtime: Runtime
    reading: bool = True  # the application takes messages as soon as they wait
    inbox: list[InboundMessage] = field(default_factory=list)
    events: list[object] = field(default_factory=list)  # every fact, in order
    released: list[ReleaseFrame] = field(default_factory=list)

    @property
    def id(self) -> NodeId:
        return self.identity.node_id

    def facts(self, kind: type) -> list:
        return [event for event in self.events if isinstance(event, kind)]

    def refusals(self) -> list[EnvelopeRefused]:
        return self.facts(EnvelopeRefused)

    def statuses(self, message_id: str) -> list:
        return [e.status for e in self.facts(MessageStatusChanged) if e.message_id == message_id]

    def plaintexts(self) -> list[bytes]:
        return [message.plaintext for message in self.inbox]


class Net:
    def __init__(
        self,
        names: str = "abc",
        *,
        settings: RuntimeSettings | None = None,
        per_node: dict[str, RuntimeSettings] | None = None,
        wall_offsets: dict[str, float] | None = None,
        seed: int = 1,
    ) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        for name in names:
            identity = Identity.from_seed(self.rng.randbytes(32))
            node_settings = (per_node or {}).get(name, settings or RuntimeSettings())
            offset = (wall_offsets or {}).get(name, WALL_OFFSET_S)
            runtime = Runtime(identity, node_settings, 0.0, wall_offset_s=offset, random_bytes=self.rng.randbytes)
            self.nodes[name] = Node(name, identity, runtime)
        self.by_id = {node.id: name for name, node in self.nodes.items()}
        self.queue: list[Sent] = []
        self.log: list[Sent] = []  # every transmission, in order
        self.lose: Callable[[Sent], bool] = lambda sent: False
        self.unreachable: Callable[[Sent], bool] = lambda sent: False
        self.frames = 0

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def rt(self, name: str) -> Runtime:
        return self.nodes[name].runtime

    def status(self, name: str, message_id: str) -> DeliveryStatus | None:
        """What `name`'s tracker says of its message now (None: not tracked, or forgotten)."""
        record = self.rt(name).tracker.get(message_id)
        return None if record is None else record.status

    # -- the driver -------------------------------------------------------------------------------

    def carry_out(self, name: str, outputs: list[RuntimeOutput]) -> list[RuntimeOutput]:
        node = self.nodes[name]
        for output in outputs:
            if isinstance(output, TransmitEnvelope):
                sent = Sent(name, output, output.wire, self.now)
                self.queue.append(sent)
                self.log.append(sent)
            elif isinstance(output, MessagesWaiting):
                if node.reading:
                    self.read(name)
            elif isinstance(output, ReleaseFrame):
                node.released.append(output)
            else:
                node.events.append(output)
        return outputs

    def read(self, name: str, count: int | None = None) -> list[InboundMessage]:
        """The application of `name` takes `count` messages (all of them: None)."""
        taken: list[InboundMessage] = []
        while count is None or len(taken) < count:
            message, more = self.rt(name).take_message(self.now)
            if message is None:
                break
            taken.append(message)
            self.nodes[name].inbox.append(message)
            self.carry_out(name, more)
        return taken

    def frame(self, source: str | NodeId, wire: bytes, transport: Transport = Transport.stream) -> Received:
        peer = self.nodes[source].id if isinstance(source, str) else source
        self.frames += 1
        stream_id = self.frames * 4 if transport is Transport.stream else None
        return Received(peer, 1, wire, transport, Path.direct, self.now, stream_id)

    def inject(
        self, to: str, source: str | NodeId, wire: bytes, transport: Transport = Transport.stream
    ) -> tuple[Received, list[RuntimeOutput]]:
        """`wire` arrives at `to` from the transport peer `source`: the frame, and the outputs."""
        frame = self.frame(source, wire, transport)
        return frame, self.carry_out(to, self.rt(to).receive(frame, self.now))

    def pump(self) -> None:
        """Carry every queued transmission to its next hop, until nothing is left to send."""
        while self.queue:
            sent = self.queue.pop(0)
            source = sent.source
            if self.unreachable(sent) or sent.command.next_hop not in self.by_id:
                self.carry_out(source, self.rt(source).transmit_failed(sent.command.token, self.now, "no route"))
                continue
            self.carry_out(source, self.rt(source).transmitted(sent.command.token, self.now))
            if self.lose(sent):
                continue
            self.inject(self.by_id[sent.command.next_hop], source, sent.wire)

    def send(
        self, source: str, to: str, payload: bytes, *, via: tuple[str, ...] = (),
        msg_type: MessageType = MessageType.Chat,
    ) -> str:  # fmt: skip
        relays = tuple(self.nodes[hop].id for hop in via)
        message_id, outputs = self.rt(source).send(self.nodes[to].id, payload, self.now, via=relays, msg_type=msg_type)
        self.carry_out(source, outputs)
        return message_id

    def advance(self, until: float) -> None:
        """Run every runtime's timers up to `until` (transmissions are carried at once)."""
        self.pump()
        while True:
            due = min(d for node in self.nodes.values() if (d := node.runtime.next_deadline()) is not None)
            if due > until:
                break
            self.now = max(self.now, due)
            for name, node in self.nodes.items():
                deadline = node.runtime.next_deadline()
                if deadline is not None and deadline <= self.now:
                    self.carry_out(name, node.runtime.handle_timer(self.now))
            self.pump()
        self.now = until

    # -- hand-made envelopes ----------------------------------------------------------------------

    def wall_ms(self, at_s: float | None = None) -> int:
        return int(((self.now if at_s is None else at_s) + WALL_OFFSET_S) * 1000)

    def seal(
        self,
        source: str | Identity,
        to: str | NodeId,
        msg_type: MessageType = MessageType.Chat,
        payload: bytes = b"hello",
        *,
        at_s: float | None = None,
        via: tuple[str | NodeId, ...] = (),
        ttl: int = DEFAULT_TTL,
        encrypt: bool | None = None,
        message_id: str | None = None,
    ) -> bytes:
        """An envelope signed by `source`, stamped at `at_s` (now by default), as its wire bytes."""
        identity = self.nodes[source].identity if isinstance(source, str) else source
        recipient = self.nodes[to].id if isinstance(to, str) else to
        hops = tuple((self.nodes[hop].id if isinstance(hop, str) else hop).hex for hop in via)
        sealed = seal_envelope(
            identity, recipient, msg_type, payload, now_ms=self.wall_ms(at_s), encrypt=encrypt, via=hops, ttl=ttl,
            message_id=message_id, random_bytes=self.rng.randbytes,
        )  # fmt: skip
        return sealed.wire

    def sent_by(self, name: str, purpose: object = None, msg_type: MessageType | None = None) -> list[Sent]:
        return [
            sent for sent in self.log
            if sent.source == name and purpose in (None, sent.command.purpose)
            and msg_type in (None, sent.command.msg_type)
        ]  # fmt: skip
