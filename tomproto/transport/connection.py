"""One QUIC connection to one peer, as the endpoint drives it.

Rules it enforces:
- QUIC sees a per-connection pseudo-address that never changes; the path underneath decides where
  packets really go (today the peer's direct address; the relay path arrives with tom-relay), so a
  path change never looks like a migration to QUIC;
- the peer is authenticated by its certificate's key: a dialer refuses a key other than the NodeId
  it dialled; a listener refuses a dialer without a certificate and learns its NodeId otherwise;
  nothing is delivered from a connection before that;
- each envelope arrives on its own stream as one frame (framing.py); a bad frame resets only its
  stream.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aioquic.quic import events

from tomproto.errors import IdentityError
from tomproto.identity import NodeId
from tomproto.transport.certificates import node_id_of_certificate
from tomproto.transport.errors import ConnectionLost, DatagramTooLarge, PeerAuthenticationError, TransportError
from tomproto.transport.framing import FrameError, FrameReader, frame
from tomproto.transport.paths import DirectPath
from tomproto.transport.quic import MAX_DATAGRAM_BYTES, TomQuicConnection

if TYPE_CHECKING:
    from tomproto.transport.endpoint import Endpoint

__all__ = ["PeerConnection", "PATH_DIRECT", "PATH_RELAY"]

PATH_DIRECT = "direct"
PATH_RELAY = "relay"
_STREAM_REFUSED = 0x1  # application error code on a reset stream: the frame was refused


class PeerConnection:
    """A QUIC connection with an authenticated peer; created and owned by an Endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        quic: TomQuicConnection,
        pseudo_address: tuple[str, int],
        remote_address: tuple[str, int] | None,
        *,
        dialer: bool,
        expected_peer: NodeId | None,
        now: float,
    ) -> None:
        self.endpoint = endpoint
        self.quic = quic
        self.pseudo_address = pseudo_address
        self.remote_address = remote_address
        self.dialer = dialer
        self.expected_peer = expected_peer
        self.peer: NodeId | None = None
        # No address: the connection starts on the relay path (and may punch its way to direct).
        self.path = PATH_DIRECT if remote_address is not None else PATH_RELAY
        self.direct_path = DirectPath(self)
        self.received_path = self.path
        # time.monotonic_ns() when the latest transmit() handed its first packet to the socket:
        # where the sender's stack time ends (and the network's begins).
        self.transmitted_ns = 0
        self.started_at = now
        self.established_at: float | None = None
        self.closed = False
        self.draining = False
        self.close_reason: str | None = None
        self.connection_ids: set[bytes] = set()
        # A listener's key in the endpoint's admission policy while its handshake is half-open.
        self.admission_key: bytes | None = None
        self.ready: asyncio.Future[PeerConnection] = endpoint.loop.create_future()
        self._readers: dict[int, FrameReader] = {}
        # Back-pressure: aioquic walks every open stream for each packet it builds, so thousands of
        # queued streams make sending quadratic. Senders wait while too many are open
        # (TransportSettings.max_open_send_streams; 32 measured best for the one-way rate).
        self.writable = asyncio.Event()
        self.writable.set()
        self._timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._path_timer: asyncio.TimerHandle | None = None

    @property
    def usable(self) -> bool:
        return self.established_at is not None and not self.closed and not self.draining

    @property
    def peer_id_raw(self) -> bytes | None:
        """The peer's NodeId: authenticated, or the one dialled (or named by the relay) until then."""
        if self.peer is not None:
            return self.peer.raw
        return self.expected_peer.raw if self.expected_peer is not None else None

    @property
    def path_is_direct(self) -> bool:
        return self.path == PATH_DIRECT

    @property
    def relay_available(self) -> bool:
        relay = self.endpoint.relay
        return relay is not None and relay.registered.is_set()

    def switch_path(self, *, direct: tuple[str, int] | None, path_rtt_s: float | None) -> None:
        """Send to `direct` from now on, or through the relay when it is None. QUIC sees nothing."""
        previous = self.path
        if direct is not None:
            self.remote_address = direct
            self.path = PATH_DIRECT
        else:
            self.path = PATH_RELAY
        if previous != self.path:
            self.endpoint.on_path_changed(self, previous, path_rtt_s)

    @property
    def open_streams(self) -> int:
        return len(self.quic._streams)

    @property
    def handshake_s(self) -> float | None:
        return None if self.established_at is None else self.established_at - self.started_at

    # -- input -------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float, path: str) -> None:
        """A QUIC packet for this connection that came by `path` (what `received_path` tells
        whoever is handed a frame or datagram while it is processed)."""
        self.received_path = path
        self.quic.receive_datagram(data, self.pseudo_address, now)
        self._process_events(now)
        self.transmit()

    def _on_timer(self) -> None:
        self._timer = None
        now = self.endpoint.loop.time()
        self.quic.handle_timer(now)
        self._process_events(now)
        self.transmit()

    def _process_events(self, now: float) -> None:
        endpoint = self.endpoint
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, events.StreamDataReceived):
                self._on_stream_data(event)
            elif isinstance(event, events.DatagramFrameReceived):
                if self.peer is not None:
                    endpoint.deliver_datagram(self, event.data)
            elif isinstance(event, events.StreamReset):
                self._readers.pop(event.stream_id, None)
            elif isinstance(event, events.ConnectionIdIssued):
                self.connection_ids.add(event.connection_id)
                endpoint.register_connection_id(event.connection_id, self)
            elif isinstance(event, events.ConnectionIdRetired):
                self.connection_ids.discard(event.connection_id)
                endpoint.forget_connection_id(event.connection_id)
            elif isinstance(event, events.HandshakeCompleted):
                self._on_handshake_completed(now)
            elif isinstance(event, events.ConnectionTerminated):
                self.terminate(f"connection closed: {event.reason_phrase or 'error 0x%x' % event.error_code}")

    def _on_handshake_completed(self, now: float) -> None:
        try:
            peer = node_id_of_certificate(self.quic.peer_certificate)
        except IdentityError as error:
            self._refuse(PeerAuthenticationError(f"peer at {self._where()} failed authentication: {error}"))
            return
        if self.expected_peer is not None and peer != self.expected_peer:
            self._refuse(
                PeerAuthenticationError(
                    f"the node at {self._where()} is {peer.hex}, not the NodeId dialled "
                    f"({self.expected_peer.hex})"
                )
            )
            return
        self.peer = peer
        self.established_at = now
        self._schedule_keepalive()
        if self.endpoint.relay is not None:
            self._schedule_path_tick()
        self.endpoint.on_authenticated(self)

    def _on_stream_data(self, event: events.StreamDataReceived) -> None:
        if self.peer is None:  # only authenticated peers may deliver anything
            return
        stream_id = event.stream_id
        reader = self._readers.get(stream_id)
        if reader is None:
            if not self._is_peer_stream(stream_id):
                # The peer closing its direction of a stream we opened: nothing to read.
                return
            reader = self._readers[stream_id] = FrameReader()
        result = reader.feed(event.data, event.end_stream)
        if result is None:
            return
        if isinstance(result, FrameError):
            self._readers.pop(stream_id, None)
            self.endpoint.counters.streams_refused[result.value] += 1
            if result is not FrameError.truncated:
                self.quic.stop_stream(stream_id, _STREAM_REFUSED)
            self.quic.reset_stream(stream_id, _STREAM_REFUSED)
            return
        if event.end_stream:  # otherwise the reader stays, to catch data past the frame
            self._readers.pop(stream_id, None)
        self.quic.send_stream_data(stream_id, b"", end_stream=True)  # close our direction too
        self.endpoint.deliver_frame(self, result)

    def _is_peer_stream(self, stream_id: int) -> bool:
        # Bit 0 of a stream id is set for server-initiated streams.
        return bool(stream_id & 1) == self.dialer

    def sends_to_connection_id(self, connection_id: bytes) -> bool:
        """Whether `connection_id` is one the peer issued for this connection (aioquic internals)."""
        quic = self.quic
        return quic._peer_cid.cid == connection_id or any(
            issued.cid == connection_id for issued in quic._peer_cid_available
        )

    # -- output ------------------------------------------------------------------------------

    def send_frame(self, data: bytes) -> None:
        if not self.usable:
            raise ConnectionLost(f"connection to {self._where()} is {self.close_reason or 'not ready'}")
        stream_id = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(stream_id, frame(data), end_stream=True)
        self.endpoint.counters.frames_sent += 1
        self.transmit()

    def send_datagram(self, data: bytes) -> None:
        if not self.usable:
            raise ConnectionLost(f"connection to {self._where()} is {self.close_reason or 'not ready'}")
        if len(data) > MAX_DATAGRAM_BYTES:  # aioquic would keep it queued forever, and all behind it
            raise DatagramTooLarge(f"a datagram of {len(data)} bytes does not fit one QUIC packet ({MAX_DATAGRAM_BYTES})")
        self.quic.send_datagram_frame(data)
        self.transmit()

    def transmit(self) -> None:
        endpoint = self.endpoint
        now = endpoint.loop.time()
        datagrams = self.quic.datagrams_to_send(now)
        if datagrams:
            self.transmitted_ns = time.monotonic_ns()
        if self.path == PATH_DIRECT and self.remote_address is not None:
            for data, _ in datagrams:
                endpoint.send_packet(data, self.remote_address)
        elif endpoint.relay is not None and self.peer_id_raw is not None:
            for data, _ in datagrams:
                endpoint.relay.forward(self.peer_id_raw, data)
        if self.open_streams < endpoint.settings.max_open_send_streams:
            self.writable.set()
        else:
            self.writable.clear()
        deadline = self.quic.get_timer()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = endpoint.loop.call_at(deadline, self._on_timer)

    def _schedule_path_tick(self) -> None:
        self._path_timer = self.endpoint.loop.call_later(1.0, self._path_tick)

    def _path_tick(self) -> None:
        if self.closed:
            return
        self.direct_path.tick()
        self._schedule_path_tick()

    def _schedule_keepalive(self) -> None:
        interval = self.endpoint.settings.keepalive_interval_s
        self._keepalive = self.endpoint.loop.call_later(interval, self._send_keepalive)

    def _send_keepalive(self) -> None:
        if self.closed:
            return
        self.quic.send_ping(0)
        self.transmit()
        self._schedule_keepalive()

    # -- end ---------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Close gracefully: tell the peer, stop using it now, forget it when QUIC is done."""
        if self.closed:
            return
        self.close_reason = reason
        self.draining = True
        self.quic.close(error_code=0, reason_phrase=reason)
        self.transmit()
        self.endpoint.on_unusable(self)
        self._fail_ready(ConnectionLost(reason))

    def retire(self, reason: str, grace_s: float) -> None:
        """Stop using the connection now and close it after `grace_s`, so frames in flight land."""
        self.draining = True
        self.endpoint.on_unusable(self)
        self.endpoint.loop.call_later(grace_s, self.close, reason)

    def terminate(self, reason: str) -> None:
        """Forget the connection at once (QUIC finished, or the peer proved it lost the state)."""
        if self.closed:
            return
        self.closed = True
        self.writable.set()  # wake waiting senders: they find the connection gone
        self.close_reason = self.close_reason or reason
        for handle in (self._timer, self._keepalive, self._path_timer):
            if handle is not None:
                handle.cancel()
        self.endpoint.on_terminated(self)
        self._fail_ready(ConnectionLost(reason))

    def _refuse(self, error: TransportError) -> None:
        self._fail_ready(error)
        self.close(str(error))

    def _fail_ready(self, error: TransportError) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # mark retrieved: nobody may be waiting on a listener's side

    def _where(self) -> str:
        if self.remote_address is None:
            return "the relay"
        host, port = self.remote_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
