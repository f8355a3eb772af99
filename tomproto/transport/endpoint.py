"""The asyncio shell around the transport core: one UDP socket, one timer, waiting callers.

The core (tomproto/core/endpoint.py) holds every rule and every connection. This shell only:
- hands it each datagram with the time it arrived, and sends what it says to send;
- keeps one timer, at the core's earliest deadline (every handle is owned here and cancelled on
  close);
- turns the core's answers into awaitables: a dial's future, registration with the relay, a sender
  waiting while too many of its streams are open (back-pressure);
- passes deliveries to `on_delivery` and public events to `on_event`: one slot each, both owned
  by the composition root (tomproto/node.py), which fans events out to any number of subscribers;
- releases each frame once its handler returns, unless the handler returned True: it then keeps
  the frame and calls `release` when its node is done with it (until then the frame's stream
  stays open, which slows the sender: the core's back-pressure).

Time is `time.monotonic()` everywhere (the core's `now`, arrival stamps and deadlines), so that
it means the same under any event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tomproto.core.endpoint import EndpointCore
from tomproto.core.framing import FrameRefusal
from tomproto.core.paths import Address, Path, Transport, format_host_port
from tomproto.core.quic import TransportSettings
from tomproto.core.relay_registration import REGISTER_TIMEOUT_S
from tomproto.core.transport_counters import TransportCounters
from tomproto.core.transport_events import (
    ConnectionInfo,
    DialFailed,
    DialSucceeded,
    ObservedAddressChanged,
    Received,
    RelayRegistered,
    RelayRegistrationFailed,
    TransportEvent,
)
from tomproto.errors import ConnectionBusy, ConnectionLost, DialTimeout, RelayUnreachable, TransportError
from tomproto.identity import Identity, NodeId
from tomproto.transport.interfaces import candidate_addresses
from tomproto.transport.wakeup import Wakeup

__all__ = ["Endpoint", "Sent", "DeliveryHandler", "EventHandler"]

# True: the handler keeps the frame and calls `Endpoint.release` later; None: released on return.
DeliveryHandler = Callable[[Received], bool | None]
EventHandler = Callable[[TransportEvent], None]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of one send: the path its packets took, and `time.monotonic_ns()` when the
    first packet of that send was handed to the socket (None: nothing could leave yet, e.g. the
    stream waits for flow control). That instant is where the sender's stack time ends.
    `stream_id` is the frame's stream (a `FrameRefused` names it); None for a datagram."""

    path: Path
    left_ns: int | None
    stream_id: int | None = None


class Endpoint(asyncio.DatagramProtocol):
    """Owns the UDP socket and drives the transport core; use `await Endpoint.open(...)`."""

    def __init__(
        self,
        identity: Identity,
        settings: TransportSettings,
        *,
        relay: Address | None = None,
        admission_secret: bytes | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.core = EndpointCore(
            identity, settings, now=time.monotonic(), random_bytes=os.urandom, relay_address=relay,
            admission_secret=admission_secret,
        )  # fmt: skip
        self.on_delivery: DeliveryHandler | None = None
        self.on_event: EventHandler | None = None
        self.observed_address: Address | None = None  # as the relay sees us
        self._transport: asyncio.DatagramTransport | None = None
        self._wakeup = Wakeup(self._on_timer)  # at the core's earliest deadline
        self._dials: dict[NodeId, asyncio.Future[int]] = {}
        self._registration: asyncio.Future[Address] | None = None
        # Senders waiting for room on a connection, in order: woken one at a time (the one woken
        # sends, which wakes the next if room remains), never all at once to find one slot.
        self._writable: dict[int, deque[asyncio.Future[None]]] = {}
        # Sends in progress, by connection: when their first packet left (None: not yet).
        self._left_ns: dict[int, int | None] = {}
        self._dispatching = False
        self._closed = False

    @classmethod
    async def open(
        cls,
        identity: Identity,
        host: str,
        port: int,
        settings: TransportSettings | None = None,
        *,
        relay: Address | None = None,
        admission_secret: bytes | None = None,
    ) -> Endpoint:
        """Bind the socket; with `relay`, also register there (TransportError if that fails)."""
        loop = asyncio.get_running_loop()
        endpoint = cls(identity, settings or TransportSettings(), relay=relay, admission_secret=admission_secret)
        await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(host, port))
        if relay is not None:
            try:
                await endpoint.register()
            except TransportError:
                await endpoint.close()
                raise
        return endpoint

    @property
    def counters(self) -> TransportCounters:
        return self.core.counters

    @property
    def local_address(self) -> Address:
        if self._transport is None:
            raise TransportError("endpoint is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def register(self) -> Address:
        """Register with the relay (again) and return the address it sees us from."""
        self.core.set_candidates(candidate_addresses(self.local_address))
        registration = self._registration = self.loop.create_future()
        self._step(self.core.register_with_relay)
        try:
            # The core times out by itself (RelayUnreachable); this bound only guards the shell.
            return await asyncio.wait_for(asyncio.shield(registration), REGISTER_TIMEOUT_S * 2)
        except TimeoutError:
            where = format_host_port(self.core.relay_address or ("?", 0))
            raise RelayUnreachable(f"no answer from relay {where}") from None

    # -- connections ----------------------------------------------------------------------------

    def connection_to(self, peer: NodeId) -> ConnectionInfo | None:
        handle = self.core.connection_to(peer)
        return None if handle is None else self.core.info(handle)

    def connections(self) -> list[ConnectionInfo]:
        return self.core.connections()

    async def connect(self, peer: NodeId, address: Address | None, timeout_s: float | None = None) -> ConnectionInfo:
        """The usable connection to `peer`, dialling `address` if there is none (through the
        relay, at once, when `address` is None; the connection may then punch to direct)."""
        return self.core.info(await self._usable(peer, address, timeout_s))

    async def _usable(self, peer: NodeId, address: Address | None, timeout_s: float | None = None) -> int:
        if self._closed:
            raise ConnectionLost("the endpoint is closed")
        handle = self.core.connection_to(peer)
        if handle is not None:
            return handle
        timeout_s = self.settings.handshake_timeout_s if timeout_s is None else timeout_s
        pending = self._dials.get(peer)
        if pending is None:
            pending = self._dials[peer] = self.loop.create_future()
            try:
                self._step(lambda now: self.core.dial(peer, address, now))
            except TransportError:
                del self._dials[peer]
                raise
        try:
            return await asyncio.wait_for(asyncio.shield(pending), timeout_s)
        except TimeoutError:
            where = "through the relay" if address is None else f"with {format_host_port(address)}"
            raise DialTimeout(f"no handshake {where} within {timeout_s:g} s") from None

    async def send_frame(self, peer: NodeId, data: bytes, address: Address | None = None) -> Sent:
        """Send one envelope on its own stream, dialling `address` if there is no connection;
        waits while too many of our streams to that peer are open (each stays open until the peer
        released its frame). A refusal comes later, as a FrameRefused naming `Sent.stream_id`."""
        handle = await self._usable(peer, address)
        first = True
        while (first and self._writable.get(handle)) or not self.core.writable(handle):
            waiter = self.loop.create_future()
            waiters = self._writable.setdefault(handle, deque())
            if first:
                waiters.append(waiter)  # behind earlier senders
            else:
                waiters.appendleft(waiter)  # woken, but the room went: still next in line
            first = False
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_next(handle)  # pass our turn on
                raise
        return self._send(handle, data, Transport.stream)

    def send_frame_now(self, peer: NodeId, data: bytes, *, urgent: bool = False) -> Sent | None:
        """Send one envelope on the usable connection to `peer` at once, without waiting: None
        when there is no such connection or (unless `urgent`) it has too many streams open. An
        urgent frame (an acknowledgement) does not wait behind back-pressure, which it would
        otherwise deadlock; it is refused with ConnectionBusy past `max_reply_streams`."""
        handle = self.core.connection_to(peer)
        if handle is None or self._closed:
            return None
        if urgent:
            open_streams = self.core.open_streams(handle)
            if open_streams >= self.settings.max_reply_streams:
                raise ConnectionBusy(f"{open_streams} streams to that peer are still open")
        elif self._writable.get(handle) or not self.core.writable(handle):
            return None  # no room, or others wait for it first
        return self._send(handle, data, Transport.stream)

    async def send_datagram(self, peer: NodeId, data: bytes, address: Address | None = None) -> Sent:
        handle = await self._usable(peer, address)
        return self._send(handle, data, Transport.datagram)

    def reply(self, connection: int, data: bytes, transport: Transport) -> Sent:
        """Answer on `connection` (no dialling, no waiting). An answer cannot wait for
        back-pressure, so beyond `max_reply_streams` open streams it is refused with
        ConnectionBusy: a peer that does not read its answers cannot make us buffer without bound."""
        if transport is Transport.stream:
            open_streams = self.core.open_streams(connection)
            if open_streams >= self.settings.max_reply_streams:
                raise ConnectionBusy(f"{open_streams} streams to that peer are still open")
        return self._send(connection, data, transport)

    def release(self, received: Received, refusal: FrameRefusal | None = None) -> None:
        """Done with a frame its handler kept (returned True for): accepted (None) or refused
        with `refusal`, which the sender sees as FrameRefused. Nothing for a datagram, nor for a
        frame whose connection or stream is gone, nor a second time."""
        stream_id = received.stream_id
        if stream_id is not None:
            self._step(lambda now: self.core.release_stream(received.connection, stream_id, now, refusal))

    def _send(self, handle: int, data: bytes, transport: Transport) -> Sent:
        self._left_ns[handle] = None
        stream_id: int | None = None
        try:
            if transport is Transport.datagram:
                path = self._step(lambda now: self.core.send_datagram(handle, data, now))
            else:
                sent = self._step(lambda now: self.core.send_frame(handle, data, now))
                path, stream_id = sent.path, sent.stream_id
        finally:
            left_ns = self._left_ns.pop(handle, None)
        return Sent(path, left_ns, stream_id)

    # -- driving the core -----------------------------------------------------------------------

    def _step(self, action: Callable[[float], _T]) -> _T:
        try:
            return action(time.monotonic())
        finally:
            self._after()

    def _after(self) -> None:
        """Hand out the core's events, send what it has to send, and set the timer.

        Events first: an answer given while handling a delivery then leaves with the packets
        that delivery caused (its ACK, the stream's close), not in a packet of its own after
        them. A handler that sends comes back here; that inner call only sends, so the answer
        leaves at once and the outer loop hands out the next events in order."""
        core = self.core
        if not self._dispatching:
            self._dispatching = True
            try:
                while (event := core.next_event()) is not None:
                    self._dispatch(event)
            finally:
                self._dispatching = False
        transport = self._transport
        datagrams = core.datagrams_to_send()
        if datagrams:
            left_ns = time.monotonic_ns()
            for handle in core.last_sent_by:
                if handle in self._left_ns and self._left_ns[handle] is None:
                    self._left_ns[handle] = left_ns
            for data, address in datagrams:
                if transport is None or transport.is_closing():
                    core.send_failed()
                else:
                    transport.sendto(data, address)
        if self._writable:
            for handle in list(self._writable):
                if core.writable(handle):
                    self._wake_next(handle)
        self._wakeup.at(None if self._closed else core.next_deadline())

    def _wake_next(self, handle: int) -> None:
        """Wake the first sender still waiting for room on `handle`."""
        waiters = self._writable.get(handle)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if not waiters:
            self._writable.pop(handle, None)

    def _dispatch(self, event: TransportEvent) -> None:
        if isinstance(event, Received):
            kept: bool | None = None
            try:
                if self.on_delivery is not None:
                    kept = self.on_delivery(event)
            finally:
                # Released unless kept, a handler that raised included: a frame nobody will
                # release would hold one of the peer's streams for the connection's life.
                if kept is not True and event.stream_id is not None:
                    self.core.release_stream(event.connection, event.stream_id, time.monotonic())
        elif isinstance(event, DialSucceeded | DialFailed):
            dial = self._dials.pop(event.peer, None)
            if dial is not None and not dial.done():
                if isinstance(event, DialSucceeded):
                    dial.set_result(event.connection)
                else:
                    dial.set_exception(event.error)
                    dial.exception()  # retrieved: the caller may have given up waiting
        else:
            if isinstance(event, RelayRegistered | ObservedAddressChanged):
                self.observed_address = event.observed_address
            if isinstance(event, RelayRegistered | RelayRegistrationFailed):
                self._registration_over(event)
            if self.on_event is not None:
                self.on_event(event)

    def _registration_over(self, event: RelayRegistered | RelayRegistrationFailed) -> None:
        registration = self._registration
        if registration is not None and not registration.done():
            if isinstance(event, RelayRegistered):
                registration.set_result(event.observed_address)
            else:
                registration.set_exception(event.error)
                registration.exception()
        if isinstance(event, RelayRegistrationFailed) and self._transport is not None:
            # The next try (the core retries by itself once registered) offers the addresses
            # this host has then: a laptop may have changed networks meanwhile.
            self.core.set_candidates(candidate_addresses(self.local_address))

    def _on_timer(self) -> None:
        self._step(self.core.handle_timer)

    # -- the socket -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        self.core.send_failed()

    def datagram_received(self, data: bytes, address: tuple[str, int]) -> None:
        now = time.monotonic()
        try:
            self.core.receive_datagram(data, (address[0], address[1]), now)
        finally:
            self._after()

    async def close(self) -> None:
        """Close every connection (telling the peers) and the socket."""
        if self._closed:
            return
        self._step(self.core.close)
        await asyncio.sleep(0)  # let the close packets leave
        self._closed = True
        self.core.terminate_all("endpoint closed", time.monotonic())
        self._after()
        for future in [*self._dials.values(), self._registration]:
            if future is not None and not future.done():
                future.cancel()
        for waiters in self._writable.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if self._transport is not None:
            self._transport.close()
