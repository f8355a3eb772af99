"""A stand-in for the node's transport core without QUIC: one datagram per frame, for the runtime's
logic tests that run for virtual hours (a QUIC connection costs milliseconds of wall time per
virtual second; this costs microseconds).

It offers the part of `EndpointCore`'s interface the runtime's driver uses (`connection_to`,
`writable`, `dial`, `send_frame`, `next_event`, and the host's four methods) with the same events
(`DialSucceeded`, `DialFailed`, `PeerConnected`, `PeerDisconnected`, `Received`). Rules:
- a dial sends HELLO to the peer's address every `hello_every_s` until HELLO_ACK comes back, and
  fails (DialFailed, DialTimeout) after `handshake_timeout_s`; a HELLO from a peer opens the
  connection on the answering side (or finishes its own dial to that peer: one connection per
  peer, whoever dialled);
- every frame is one datagram, so the link's loss, duplication, delay and partitions apply to
  frames themselves: nothing is retransmitted, a frame is lost or arrives (once or twice);
- each side PINGs every `keepalive_s`; a connection silent for `idle_timeout_s` is lost
  (PeerDisconnected); a frame or PING from a peer with no connection is answered by RESET, which
  ends the sender's connection at once (as a QUIC stateless reset would);
- nothing is authenticated: the sender's NodeId travels in clear (this is a test network).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from tests.sim.hosts import Address
from tomproto.core.paths import Path, Transport
from tomproto.core.transport_events import (
    DialFailed,
    DialSucceeded,
    PeerConnected,
    PeerDisconnected,
    Received,
    TransportEvent,
)
from tomproto.errors import ConnectionLost, DialTimeout, NoRoute
from tomproto.identity import NodeId

__all__ = ["FrameCore", "FrameSettings"]

HELLO, HELLO_ACK, FRAME, PING, RESET = b"H", b"A", b"F", b"P", b"R"
_ID = 32


@dataclass(frozen=True, slots=True)
class FrameSettings:
    handshake_timeout_s: float = 5.0
    hello_every_s: float = 1.0
    keepalive_s: float = 10.0
    idle_timeout_s: float = 30.0


@dataclass(slots=True)
class _Link:
    handle: int
    peer: NodeId
    address: Address
    dialer: bool
    established: bool
    last_heard_s: float
    next_ping_s: float  # the next HELLO while dialling, the next PING once established
    give_up_s: float | None  # a dial's deadline


class FrameCore:
    """Frames as datagrams between nodes at known addresses (see the module's rules)."""

    def __init__(self, node_id: NodeId, settings: FrameSettings | None = None) -> None:
        self.node_id = node_id
        self.settings = settings or FrameSettings()
        self._links: dict[NodeId, _Link] = {}
        self._by_handle: dict[int, _Link] = {}
        self._handles = itertools.count(1)
        self._events: deque[TransportEvent] = deque()
        self._outbox: list[tuple[bytes, Address]] = []
        self.frames_sent = 0
        self.frames_received = 0
        self.frames_unconnected = 0  # arrived from a peer with no connection: answered by RESET

    # -- what the driver calls --------------------------------------------------------------------

    def connection_to(self, peer: NodeId) -> int | None:
        link = self._links.get(peer)
        return link.handle if link is not None and link.established else None

    def writable(self, handle: int) -> bool:
        return True  # no stream limit: a frame is a datagram

    def dial(self, peer: NodeId, address: Address | None, now: float) -> int:
        link = self._links.get(peer)
        if link is not None:
            return link.handle
        if address is None:
            raise NoRoute(f"no address for {peer.hex[:16]}… on the frame network")
        settings = self.settings
        link = _Link(next(self._handles), peer, address, True, False, now, now + settings.hello_every_s,
                     now + settings.handshake_timeout_s)  # fmt: skip
        self._add(link)
        self._send(HELLO, peer.raw, address)
        return link.handle

    def send_frame(self, handle: int, data: bytes, now: float) -> Path:
        link = self._by_handle.get(handle)
        if link is None or not link.established:
            raise ConnectionLost("the connection is gone")
        self.frames_sent += 1
        self._send(FRAME, data, link.address)
        return Path.direct

    def next_event(self) -> TransportEvent | None:
        return self._events.popleft() if self._events else None

    # -- the host's interface ---------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        outbox, self._outbox = self._outbox, []
        return outbox

    def next_deadline(self) -> float | None:
        idle_timeout_s = self.settings.idle_timeout_s
        earliest: float | None = None
        for link in self._links.values():
            due = link.next_ping_s
            if link.established:
                due = min(due, link.last_heard_s + idle_timeout_s)
            elif link.give_up_s is not None:
                due = min(due, link.give_up_s)
            if earliest is None or due < earliest:
                earliest = due
        return earliest

    def handle_timer(self, now: float) -> None:
        settings = self.settings
        for link in list(self._links.values()):
            if link.give_up_s is not None and now >= link.give_up_s:
                self._remove(link)
                self._events.append(DialFailed(link.peer, DialTimeout("handshake timed out")))
            elif link.established and now >= link.last_heard_s + settings.idle_timeout_s:
                self._lose(link, "idle timeout")
            elif now >= link.next_ping_s:
                if link.established:
                    link.next_ping_s = now + settings.keepalive_s
                    self._send(PING, b"", link.address)
                else:
                    link.next_ping_s = now + settings.hello_every_s
                    self._send(HELLO, link.peer.raw, link.address)

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        kind, peer, body = data[:1], NodeId(data[1 : 1 + _ID]), data[1 + _ID :]
        link = self._links.get(peer)
        if kind == HELLO:
            if body != self.node_id.raw:
                return
            self._send(HELLO_ACK, b"", source)
            if link is None:
                link = _Link(next(self._handles), peer, source, False, False, now, now, None)
                self._add(link)
            self._established(link, source, now)
        elif kind == HELLO_ACK:
            if link is not None:
                self._established(link, source, now)
        elif kind == RESET:
            if link is not None and link.established:
                self._lose(link, "reset by the peer")
        elif link is None or not link.established:
            self.frames_unconnected += kind == FRAME
            self._send(RESET, b"", source)
        else:
            link.last_heard_s = now
            if kind == FRAME:
                self.frames_received += 1
                self._events.append(Received(peer, link.handle, body, Transport.stream, Path.direct, now))

    # -- inside -----------------------------------------------------------------------------------

    def _established(self, link: _Link, address: Address, now: float) -> None:
        link.last_heard_s = now
        link.address = address
        if link.established:
            return
        link.established = True
        link.give_up_s = None
        link.next_ping_s = now + self.settings.keepalive_s
        if link.dialer:
            self._events.append(DialSucceeded(link.peer, link.handle))
        self._events.append(PeerConnected(link.peer, 0.0, Path.direct, link.dialer))

    def _lose(self, link: _Link, reason: str) -> None:
        self._remove(link)
        self._events.append(PeerDisconnected(link.peer, reason))

    def _add(self, link: _Link) -> None:
        self._links[link.peer] = link
        self._by_handle[link.handle] = link

    def _remove(self, link: _Link) -> None:
        self._links.pop(link.peer, None)
        self._by_handle.pop(link.handle, None)

    def _send(self, kind: bytes, body: bytes, address: Address) -> None:
        self._outbox.append((kind + self.node_id.raw + body, address))

