"""One QUIC connection to one peer, sans-IO: authentication, framing, its path, its timers.

Rules it enforces:
- QUIC sees a per-connection pseudo-address that never changes; the path underneath (direct.py's
  machine) decides where packets really go, so a path change never looks like a migration to QUIC;
- the peer is authenticated by its certificate's key: a dialer refuses a key other than the NodeId
  it dialled; a listener refuses a dialer without a certificate and learns its NodeId otherwise;
  nothing is delivered from a connection before that;
- each envelope arrives on its own stream as one frame (framing.py); a bad frame resets only its
  stream; a datagram too large for one packet is refused, never queued;
- a delivered frame's stream stays open on our side (held) until the owner releases it: accepted
  (FIN) or refused (RESET_STREAM with a FrameRefusal code). aioquic lets the peer open a new stream
  only for each of its streams that finished both ways, so held frames use up the peer's stream
  credit (max_peer_streams) and QUIC itself stops a peer that ignores back-pressure; a release of
  a stream no longer held (released, stopped by the peer, connection closed) does nothing;
- a FrameRefusal on a stream we opened is reported (`PeerRefused`); other reset codes are not;
- every timer (QUIC's, the keep-alive PING, the dial's give-up time, a retired connection's grace,
  the direct path's) is a deadline here; the driver calls `handle_timer` once the earliest passed.

The connection never calls its owner: every call returns the facts the owner must act on
(`Authenticated`, `Delivered`, `Terminated`, ...) and `transmit` hands over the packets to send,
each with where it goes (an address, or None: through the relay).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aioquic.quic import events

from tomproto.core.certificates import node_id_of_certificate
from tomproto.core.direct_path import CallPeer, DirectPath, PathSwitched, SendPunch
from tomproto.core.framing import STREAM_MALFORMED, FrameError, FrameReader, FrameRefusal, frame
from tomproto.core.paths import Address, Path, Transport, format_host_port
from tomproto.core.quic import MAX_DATAGRAM_BYTES
from tomproto.errors import (
    ConnectionLost,
    DatagramTooLarge,
    DialTimeout,
    PeerAuthenticationError,
    TransportError,
)
from tomproto.identity import NodeId

if TYPE_CHECKING:
    from tomproto.core.quic import TomQuicConnection

__all__ = [
    "Connection",
    "ConnectionFact",
    "Authenticated",
    "Delivered",
    "PeerRefused",
    "Terminated",
    "ConnectionIdIssued",
    "ConnectionIdRetired",
    "Closing",
]


@dataclass(frozen=True, slots=True)
class Authenticated:
    peer: NodeId


@dataclass(frozen=True, slots=True)
class Closing:
    """The connection is no longer usable and closes (QUIC says goodbye to the peer); `error` is
    what a dial that waited for it learns (PeerAuthenticationError, DialTimeout, ConnectionLost)."""

    error: TransportError


@dataclass(frozen=True, slots=True)
class Delivered:
    """A complete frame or datagram from the authenticated peer, with how and when it came; a
    frame's `stream_id` is held until released (None for a datagram)."""

    data: bytes
    transport: Transport
    path: Path
    arrived_at_s: float
    stream_id: int | None


@dataclass(frozen=True, slots=True)
class PeerRefused:
    """The peer refused a frame we sent on `stream_id` (it reset its direction with that code)."""

    stream_id: int
    refusal: FrameRefusal


@dataclass(frozen=True, slots=True)
class Terminated:
    reason: str
    was_established: bool


@dataclass(frozen=True, slots=True)
class ConnectionIdIssued:
    connection_id: bytes


@dataclass(frozen=True, slots=True)
class ConnectionIdRetired:
    connection_id: bytes


ConnectionFact = (
    Authenticated | Closing | Delivered | PeerRefused | Terminated | ConnectionIdIssued | ConnectionIdRetired
    | SendPunch | PathSwitched | CallPeer
)  # fmt: skip


class Connection:
    """A QUIC connection with one peer; created and driven by the endpoint core."""

    def __init__(
        self,
        handle: int,
        quic: TomQuicConnection,
        remote_address: Address | None,
        *,
        dialer: bool,
        expected_peer: NodeId | None,
        now: float,
        random_bytes: Callable[[int], bytes],
        keepalive_interval_s: float,
        give_up_after_s: float,
        punch: bool,
        streams_refused: Counter[str],
        connection_ids: tuple[bytes, ...] = (),
    ) -> None:
        self.handle = handle
        self.quic = quic
        self.pseudo_address: Address = ("tom-path", handle)
        self.dialer = dialer
        self.expected_peer = expected_peer
        self.peer: NodeId | None = None
        self.direct_path = DirectPath(started_at=now, random_bytes=random_bytes, direct_address=remote_address,
                                      punch=punch)  # fmt: skip
        self.started_at = now
        self.established_at: float | None = None
        self.closed = False
        self.draining = False
        self.close_reason: str | None = None
        self.connection_ids = set(connection_ids)  # ours: the endpoint finds us by them
        # A listener's key in the endpoint's admission policy while its handshake is half-open.
        self.admission_key: bytes | None = None
        self._streams_refused = streams_refused
        self._readers: dict[int, FrameReader] = {}
        self._held: set[int] = set()  # peer streams whose frame was delivered, not yet released
        self._keepalive_interval_s = keepalive_interval_s
        self._keepalive_at: float | None = None
        # A dial gives up after its handshake timeout; an accepted handshake is the admission
        # policy's to time out (it forgets it without a packet: its source may be forged).
        self._give_up_at: float | None = now + give_up_after_s if dialer else None
        self._retire_at: float | None = None
        self._closing = False
        self._received_path = self.direct_path.path

    # -- state ----------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.established_at is not None and not self.closed and not self.draining

    @property
    def path(self) -> Path:
        return self.direct_path.path

    @property
    def remote_address(self) -> Address | None:
        return self.direct_path.address

    @property
    def peer_id_raw(self) -> bytes | None:
        """The peer's NodeId: authenticated, or the one dialled (or named by the relay) until then."""
        if self.peer is not None:
            return self.peer.raw
        return self.expected_peer.raw if self.expected_peer is not None else None

    @property
    def open_streams(self) -> int:
        return len(self.quic._streams)

    @property
    def open_send_streams(self) -> int:
        """Streams we opened that are still open (the peer's FIN has not come back). The peer's
        streams, held or not, do not count: a node holding frames from a peer must still be able
        to send to it (the peer's own credit bounds those)."""
        return sum(1 for stream_id in self.quic._streams if not self._is_peer_stream(stream_id))

    @property
    def held_streams(self) -> int:
        return len(self._held)

    @property
    def handshake_s(self) -> float | None:
        return None if self.established_at is None else self.established_at - self.started_at

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        due = [self.quic.get_timer(), self._keepalive_at, self._give_up_at, self._retire_at,
               self.direct_path.next_deadline()]  # fmt: skip
        deadlines = [deadline for deadline in due if deadline is not None]
        return min(deadlines) if deadlines else None

    def sends_to_connection_id(self, connection_id: bytes) -> bool:
        """Whether `connection_id` is one the peer issued for this connection (aioquic internals)."""
        quic = self.quic
        return quic._peer_cid.cid == connection_id or any(
            issued.cid == connection_id for issued in quic._peer_cid_available
        )

    # -- input ----------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float, path: Path) -> list[ConnectionFact]:
        """A QUIC packet for this connection that came by `path`."""
        if self.closed:
            return []
        self._received_path = path
        self.quic.receive_datagram(data, self.pseudo_address, now)
        return self._process_events(now)

    def handle_timer(self, now: float, *, relay_available: bool) -> list[ConnectionFact]:
        if self.closed:
            return []
        facts: list[ConnectionFact] = []
        if self._give_up_at is not None and now >= self._give_up_at:
            self._give_up_at = None
            facts += self.close("handshake timed out", now, DialTimeout("handshake timed out"))
        if self._retire_at is not None and now >= self._retire_at:
            self._retire_at = None
            facts += self.close(self.close_reason or "retired", now)
        timer = self.quic.get_timer()
        if timer is not None and now >= timer:
            self.quic.handle_timer(now)
            facts += self._process_events(now)
        if self._keepalive_at is not None and now >= self._keepalive_at and not self.closed:
            self.quic.send_ping(0)
            self._keepalive_at = now + self._keepalive_interval_s
        if not self.closed and self.established_at is not None:
            facts += self.direct_path.handle_timer(now, relay_available=relay_available)
        return facts

    def punch_answered(self, nonce: bytes, address: Address, now: float) -> list[ConnectionFact]:
        return list(self.direct_path.answered(nonce, address, now))

    def punched_by_peer(self, address: Address, now: float) -> list[ConnectionFact]:
        return list(self.direct_path.punched_by_peer(address, now))

    def introduced(self, candidates: tuple[Address, ...], now: float) -> list[ConnectionFact]:
        """The relay introduced the peer with its candidate addresses: punch."""
        return list(self.direct_path.start(candidates, now))

    def _process_events(self, now: float) -> list[ConnectionFact]:
        facts: list[ConnectionFact] = []
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, events.StreamDataReceived):
                facts += self._on_stream_data(event, now)
            elif isinstance(event, events.DatagramFrameReceived):
                if self.peer is not None:
                    facts.append(Delivered(event.data, Transport.datagram, self._received_path, now, None))
            elif isinstance(event, events.StreamReset):
                self._readers.pop(event.stream_id, None)
                facts += self._on_stream_reset(event)
            elif isinstance(event, events.StopSendingReceived):
                # aioquic reset our direction itself, with the peer's code: nothing left to release.
                self._held.discard(event.stream_id)
            elif isinstance(event, events.ConnectionIdIssued):
                self.connection_ids.add(event.connection_id)
                facts.append(ConnectionIdIssued(event.connection_id))
            elif isinstance(event, events.ConnectionIdRetired):
                self.connection_ids.discard(event.connection_id)
                facts.append(ConnectionIdRetired(event.connection_id))
            elif isinstance(event, events.HandshakeCompleted):
                facts += self._on_handshake_completed(now)
            elif isinstance(event, events.ConnectionTerminated):
                reason = event.reason_phrase or f"error 0x{event.error_code:x}"
                facts += self.terminate(f"connection closed: {reason}")
        return facts

    def _on_handshake_completed(self, now: float) -> list[ConnectionFact]:
        try:
            peer = node_id_of_certificate(self.quic.peer_certificate)
        except PeerAuthenticationError as error:
            return self._refuse(PeerAuthenticationError(f"peer at {self._where()} failed authentication: {error}"), now)
        if self.expected_peer is not None and peer != self.expected_peer:
            return self._refuse(
                PeerAuthenticationError(
                    f"the node at {self._where()} is {peer.hex}, not the NodeId dialled ({self.expected_peer.hex})"
                ),
                now,
            )
        self.peer = peer
        self.established_at = now
        self._give_up_at = None
        self._keepalive_at = now + self._keepalive_interval_s
        return [Authenticated(peer)]

    def established(self, now: float, *, relay_available: bool) -> list[ConnectionFact]:
        """The owner kept this connection for its peer: a relayed one starts its path's work."""
        return list(self.direct_path.established(now, relay_available=relay_available, dialer=self.dialer))

    def _on_stream_data(self, event: events.StreamDataReceived, now: float) -> list[ConnectionFact]:
        if self.peer is None:  # only authenticated peers may deliver anything
            return []
        stream_id = event.stream_id
        reader = self._readers.get(stream_id)
        if reader is None:
            if not self._is_peer_stream(stream_id):
                return []  # the peer closing its direction of a stream we opened: nothing to read
            reader = self._readers[stream_id] = FrameReader()
        result = reader.feed(event.data, event.end_stream)
        if result is None:
            if event.end_stream:  # the FIN after a frame already delivered
                self._readers.pop(stream_id, None)
            return []
        if isinstance(result, FrameError):
            self._readers.pop(stream_id, None)
            self._held.discard(stream_id)  # data past a delivered frame: the stream is refused
            self._streams_refused[result.value] += 1
            if result is not FrameError.truncated:
                self.quic.stop_stream(stream_id, STREAM_MALFORMED)
            self.quic.reset_stream(stream_id, STREAM_MALFORMED)
            return []
        if event.end_stream:  # otherwise the reader stays, to catch data past the frame
            self._readers.pop(stream_id, None)
        # Our direction stays open until the owner releases the frame (`release`).
        self._held.add(stream_id)
        return [Delivered(result, Transport.stream, self._received_path, now, stream_id)]

    def _on_stream_reset(self, event: events.StreamReset) -> list[ConnectionFact]:
        """The peer reset its direction of a stream. On a stream we opened, a FrameRefusal code
        is its answer to our frame; on its own streams it abandons a frame (a held one keeps its
        place: releasing it still finishes our direction, so aioquic can forget the stream)."""
        if self.peer is None or self._is_peer_stream(event.stream_id):
            return []
        try:
            refusal = FrameRefusal(event.error_code)
        except ValueError:
            return []  # not an answer to a frame (STREAM_MALFORMED is ours to send, not to get)
        return [PeerRefused(event.stream_id, refusal)]

    def _is_peer_stream(self, stream_id: int) -> bool:
        return bool(stream_id & 1) == self.dialer  # bit 0 is set on server-initiated streams

    # -- output ---------------------------------------------------------------------------------

    def send_frame(self, data: bytes) -> int:
        """Send `data` on a new stream of ours; its stream ID (the peer's answer comes on it)."""
        self._check_usable()
        stream_id = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(stream_id, frame(data), end_stream=True)
        return stream_id

    def release(self, stream_id: int, refusal: FrameRefusal | None) -> bool:
        """The owner is done with a held frame: close our direction of its stream with an empty
        FIN (accepted) or a RESET_STREAM carrying `refusal`. Whether anything is to be sent: a
        stream no longer held (released, stopped by the peer, connection closed) is left alone."""
        if stream_id not in self._held:
            return False
        self._held.discard(stream_id)
        stream = self.quic._streams.get(stream_id)
        if self.closed or self._closing or stream is None or stream.sender._reset_error_code is not None:
            return False
        if refusal is None:
            self.quic.send_stream_data(stream_id, b"", end_stream=True)
        else:
            self.quic.reset_stream(stream_id, int(refusal))
        return True

    def send_datagram(self, data: bytes) -> None:
        self._check_usable()
        if len(data) > MAX_DATAGRAM_BYTES:  # aioquic would keep it queued forever, and all behind it
            raise DatagramTooLarge(
                f"a datagram of {len(data)} bytes does not fit one QUIC packet ({MAX_DATAGRAM_BYTES})"
            )
        self.quic.send_datagram_frame(data)

    def transmit(self, now: float) -> list[tuple[bytes, Address | None]]:
        """The packets QUIC has to send now, each with its destination (None: the relay)."""
        destination = self.remote_address if self.path is Path.direct else None
        return [(data, destination) for data, _ in self.quic.datagrams_to_send(now)]

    def _check_usable(self) -> None:
        if not self.usable:
            raise ConnectionLost(f"connection to {self._where()} is {self.close_reason or 'not ready'}")

    # -- end ------------------------------------------------------------------------------------

    def close(self, reason: str, now: float, error: TransportError | None = None) -> list[ConnectionFact]:
        """Close gracefully: tell the peer, stop using it now, forget it when QUIC is done.
        `error` is what a dial waiting for this connection learns (ConnectionLost by default)."""
        if self.closed or self._closing:
            return []
        self._closing = True
        self.close_reason = reason
        self.draining = True
        self._held.clear()
        self._retire_at = self._keepalive_at = self._give_up_at = None
        self.direct_path.stop()
        self.quic.close(error_code=0, reason_phrase=reason)
        return [Closing(error or ConnectionLost(reason))]

    def retire(self, reason: str, grace_s: float, now: float) -> None:
        """Stop using the connection now and close it after `grace_s`, so frames in flight land
        (the owner stops using it: it no longer counts as `usable`)."""
        self.draining = True
        self.close_reason = reason
        self._retire_at = now + grace_s

    def terminate(self, reason: str) -> list[ConnectionFact]:
        """Forget the connection at once (QUIC finished, or the peer proved it lost the state)."""
        if self.closed:
            return []
        self.closed = True
        self.close_reason = self.close_reason or reason
        self._held.clear()
        self.direct_path.stop()
        return [Terminated(self.close_reason, self.established_at is not None)]

    def _refuse(self, error: PeerAuthenticationError, now: float) -> list[ConnectionFact]:
        return self.close(str(error), now, error)

    def _where(self) -> str:
        return "the relay" if self.remote_address is None else format_host_port(self.remote_address)
