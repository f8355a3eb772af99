"""The composition root: an identity, one transport endpoint, and the protocol runtime between
them. The one asyncio driver: it feeds frames, transport events and timers to the runtime
(tomproto/core/runtime.py) and carries out what it says, in order.

Rules it enforces:
- every frame is handed to the runtime, which keeps it (its stream stays open: back-pressure on
  the sender) until the message is in the application's hands or its bounded inbox, then
  releases it: accepted, or refused with a reason the sender sees;
- the application gets messages either by `await node.receive()` (the bounded inbox) or, while
  something subscribes to `ReceivedMessage` on `events`, synchronously, as soon as each is
  opened: the probe engine and the responder do, so that nothing but the stack sits between a
  reply and its measurement (a message published to subscribers is in the application's hands);
- a message of ours goes at once when its connection is up and has room, else from a task that
  dials and waits; either way its outcome goes back to the runtime (transmitted or failed), and
  the instant its first packet left is published (`EnvelopeLeft`) with its path; a send that
  waits for room longer than the delivery deadline (30 s) has failed;
- sending never grows without bound: past `max_unacknowledged` messages not yet acknowledged,
  `send_message` waits (and `send_message_nowait` raises Backpressure);
- datagrams are outside the runtime's promises: sealed, sent once, never ACKed nor resent;
- messages are published to subscribers in the order they arrived;
- once closed, the node handles nothing more, and `receive` and `send_message` raise
  ConnectionLost instead of waiting;
- everything the runtime and the transport report is published on `events` to any number of
  subscribers; counters stay readable (`counters`, `rejected`, `envelopes`);
- groups are the runtime's (tomproto/core/groups.py): each group call hands the runtime `now` and
  carries out what it says, as a send does; their facts (GroupJoined, GroupMessageReceived,
  HubPromoted...) come out on `events` like any other, stamped with the runtime's `now`
  (time.monotonic()).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass

from tomproto.core.delivery import DELIVERY_DEADLINE_S, DeliveryStatus
from tomproto.core.framing import FrameRefusal
from tomproto.core.group_events import GroupJoined
from tomproto.core.paths import Address, Path, Transport
from tomproto.core.runtime import Runtime, RuntimeCounters, RuntimeOutput, RuntimeSettings
from tomproto.core.runtime_events import (
    InboundMessage,
    MessagesWaiting,
    Purpose,
    ReleaseFrame,
    RoomToSend,
    TransmitEnvelope,
)
from tomproto.core.transport_events import FrameRefused, PeerConnected, Received, TransportEvent
from tomproto.errors import Backpressure, ConnectionLost, DatagramTooLarge, TransportError
from tomproto.events import EventHub
from tomproto.identity import Identity, NodeId
from tomproto.sealing import SealedEnvelope, seal_envelope
from tomproto.transport import MAX_DATAGRAM_BYTES, Endpoint, Sent, TransportSettings
from tomproto.transport.wakeup import Wakeup
from tomproto.wire.envelope import DEFAULT_TTL, Envelope, MessageType

__all__ = [
    "Node",
    "ReceivedMessage",
    "EnvelopeLeft",
    "MAX_DATAGRAM_ENVELOPE_BYTES",
    "DATAGRAM_SEAL_ATTEMPTS",
    "MAX_TRACKED_STREAMS",
]

MAX_DATAGRAM_ENVELOPE_BYTES = MAX_DATAGRAM_BYTES  # a datagram carries one envelope
# The wire size of a sealed envelope varies from seal to seal (bytes travel as integer arrays, in
# which values of 128 or more take two bytes), and each seal draws a new ephemeral key and nonce.
DATAGRAM_SEAL_ATTEMPTS = 16
# Streams of ours remembered so that a refusal (FrameRefused) names its message; the oldest are
# forgotten first (a refusal comes within a round trip or two of the send).
MAX_TRACKED_STREAMS = 4096


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message for the application: verified, decrypted, delivered once, with where it came
    from and when."""

    envelope: Envelope
    plaintext: bytes
    sender: NodeId  # who signed it
    peer: NodeId  # the authenticated transport peer it came from (a relay, or the sender)
    connection: int
    transport: Transport
    path: Path  # the path its last packet came by
    received_ns: int  # time.monotonic_ns() when the application got it
    arrived_ns: int  # time.monotonic_ns() when its last packet reached our socket
    from_backup: NodeId | None = None  # the holder that delivered it from a backup

    @property
    def message_id(self) -> str:
        return self.envelope.id


@dataclass(frozen=True, slots=True)
class EnvelopeLeft:
    """The first packet of one of our envelopes was handed to the socket (`left_ns`,
    time.monotonic_ns()); None when it waits for flow control. `peer` is the next hop."""

    message_id: str
    peer: NodeId
    msg_type: MessageType
    purpose: Purpose
    transport: Transport
    path: Path
    left_ns: int | None
    wire_bytes: int


class Node:
    def __init__(self, identity: Identity, endpoint: Endpoint, settings: RuntimeSettings | None = None) -> None:
        self.identity = identity
        self.endpoint = endpoint
        self.events = EventHub()
        self.runtime = Runtime(
            identity, settings or RuntimeSettings(), time.monotonic(), wall_offset_s=time.time() - time.monotonic(),
            random_bytes=os.urandom,
        )  # fmt: skip
        self.addresses: dict[NodeId, Address] = {}  # where to dial a peer (else through the relay)
        self.envelopes: Counter[tuple[str, str]] = Counter()  # (direction, type), datagrams included
        self._inbox_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self._streams: OrderedDict[tuple[int, int], tuple[str, NodeId]] = OrderedDict()
        self._wakeup = Wakeup(self._on_timer)
        self._closed = False
        self._publishing = False  # _messages_waiting is taking and publishing messages
        endpoint.on_delivery = self._received
        endpoint.on_event = self._transport_event
        self._set_timer()

    @classmethod
    async def start(
        cls,
        identity: Identity,
        host: str,
        port: int,
        *,
        settings: TransportSettings | None = None,
        relay: Address | None = None,
        runtime: RuntimeSettings | None = None,
    ) -> Node:
        """Bind, and register with `relay` when given (TransportError if that fails)."""
        endpoint = await Endpoint.open(identity, host, port, settings, relay=relay)
        return cls(identity, endpoint, runtime)

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    @property
    def counters(self) -> RuntimeCounters:
        return self.runtime.counters

    @property
    def rejected(self) -> Counter[str]:
        """Envelopes refused, by reason."""
        return self.runtime.counters.refused

    def status(self, message_id: str) -> DeliveryStatus | None:
        record = self.runtime.tracker.get(message_id)
        return None if record is None else record.status

    def grant(self, peer: NodeId, rate_per_s: float, burst: float, duration_s: float) -> bool:
        """Hold `peer` to this budget instead of the anonymous anti-spam bucket, for `duration_s`."""
        now = time.monotonic()
        return self.runtime.grant(peer, rate_per_s, burst, now + duration_s, now)

    def revoke(self, peer: NodeId) -> None:
        """End `peer`'s grant now (the campaign it was for is over)."""
        self.runtime.revoke(peer)

    # -- sending --------------------------------------------------------------------------------

    def send_message_nowait(
        self, peer: NodeId, payload: bytes, *, msg_type: MessageType = MessageType.Chat,
        via: tuple[NodeId, ...] = (), ttl: int = DEFAULT_TTL, address: Address | None = None,
        message_id: str | None = None,
    ) -> str:  # fmt: skip
        """Send a tracked, acknowledged message (encrypted when a Chat); its id. Backpressure
        when too many of ours are not yet acknowledged; ConnectionLost once the node is closed."""
        if self._closed:
            raise ConnectionLost("the node is closed")
        if address is not None:
            self.addresses[peer] = address
        message_id, outputs = self.runtime.send(
            peer, payload, time.monotonic(), msg_type=msg_type, via=via, ttl=ttl, message_id=message_id
        )
        self._carry_out(outputs)
        return message_id

    async def send_message(
        self, peer: NodeId, payload: bytes, *, msg_type: MessageType = MessageType.Chat,
        via: tuple[NodeId, ...] = (), ttl: int = DEFAULT_TTL, address: Address | None = None,
        message_id: str | None = None,
    ) -> str:  # fmt: skip
        """As `send_message_nowait`, waiting while back-pressure lasts."""
        while True:
            try:
                return self.send_message_nowait(
                    peer, payload, msg_type=msg_type, via=via, ttl=ttl, address=address, message_id=message_id
                )
            except Backpressure:
                self._room.clear()
                await self._room.wait()

    def query_backups(self, holder: NodeId, *, address: Address | None = None) -> None:
        """Ask `holder` for the messages it keeps for us (a BackupQuery naming ourselves): what a
        node that comes back does, so that it need not wait for the holder's next retry."""
        if address is not None:
            self.addresses[holder] = address
        self._carry_out(self.runtime.query_backups(holder, time.monotonic()))

    def seal(self, peer: NodeId, msg_type: MessageType, payload: bytes) -> SealedEnvelope:
        return seal_envelope(self.identity, peer, msg_type, payload, now_ms=time.time_ns() // 1_000_000)

    def seal_datagram(self, peer: NodeId, msg_type: MessageType, payload: bytes) -> SealedEnvelope:
        """A sealed envelope that fits one datagram: sealed again (a new draw of its size) while
        it does not, up to DATAGRAM_SEAL_ATTEMPTS times; then DatagramTooLarge."""
        for _ in range(DATAGRAM_SEAL_ATTEMPTS):
            sealed = self.seal(peer, msg_type, payload)
            if len(sealed.wire) <= MAX_DATAGRAM_ENVELOPE_BYTES:
                return sealed
        raise DatagramTooLarge(
            f"a {len(payload)}-byte payload sealed to {len(sealed.wire)} bytes, more than a datagram carries "
            f"({MAX_DATAGRAM_ENVELOPE_BYTES}), {DATAGRAM_SEAL_ATTEMPTS} times"
        )

    async def send_datagram(self, peer: NodeId, sealed: SealedEnvelope, *, address: Address | None = None) -> Sent:
        """Send a sealed envelope once, in a QUIC datagram: never ACKed, never resent."""
        if address is not None:
            self.addresses[peer] = address
        sent = await self.endpoint.send_datagram(peer, sealed.wire, self.addresses.get(peer))
        self.envelopes["out", sealed.envelope.msg_type.value] += 1
        return sent

    def reply_datagram(self, message: ReceivedMessage, sealed: SealedEnvelope) -> Sent:
        """Answer a datagram with a datagram on the connection it came on (no dialling)."""
        sent = self.endpoint.reply(message.connection, sealed.wire, Transport.datagram)
        self.envelopes["out", sealed.envelope.msg_type.value] += 1
        return sent

    # -- groups ---------------------------------------------------------------------------------

    def create_group(
        self, name: str, members: list[NodeId], *, username: str, hub: NodeId | None = None,
        invite_only: bool = False,
    ) -> str | None:  # fmt: skip
        """Create a group hosted here, inviting `members` (its id), or ask `hub` to host it (None:
        its id comes with the GroupJoined fact, see `wait_group_joined`)."""
        self._check_open()
        group_id, outputs = self.runtime.groups.create(
            name, username, list(members), time.monotonic(), hub=hub, invite_only=invite_only
        )
        self._carry_out(outputs)
        return group_id

    def join_group(self, group_id: str, username: str) -> None:
        """Join a group we were invited to (LocalError without an invitation)."""
        self._check_open()
        self._carry_out(self.runtime.groups.join(group_id, username, time.monotonic()))

    def send_group(self, group_id: str, text: str) -> str:
        """Send a message to a group we are a member of (its id); LocalError when we are not,
        Backpressure when too many of ours wait for the hub's acknowledgement."""
        self._check_open()
        message_id, outputs = self.runtime.groups.send(group_id, text, time.monotonic())
        self._carry_out(outputs)
        return message_id

    def leave_group(self, group_id: str) -> None:
        self._check_open()
        self._carry_out(self.runtime.groups.leave(group_id, time.monotonic()))

    def kick_from_group(self, group_id: str, target: NodeId) -> None:
        """Ask the hub to remove `target` (an Admin's right: the hub refuses anyone else)."""
        self._check_open()
        self._carry_out(self.runtime.groups.kick(group_id, target, time.monotonic()))

    def invite_to_group(self, group_id: str, target: NodeId) -> None:
        self._check_open()
        self._carry_out(self.runtime.groups.invite(group_id, target, time.monotonic()))

    @property
    def member_groups(self) -> list[str]:
        """The groups we are a member of (hosting one without being in it does not count)."""
        engine = self.runtime.groups.engine
        return [group_id for group_id, slot in engine.slots.items() if slot.member is not None]

    async def wait_group_joined(
        self, group_id: str | None = None, *, name: str | None = None, timeout_s: float = 30.0
    ) -> GroupJoined:
        """The GroupJoined fact of `group_id` (or of a group named `name`, or of any group),
        within `timeout_s` (TimeoutError). A group we are already a member of answers at once, so
        a caller need not subscribe before its call; one created on a remote hub is known by
        its name until then (call this before awaiting anything else after `create_group`)."""
        engine = self.runtime.groups.engine
        if group_id is not None:
            member = engine.member(group_id)
            if member is not None:
                info = member.info
                return GroupJoined(group_id, info.name, NodeId.parse(member.hub), len(member.roster), time.monotonic())
        joined: asyncio.Future[GroupJoined] = asyncio.get_running_loop().create_future()

        def seen(fact: GroupJoined) -> None:
            if joined.done() or (group_id is not None and fact.group_id != group_id):
                return
            if name is None or fact.name == name:
                joined.set_result(fact)

        with self.events.subscribe(seen, GroupJoined):
            async with asyncio.timeout(timeout_s):
                return await joined

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionLost("the node is closed")

    # -- receiving ------------------------------------------------------------------------------

    async def receive(self) -> ReceivedMessage:
        """The next message from the inbox, waiting for one; ConnectionLost once the node is
        closed."""
        while True:
            if self._closed:
                raise ConnectionLost("the node is closed")
            message = self._take()
            if message is not None:
                return message
            self._inbox_ready.clear()
            await self._inbox_ready.wait()

    def receive_nowait(self) -> ReceivedMessage | None:
        return self._take()

    def mark_read(self, message: ReceivedMessage) -> None:
        """Tell its sender the message was read (a ReadReceipt)."""
        inbound = InboundMessage(message.envelope, message.plaintext, _frame_of(message))
        self._carry_out(self.runtime.mark_read(inbound, time.monotonic()))

    def _take(self) -> ReceivedMessage | None:
        message, outputs = self._take_inbound()
        self._carry_out(outputs)
        return message

    def _take_inbound(self) -> tuple[ReceivedMessage | None, list[RuntimeOutput]]:
        """The oldest message in the inbox, and what taking it set in motion (not carried out)."""
        inbound, outputs = self.runtime.take_message(time.monotonic())
        return (None if inbound is None else _received_message(inbound)), outputs

    def _received(self, frame: Received) -> bool:
        if self._closed:
            return True  # the endpoint is closing: nothing more is handed to the runtime
        self._carry_out(self.runtime.receive(frame, time.monotonic()))
        return True  # the runtime releases it (ReleaseFrame), at once or once there is room

    # -- carrying out what the runtime says -----------------------------------------------------

    def _carry_out(self, outputs: list[RuntimeOutput]) -> None:
        """Carry out outputs in order. A handler that sends comes back here; its outputs go
        first (an answer leaves before the ACK of what it answers), the rest after them."""
        for output in outputs:
            if isinstance(output, TransmitEnvelope):
                self._transmit(output)
            elif isinstance(output, ReleaseFrame):
                self.endpoint.release(output.frame, output.refusal)
            elif isinstance(output, MessagesWaiting):
                self._messages_waiting()
            elif isinstance(output, RoomToSend):
                self._room.set()
            else:
                self.events.publish(output)
        self._set_timer()

    def _messages_waiting(self) -> None:
        """Publish the waiting messages in the order they arrived: each one before what taking it
        set in motion (frames that waited for room, delivered now), which the loop takes next."""
        if not self.events.wants(ReceivedMessage):
            self._inbox_ready.set()
            return
        if self._publishing:
            return  # re-entered from the loop below: it takes the new messages in turn
        self._publishing = True
        try:
            while True:
                message, outputs = self._take_inbound()
                if message is None:
                    break
                self.events.publish(message)  # a subscriber that fails is counted and logged there
                self._carry_out(outputs)
        finally:
            self._publishing = False

    def _transmit(self, command: TransmitEnvelope) -> None:
        if self._closed:
            return
        self.envelopes["out", command.msg_type.value] += 1
        try:
            sent = self.endpoint.send_frame_now(command.next_hop, command.wire, urgent=command.purpose is Purpose.ack)
        except TransportError as error:
            self._carry_out(self.runtime.transmit_failed(command.token, time.monotonic(), str(error)))
            return
        if sent is not None:
            self._left(command, sent)
            return
        task = asyncio.ensure_future(self._transmit_later(command))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _transmit_later(self, command: TransmitEnvelope) -> None:
        """Dial (at the known address, else through the relay) and wait for room, then send; a
        send that cannot leave within a delivery deadline has failed."""
        try:
            async with asyncio.timeout(DELIVERY_DEADLINE_S):
                sent = await self.endpoint.send_frame(
                    command.next_hop, command.wire, self.addresses.get(command.next_hop)
                )
        except TransportError as error:
            self._carry_out(self.runtime.transmit_failed(command.token, time.monotonic(), str(error)))
            return
        except TimeoutError:
            reason = f"no room to send within {DELIVERY_DEADLINE_S:.0f} s"
            self._carry_out(self.runtime.transmit_failed(command.token, time.monotonic(), reason))
            return
        self._left(command, sent)

    def _left(self, command: TransmitEnvelope, sent: Sent) -> None:
        if sent.stream_id is not None:
            handle = self.endpoint.core.connection_to(command.next_hop)
            if handle is not None:
                self._streams[handle, sent.stream_id] = (command.message_id, command.next_hop)
                if len(self._streams) > MAX_TRACKED_STREAMS:
                    self._streams.popitem(last=False)
        self.events.publish(EnvelopeLeft(
            command.message_id, command.next_hop, command.msg_type, command.purpose, Transport.stream, sent.path,
            sent.left_ns, len(command.wire),
        ))  # fmt: skip
        self._carry_out(self.runtime.transmitted(command.token, time.monotonic()))

    def _transport_event(self, event: TransportEvent) -> None:
        now = time.monotonic()
        if isinstance(event, PeerConnected):
            self._carry_out(self.runtime.peer_connected(event.peer, now))
        elif isinstance(event, FrameRefused):
            sent = self._streams.pop((event.connection, event.stream_id), None)
            message_id = "" if sent is None else sent[0]
            self._carry_out(self.runtime.refused_by_peer(message_id, event.peer, FrameRefusal(event.refusal), now))
        self.events.publish(event)

    # -- time -----------------------------------------------------------------------------------

    def _set_timer(self) -> None:
        """Wake at the runtime's next deadline."""
        self._wakeup.at(None if self._closed else self.runtime.next_deadline())

    def _on_timer(self) -> None:
        if self._closed:
            return
        # The wall clock may have been stepped since (NTP): envelopes are stamped with it.
        self.runtime.wall_offset_s = time.time() - time.monotonic()
        try:
            self._carry_out(self.runtime.handle_timer(time.monotonic()))
        finally:
            self._set_timer()  # re-armed even when a handler raised

    async def close(self) -> None:
        self._closed = True
        self._wakeup.cancel()
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        self._room.set()
        self._inbox_ready.set()
        await self.endpoint.close()


def _received_message(inbound: InboundMessage) -> ReceivedMessage:
    frame = inbound.frame
    envelope = inbound.envelope
    return ReceivedMessage(
        envelope, inbound.plaintext, NodeId(bytes.fromhex(envelope.sender)), frame.peer, frame.connection,
        frame.transport, frame.path, time.monotonic_ns(), round(frame.arrived_at_s * 1e9), inbound.from_backup,
    )  # fmt: skip


def _frame_of(message: ReceivedMessage) -> Received:
    return Received(
        message.peer, message.connection, b"", message.transport, message.path, message.arrived_ns / 1e9, None
    )

