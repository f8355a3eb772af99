"""The node's one UDP socket: every QUIC connection (dialled and accepted) and non-QUIC packets.

Rules it enforces:
- packets are told apart by their first byte: QUIC (long or short header) goes to the connection
  found by destination connection ID; an Initial of at least 1200 bytes from an unknown ID goes to
  the admission policy (tomproto/core/admission.py), which accepts it, answers with a Retry
  (address validation, RFC 9000 §8.1) or drops it; anything else with both top bits clear is a
  control packet;
- half-open handshakes (accepted, not complete) are bounded per source (tighter while its
  address is unproven), relayed ones also all together, and all of them in all; they time out
  after `AdmissionSettings.half_open_timeout_s` (unvalidated) or `validated_half_open_timeout_s`
  (address-validated or relayed: the dialer's own timeout);
- one usable connection per peer. When two exist (both sides dialled at once), both ends keep the
  one dialled by the lower NodeId and drain the other; a connection authenticated long after the
  existing one replaces it (the peer restarted and dialled again);
- a short-header packet for an unknown connection ID is answered by a signed reset notice
  (control.py), rate-limited, so a peer holding a stale connection redials at once;
- every wait is bounded: dials time out, closing is bounded by QUIC's own timers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicHeader, QuicPacketType, QuicProtocolVersion, encode_quic_retry, pull_quic_header

from tomproto.addresses import format_host_port
from tomproto.core.admission import SECRET_BYTES, Action, AdmissionPolicy, Verdict
from tomproto.core.budget import TokenBucket
from tomproto.errors import IdentityError
from tomproto.identity import Identity, NodeId
from tomproto.relay import protocol as relay_wire
from tomproto.relay.protocol import Address
from tomproto.transport.connection import PATH_DIRECT, PATH_RELAY, PeerConnection
from tomproto.transport.control import (
    KIND_RESET_NOTICE,
    decode_reset_notice,
    encode_reset_notice,
    is_quic_packet,
)
from tomproto.transport.errors import DialTimeout, TransportError
from tomproto.transport.quic import PacketCounters, TomQuicConnection, TransportSettings, quic_configuration
from tomproto.transport.relay_client import RelayClient

__all__ = ["Endpoint", "TransportCounters", "PeerConnected", "PeerDisconnected", "PathChanged", "FrameHandler"]

CONNECTION_ID_BYTES = 8
SIMULTANEOUS_DIAL_WINDOW_S = 2.0
DRAIN_GRACE_S = 2.0
_MIN_INITIAL_BYTES = 1200
_SUPPORTED_VERSIONS = {QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2}
_RESET_NOTICES_PER_S = 20

FrameHandler = Callable[[PeerConnection, bytes], None]


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer: NodeId
    handshake_s: float
    path: str
    dialer: bool


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer: NodeId | None
    reason: str


@dataclass(frozen=True, slots=True)
class PathChanged:
    """A connection now sends by another path; `path_rtt_s` is the new path's round trip (a
    punch round trip for direct) when known. `at_s` is the event loop's monotonic time."""

    peer: NodeId | None
    previous: str
    current: str
    path_rtt_s: float | None
    at_s: float
    time_to_direct_s: float | None


@dataclass(slots=True)
class TransportCounters:
    datagrams_sent: int = 0
    datagrams_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    send_errors: int = 0
    malformed_packets: int = 0
    streams_refused: Counter[str] = field(default_factory=Counter)
    reset_notices_sent: int = 0
    reset_notices_honoured: int = 0
    connections_refused: int = 0
    relay_errors: int = 0
    punches_answered: int = 0
    punches_refused: int = 0
    # Admission of Initials from unknown connection IDs (tomproto/core/admission.py): every
    # decision by reason, Retries sent, tokens refused, refusals per source (IPv4 address, IPv6
    # /64 or relayed NodeId; the first 256 sources by name, then "other"), half-open timeouts.
    admission: Counter[str] = field(default_factory=Counter)
    retries_sent: int = 0
    tokens_refused: int = 0
    refused_per_source: Counter[str] = field(default_factory=Counter)
    half_open_timeouts: int = 0
    quic: PacketCounters = field(default_factory=PacketCounters)


class Endpoint(asyncio.DatagramProtocol):
    """Owns the UDP socket and every connection; use `await Endpoint.open(...)`."""

    def __init__(
        self,
        identity: Identity,
        settings: TransportSettings,
        *,
        on_frame: FrameHandler | None = None,
        on_datagram: FrameHandler | None = None,
        on_event: Callable[[object], None] | None = None,
        admission_secret: bytes | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.counters = TransportCounters()
        self.on_frame = on_frame
        self.on_datagram = on_datagram
        self.on_event = on_event
        # time.monotonic_ns() when the datagram being handled reached us: all it delivers is
        # delivered within datagram_received, so a handler reads its own packet's arrival here.
        self.arrival_ns = 0
        self._client_configuration = quic_configuration(identity, settings, is_client=True)
        self._server_configuration = quic_configuration(identity, settings, is_client=False)
        self._transport: asyncio.DatagramTransport | None = None
        self._by_connection_id: dict[bytes, PeerConnection] = {}
        self._connections: set[PeerConnection] = set()  # every live one: counted in O(1)
        # The Retry token key lives as long as the endpoint: a restart only costs a client whose
        # Retry crossed it one more dial.
        self._admission = AdmissionPolicy(
            settings.admission, admission_secret or os.urandom(SECRET_BYTES), os.urandom, self.loop.time()
        )
        self.counters.admission = self._admission.decisions
        self.counters.refused_per_source = self._admission.refused_per_source
        self._half_open: dict[bytes, PeerConnection] = {}  # by admission key
        self._half_open_timer: asyncio.TimerHandle | None = None
        self._by_peer: dict[NodeId, PeerConnection] = {}
        self._dials: dict[NodeId, asyncio.Future[PeerConnection]] = {}
        self._pseudo_addresses = itertools.count(1)
        # A spoofed flood of unknown connection IDs must not turn us into a packet source.
        self._reset_notices = TokenBucket.full(_RESET_NOTICES_PER_S, _RESET_NOTICES_PER_S, self.loop.time())
        self.relay: RelayClient | None = None
        self._pending_calls: dict[bytes, tuple[Address, ...]] = {}

    @classmethod
    async def open(
        cls,
        identity: Identity,
        host: str,
        port: int,
        settings: TransportSettings | None = None,
        *,
        relay: Address | None = None,
        **handlers: object,
    ) -> Endpoint:
        """Bind the socket; with `relay`, also register there (TransportError if it refuses)."""
        loop = asyncio.get_running_loop()
        endpoint = cls(identity, settings or TransportSettings(), **handlers)  # type: ignore[arg-type]
        await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(host, port))
        if relay is not None:
            endpoint.relay = RelayClient(endpoint, relay, endpoint.send_packet)
            try:
                await endpoint.relay.register()
            except TransportError:
                await endpoint.close()
                raise
        return endpoint

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise TransportError("endpoint is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    def connection_to(self, peer: NodeId) -> PeerConnection | None:
        connection = self._by_peer.get(peer)
        return connection if connection is not None and connection.usable else None

    def connections(self) -> list[PeerConnection]:
        return list(self._by_peer.values())

    # -- dialling and sending ---------------------------------------------------------------

    async def connect(self, peer: NodeId, address: Address | None, timeout_s: float | None = None) -> PeerConnection:
        """The usable connection to `peer`, dialling `address` if there is none (through the
        relay, at once, when `address` is None; the connection may then punch to direct)."""
        existing = self.connection_to(peer)
        if existing is not None:
            return existing
        timeout_s = self.settings.handshake_timeout_s if timeout_s is None else timeout_s
        pending = self._dials.get(peer)
        if pending is None:
            pending = self._dial(peer, address)
        try:
            return await asyncio.wait_for(asyncio.shield(pending), timeout_s)
        except asyncio.TimeoutError:
            where = "through the relay" if address is None else f"with {format_host_port(address)}"
            raise DialTimeout(f"no handshake {where} within {timeout_s:g} s") from None

    def _dial(self, peer: NodeId, address: Address | None) -> asyncio.Future[PeerConnection]:
        if address is None and self.relay is None:
            raise TransportError(f"no address for {peer.hex[:16]}… and no relay to reach it through")
        now = self.loop.time()
        quic = TomQuicConnection(
            configuration=self._client_configuration,
            counters=self.counters.quic,
            max_peer_streams=self.settings.max_peer_streams,
        )
        connection = PeerConnection(
            self, quic, self._next_pseudo_address(), address, dialer=True, expected_peer=peer, now=now
        )
        self._connections.add(connection)
        self.register_connection_id(quic.host_cid, connection)
        connection.connection_ids.add(quic.host_cid)
        quic.connect(connection.pseudo_address, now)
        self._dials[peer] = connection.ready
        connection.ready.add_done_callback(lambda _: self._dials.pop(peer, None))
        # A dial nobody waits for any more must not linger: give up after the handshake timeout.
        self.loop.call_later(
            self.settings.handshake_timeout_s,
            lambda: None if connection.ready.done() else connection.close("handshake timed out"),
        )
        connection.transmit()
        return connection.ready

    async def send_frame(self, peer: NodeId, data: bytes, address: tuple[str, int] | None = None) -> PeerConnection:
        connection = await self._usable(peer, address)
        if not connection.writable.is_set():
            await connection.writable.wait()
        connection.send_frame(data)
        return connection

    async def send_datagram(self, peer: NodeId, data: bytes, address: tuple[str, int] | None = None) -> PeerConnection:
        connection = await self._usable(peer, address)
        connection.send_datagram(data)
        return connection

    async def _usable(self, peer: NodeId, address: Address | None) -> PeerConnection:
        connection = self.connection_to(peer)
        if connection is not None:
            return connection
        return await self.connect(peer, address)

    # -- connection bookkeeping (called by PeerConnection) ----------------------------------

    def register_connection_id(self, connection_id: bytes, connection: PeerConnection) -> None:
        self._by_connection_id[connection_id] = connection

    def forget_connection_id(self, connection_id: bytes) -> None:
        self._by_connection_id.pop(connection_id, None)

    def on_authenticated(self, connection: PeerConnection) -> None:
        peer = connection.peer
        assert peer is not None  # noqa: S101 - set by the caller just before
        existing = self._by_peer.get(peer)
        kept, loser = connection, None
        if existing is not None and existing.usable and existing is not connection:
            kept = self._choose(existing, connection)
            loser = connection if kept is existing else existing
        self._by_peer[peer] = kept
        self._handshake_over(connection)
        if not connection.ready.done():
            connection.ready.set_result(kept)
        if loser is not None:
            loser.retire("duplicate connection", DRAIN_GRACE_S)
        if kept is connection and self.on_event is not None:
            self.on_event(PeerConnected(peer, connection.handshake_s or 0.0, connection.path, connection.dialer))
        pending = self._pending_calls.pop(peer.raw, None)
        if pending is not None:
            connection.direct_path.start(pending)
        elif kept is connection and connection.dialer and not connection.path_is_direct:
            self.call_through_relay(connection)

    def _choose(self, existing: PeerConnection, newer: PeerConnection) -> PeerConnection:
        assert existing.established_at is not None and newer.established_at is not None  # noqa: S101
        if newer.established_at - existing.established_at > SIMULTANEOUS_DIAL_WINDOW_S:
            return newer  # the peer restarted and dialled again: the old one is stale

        def dialler(connection: PeerConnection) -> bytes:
            return self.identity.node_id.raw if connection.dialer else connection.peer.raw  # type: ignore[union-attr]

        return min(existing, newer, key=dialler)

    def on_path_changed(self, connection: PeerConnection, previous: str, path_rtt_s: float | None) -> None:
        if self.on_event is not None:
            self.on_event(
                PathChanged(
                    connection.peer,
                    previous,
                    connection.path,
                    path_rtt_s,
                    self.loop.time(),
                    connection.direct_path.time_to_direct_s,
                )
            )

    def call_through_relay(self, connection: PeerConnection) -> None:
        """Ask the relay to introduce us to the connection's peer, so that both sides punch."""
        peer = connection.peer_id_raw
        if not self.settings.punch:
            return
        if self.relay is not None and self.relay.registered.is_set() and peer is not None:
            connection.direct_path.last_call_at = self.loop.time()
            self.relay.call(peer)

    def on_unusable(self, connection: PeerConnection) -> None:
        if connection.peer is not None and self._by_peer.get(connection.peer) is connection:
            del self._by_peer[connection.peer]

    def on_terminated(self, connection: PeerConnection) -> None:
        self.on_unusable(connection)
        self._connections.discard(connection)
        self._handshake_over(connection)
        for connection_id in connection.connection_ids:
            if self._by_connection_id.get(connection_id) is connection:
                del self._by_connection_id[connection_id]
        if connection.established_at is not None and self.on_event is not None:
            self.on_event(PeerDisconnected(connection.peer, connection.close_reason or "closed"))

    def deliver_frame(self, connection: PeerConnection, data: bytes) -> None:
        self.counters.frames_received += 1
        if self.on_frame is not None:
            self.on_frame(connection, data)

    def deliver_datagram(self, connection: PeerConnection, data: bytes) -> None:
        if self.on_datagram is not None:
            self.on_datagram(connection, data)

    def _next_pseudo_address(self) -> tuple[str, int]:
        return ("tom-path", next(self._pseudo_addresses))

    # -- the socket ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def send_packet(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            self.counters.send_errors += 1
            return
        self._transport.sendto(data, address)
        self.counters.datagrams_sent += 1
        self.counters.bytes_sent += len(data)

    def error_received(self, exc: Exception) -> None:
        self.counters.send_errors += 1

    def datagram_received(self, data: bytes, address: tuple[str, int]) -> None:  # type: ignore[override]
        self.arrival_ns = time.monotonic_ns()
        self.counters.datagrams_received += 1
        self.counters.bytes_received += len(data)
        address = (address[0], address[1])
        if is_quic_packet(data):
            self._quic_received(data, address, None)
        else:
            self._control_received(data, address, None)

    def _quic_received(self, data: bytes, address: Address | None, relayed_from: bytes | None) -> None:
        """A QUIC packet, from `address` directly or through the relay from `relayed_from`."""
        now = self.loop.time()
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CONNECTION_ID_BYTES)
        except Exception:  # aioquic raises ValueError and BufferReadError for garbage
            self.counters.malformed_packets += 1
            return
        connection = self._by_connection_id.get(header.destination_cid)
        if connection is None:
            if (
                header.packet_type == QuicPacketType.INITIAL
                and header.version in _SUPPORTED_VERSIONS
                and len(data) >= _MIN_INITIAL_BYTES
            ):
                connection = self._admit(header, address, relayed_from, now)
                if connection is None:
                    return
            elif header.packet_type == QuicPacketType.ONE_RTT:
                self._send_reset_notice(header.destination_cid, address, relayed_from, now)
                return
            else:
                return
        connection.receive(data, now, PATH_RELAY if relayed_from is not None else PATH_DIRECT)

    def _admit(
        self, header: QuicHeader, address: Address | None, relayed_from: bytes | None, now: float
    ) -> PeerConnection | None:
        """A new connection for this Initial, or None (a Retry was sent, or it was dropped)."""
        if len(self._connections) >= self.settings.max_connections:
            self.counters.connections_refused += 1
            return None
        expected = None
        if relayed_from is not None:
            # The relay names the sender; the handshake must then prove that very NodeId.
            try:
                expected = NodeId.from_bytes(relayed_from)
            except IdentityError:
                self.counters.malformed_packets += 1
                return None
        verdict = self._admission.initial(now, header.destination_cid, header.token, address, relayed_from)
        if verdict.action is Action.retry:
            self._send_retry(header, verdict, address)
            return None
        if verdict.action is Action.drop:
            if verdict.reason.startswith("token_"):
                self.counters.tokens_refused += 1
            return None
        return self._accept(header.destination_cid, verdict, address, expected, now)

    def _send_retry(self, header: QuicHeader, verdict: Verdict, address: Address | None) -> None:
        assert address is not None and verdict.token is not None and verdict.retry_source_id is not None  # noqa: S101
        retry = encode_quic_retry(
            version=header.version,
            source_cid=verdict.retry_source_id,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=verdict.token,
        )
        self.counters.retries_sent += 1
        self.send_packet(retry, address)

    def _accept(
        self, key: bytes, verdict: Verdict, address: Address | None, expected: NodeId | None, now: float
    ) -> PeerConnection:
        quic = TomQuicConnection(
            configuration=self._server_configuration,
            original_destination_connection_id=verdict.original_destination_id,
            retry_source_connection_id=verdict.retry_source_id,
            counters=self.counters.quic,
            max_peer_streams=self.settings.max_peer_streams,
        )
        connection = PeerConnection(
            self, quic, self._next_pseudo_address(), address, dialer=False, expected_peer=expected, now=now
        )
        self._connections.add(connection)
        # `key` is the Initial's destination: the client's first choice, or our Retry's source ID.
        for connection_id in (key, quic.host_cid):
            self.register_connection_id(connection_id, connection)
            connection.connection_ids.add(connection_id)
        connection.admission_key = key
        self._half_open[key] = connection
        self._schedule_half_open_sweep()
        return connection

    def _handshake_over(self, connection: PeerConnection) -> None:
        """Completed or gone: the connection no longer holds a half-open slot."""
        key = connection.admission_key
        if key is not None and self._half_open.get(key) is connection:
            del self._half_open[key]
            self._admission.completed(key)

    def _schedule_half_open_sweep(self) -> None:
        deadline = self._admission.next_deadline()
        timer = self._half_open_timer
        # Two timeouts: an unvalidated handshake opened now is due before a validated one opened
        # a moment ago, so a timer already set may be too late.
        if deadline is None or (timer is not None and timer.when() <= deadline):
            return
        if timer is not None:
            timer.cancel()
        self._half_open_timer = self.loop.call_at(deadline, self._sweep_half_open)

    def _sweep_half_open(self) -> None:
        self._half_open_timer = None
        for key in self._admission.expired(self.loop.time()):
            connection = self._half_open.pop(key, None)
            if connection is not None and connection.established_at is None:
                self.counters.half_open_timeouts += 1
                # Forgotten at once, without a close: an unvalidated address may be forged, and
                # a validated or relayed dialer has given up by now (its own timeout) and redials.
                connection.terminate("handshake timed out")
        self._schedule_half_open_sweep()

    def _send_reset_notice(
        self, connection_id: bytes, address: Address | None, relayed_from: bytes | None, now: float
    ) -> None:
        if not self._reset_notices.take(now):
            return
        self.counters.reset_notices_sent += 1
        notice = encode_reset_notice(self.identity, connection_id)
        if relayed_from is not None and self.relay is not None:
            self.relay.forward(relayed_from, notice)
        elif address is not None:
            self.send_packet(notice, address)

    def _control_received(self, data: bytes, address: Address | None, relayed_from: bytes | None) -> None:
        if not data:
            return
        kind = data[0]
        if kind == KIND_RESET_NOTICE:
            self._reset_notice_received(data)
        elif kind in (relay_wire.PUNCH, relay_wire.PUNCH_ACK) and address is not None:
            if self.settings.punch:  # without punching, neither side may validate a direct path
                self._punch_received(data, address)
        elif self.relay is not None and address == self.relay.relay_address and kind in relay_wire.RELAY_KINDS:
            self._relay_packet_received(data)
        else:
            self.counters.malformed_packets += 1

    def _relay_packet_received(self, data: bytes) -> None:
        kind = data[0]
        if kind == relay_wire.RELAYED and len(data) > relay_wire.RELAY_HEADER_BYTES:
            source, payload = data[1 : relay_wire.RELAY_HEADER_BYTES], data[relay_wire.RELAY_HEADER_BYTES :]
            if is_quic_packet(payload):
                self._quic_received(payload, None, source)
            else:
                self._control_received(payload, None, source)
        elif kind == relay_wire.CALL_FROM:
            if not self.settings.punch:
                return  # the peer asked to punch; we stay on the relay
            parsed = relay_wire.parse_call_from(data)
            if parsed is None:
                self.counters.malformed_packets += 1
                return
            peer, addresses = parsed
            connection = self._connection_with(peer)
            if connection is not None and connection.established_at is not None:
                connection.direct_path.start(addresses)
            elif len(self._pending_calls) < 1024:
                self._pending_calls[peer] = addresses  # punched once the connection is up
        elif kind == relay_wire.UNREACHABLE:
            self.counters.relay_errors += 1
        else:
            assert self.relay is not None  # noqa: S101 - checked by the caller
            self.relay.handle(data)

    def _connection_with(self, peer: bytes) -> PeerConnection | None:
        """The live connection whose peer is (or is claimed to be, until authenticated) `peer`."""
        for connection in self._connections:
            if not connection.closed and connection.peer_id_raw == peer:
                return connection
        return None

    def _punch_received(self, data: bytes, address: Address) -> None:
        punch = relay_wire.parse_punch(data)
        # Addressed to us, from a peer we have a connection with, and signed by it: a candidate
        # address may lead to a stranger in the same private range, or to ourselves.
        connection = None
        if punch is not None and punch.receiver == self.identity.node_id.raw:
            connection = self._connection_with(punch.sender)
        if punch is None or connection is None or connection.established_at is None or not punch.verifies():
            self.counters.punches_refused += 1
            return
        if punch.kind == relay_wire.PUNCH:
            self.counters.punches_answered += 1
            self.send_packet(relay_wire.punch(relay_wire.PUNCH_ACK, self.identity, punch.sender, punch.nonce), address)
            connection.direct_path.punched_by_peer(address)
        else:
            connection.direct_path.answered(punch.nonce, address)

    def _reset_notice_received(self, data: bytes) -> None:
        notice = decode_reset_notice(data)
        if notice is None:
            self.counters.malformed_packets += 1
            return
        # The notice names the ID the peer knew itself by: the ID we send to, not ours.
        for connection in list(self._connections):
            if (
                connection.peer is not None
                and connection.peer.raw == notice.node_id_raw
                and connection.sends_to_connection_id(notice.connection_id)
                and notice.verifies()
            ):
                self.counters.reset_notices_honoured += 1
                connection.terminate("the peer lost this connection (it restarted)")

    async def close(self) -> None:
        """Close every connection (telling the peers) and the socket."""
        if self.relay is not None:
            self.relay.close()
        for connection in list(self._connections):
            if not connection.closed:
                connection.close("endpoint closing")
        await asyncio.sleep(0)  # let the close packets leave
        for connection in list(self._connections):
            connection.terminate("endpoint closed")
        if self._half_open_timer is not None:
            self._half_open_timer.cancel()
        if self._transport is not None:
            self._transport.close()
