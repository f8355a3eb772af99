"""The node's transport, sans-IO: every QUIC connection on one socket, and non-QUIC packets.

Rules it enforces:
- packets are told apart by their first byte: QUIC (long or short header) goes to the connection
  found by destination connection ID; an Initial of at least 1200 bytes from an unknown ID goes to
  the admission policy (admission.py), which accepts it, answers with a Retry (address
  validation, RFC 9000 §8.1) or drops it; anything else with both top bits clear is a control
  packet (reset notice, punch, or from the relay's address, a relay packet);
- half-open handshakes (accepted, not complete) are bounded per source, relayed ones also all
  together, and all of them in all; they time out (admission settings); a dial gives up after
  the handshake timeout;
- one usable connection per peer. When two exist (both sides dialled at once), both ends keep the
  one dialled by the lower NodeId and drain the other; a connection authenticated long after the
  existing one replaces it (the peer restarted and dialled again);
- a short-header packet for an unknown connection ID is answered by a signed reset notice
  (control.py), rate-limited, so a peer holding a stale connection redials at once;
- a punch is answered only when addressed to us, by a peer we have a connection with, and signed;
- a received frame is held (its stream stays open on our side) until the driver calls
  `release_stream`: accepted or refused with a FrameRefusal, which the sender sees as
  `FrameRefused`. Held frames take up the peer's stream credit (connection.py), so a peer cannot
  make us hold more than `max_peer_streams` of them per connection.

Driving it (as aioquic's QuicConnection is driven): feed `receive_datagram` and `handle_timer`
with the time, then send what `datagrams_to_send` returns, handle what `next_event` returns, and
call `handle_timer` again at `next_deadline`. Randomness (connection IDs excepted: aioquic draws
those itself) comes from the injected `random_bytes`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicHeader, QuicPacketType, QuicProtocolVersion, encode_quic_retry, pull_quic_header

from tomproto.core.admission import SECRET_BYTES, Action, AdmissionPolicy, Verdict
from tomproto.core.budget import TokenBucket
from tomproto.core.connection import (
    Authenticated,
    Closing,
    Connection,
    ConnectionFact,
    ConnectionIdIssued,
    ConnectionIdRetired,
    Delivered,
    PeerRefused,
    Terminated,
)
from tomproto.core.control import KIND_RESET_NOTICE, decode_reset_notice, encode_reset_notice, is_quic_packet
from tomproto.core.deadlines import Deadlines
from tomproto.core.direct_path import CallPeer, PathSwitched, SendPunch
from tomproto.core.framing import FrameRefusal
from tomproto.core.introductions import Introductions
from tomproto.core.paths import Address, Path, Transport
from tomproto.core.quic import TomQuicConnection, TransportSettings, quic_configuration
from tomproto.core.relay_link import RelayLink
from tomproto.core.transport_counters import TransportCounters
from tomproto.core.transport_events import (
    ConnectionInfo,
    DialFailed,
    DialSucceeded,
    FrameRefused,
    PathChanged,
    PeerConnected,
    PeerDisconnected,
    Received,
    RelayRegistrationFailed,
    TransportEvent,
)
from tomproto.errors import ConnectionLost, IdentityError, NoRoute, TransportError
from tomproto.identity import Identity, NodeId
from tomproto.relay import protocol as relay_wire

__all__ = ["EndpointCore", "FrameSent", "TransportCounters"]

CONNECTION_ID_BYTES = 8
SIMULTANEOUS_DIAL_WINDOW_S = 2.0
DRAIN_GRACE_S = 2.0
_MIN_INITIAL_BYTES = 1200
_SUPPORTED_VERSIONS = {QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2}
_RESET_NOTICES_PER_S = 20


@dataclass(frozen=True, slots=True)
class FrameSent:
    """Where a frame went: the path its packets take and its stream (the peer's answer, a
    `FrameRefused` or nothing, names that stream)."""

    path: Path
    stream_id: int


class EndpointCore:
    def __init__(
        self,
        identity: Identity,
        settings: TransportSettings,
        *,
        now: float,
        random_bytes: Callable[[int], bytes],
        relay_address: Address | None = None,
        candidates: Sequence[Address] = (),
        admission_secret: bytes | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.counters = TransportCounters()
        self._random_bytes = random_bytes
        self._client_configuration = quic_configuration(identity, settings, is_client=True)
        self._server_configuration = quic_configuration(identity, settings, is_client=False)
        self._connections: dict[int, Connection] = {}  # every live one, by handle: counted in O(1)
        self._handles = itertools.count(1)
        self._by_connection_id: dict[bytes, Connection] = {}
        self._by_peer: dict[NodeId, Connection] = {}
        self._dials: dict[NodeId, Connection] = {}  # dials not yet answered, by the peer dialled
        self._half_open: dict[bytes, Connection] = {}  # by admission key
        # The Retry token key lives as long as the endpoint: a restart only costs a client whose
        # Retry crossed it one more dial.
        self._admission = AdmissionPolicy(
            settings.admission, admission_secret or random_bytes(SECRET_BYTES), random_bytes, now
        )
        self.counters.admission = self._admission.decisions
        self.counters.refused_per_source = self._admission.refused_per_source
        # A spoofed flood of unknown connection IDs must not turn us into a packet source.
        self._reset_notices = TokenBucket.full(_RESET_NOTICES_PER_S, _RESET_NOTICES_PER_S, now)
        self.relay = RelayLink(identity, relay_address, candidates) if relay_address is not None else None
        self._introductions = Introductions(keep_for_s=settings.handshake_timeout_s)
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[TransportEvent] = deque()
        self._deadlines = Deadlines()  # each connection's next deadline, by handle
        self._touched: dict[int, Connection] = {}  # connections to flush before the next send
        self._touched_at = now
        self._sent_by: set[int] = set()  # connections whose packets are in the outbox
        self.last_sent_by: set[int] = set()

    # -- the driver's interface -----------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Everything to send now; `last_sent_by` then names the connections it came from."""
        self._flush_touched()
        outbox, self._outbox = self._outbox, []
        self.last_sent_by, self._sent_by = self._sent_by, set()
        return outbox

    def next_event(self) -> TransportEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        """The earliest time `handle_timer` is due. Builds the packets of connections touched
        since the last `datagrams_to_send` first (sending moves QUIC's own timers): they wait in
        the outbox for the next `datagrams_to_send`."""
        self._flush_touched()
        earliest = self._deadlines.earliest()
        for other in (self._admission.next_deadline(), None if self.relay is None else self.relay.next_deadline()):
            if other is not None and (earliest is None or other < earliest):
                earliest = other
        return earliest

    def handle_timer(self, now: float) -> None:
        for handle in self._deadlines.pop_due(now):
            connection = self._connections[handle]
            self._apply(connection, connection.handle_timer(now, relay_available=self.relay_registered), now)
        self._sweep_half_open(now)
        if self.relay is not None:
            self.relay.handle_timer(now)
            self._drain_relay(now)

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.counters.datagrams_received += 1
        self.counters.bytes_received += len(data)
        if is_quic_packet(data):
            self._quic_received(data, source, None, now)
        else:
            self._control_received(data, source, None, now)

    def send_failed(self) -> None:
        """The driver could not hand a packet to the socket."""
        self.counters.send_errors += 1

    # -- the relay ------------------------------------------------------------------------------

    @property
    def relay_address(self) -> Address | None:
        return None if self.relay is None else self.relay.address

    @property
    def relay_registered(self) -> bool:
        return self.relay is not None and self.relay.registered

    def register_with_relay(self, now: float) -> None:
        """Register (or register again); RelayRegistered or RelayRegistrationFailed follows."""
        if self.relay is None:
            raise NoRoute("no relay configured")
        self.relay.start(now)
        self._drain_relay(now)

    def set_candidates(self, candidates: Sequence[Address]) -> None:
        if self.relay is not None:
            self.relay.set_candidates(candidates)

    def _drain_relay(self, now: float) -> None:
        relay = self.relay
        assert relay is not None  # noqa: S101 - callers check
        for data in relay.datagrams_to_send():
            self._send(data, relay.address)
        for event in relay.events(now):
            if isinstance(event, RelayRegistrationFailed):
                self.counters.relay_errors += 1
            self._events.append(event)

    # -- connections ----------------------------------------------------------------------------

    def connection_to(self, peer: NodeId) -> int | None:
        """The usable connection to `peer`, if there is one."""
        connection = self._by_peer.get(peer)
        return connection.handle if connection is not None and connection.usable else None

    def connections(self) -> list[ConnectionInfo]:
        return [self.info(connection.handle) for connection in self._by_peer.values()]

    def info(self, handle: int) -> ConnectionInfo:
        connection = self._connection(handle)
        path = connection.direct_path
        return ConnectionInfo(
            handle, connection.peer, connection.dialer, connection.path, connection.handshake_s,
            path.punches_sent, path.rtt_s, path.time_to_direct_s, connection.open_streams,
        )  # fmt: skip

    def writable(self, handle: int) -> bool:
        """Whether a sender may add a stream now (back-pressure: aioquic walks every open stream
        for each packet it builds, so thousands of queued streams make sending quadratic). Only
        our own streams count: one stays open until the peer releases its frame, so a peer that
        holds frames slows our sends to it; the frames we hold for it do not stop us sending."""
        connection = self._connections.get(handle)
        return (
            connection is None
            or connection.closed
            or connection.open_send_streams < self.settings.max_open_send_streams
        )

    def open_streams(self, handle: int) -> int:
        connection = self._connections.get(handle)
        return 0 if connection is None else connection.open_streams

    def is_live(self, handle: int) -> bool:
        return handle in self._connections

    def dial(self, peer: NodeId, address: Address | None, now: float) -> int:
        """Start a handshake with `peer` at `address` (through the relay when None; it may then
        punch its way to direct). DialSucceeded or DialFailed follows."""
        pending = self._dials.get(peer)
        if pending is not None:
            return pending.handle
        if address is None and self.relay_address is None:
            raise NoRoute(f"no address for {peer.hex[:16]}… and no relay to reach it through")
        quic = TomQuicConnection(
            configuration=self._client_configuration,
            counters=self.counters.quic,
            max_peer_streams=self.settings.max_peer_streams,
        )
        connection = self._new_connection(quic, address, dialer=True, expected=peer, now=now, ids=(quic.host_cid,))
        quic.connect(connection.pseudo_address, now)
        self._dials[peer] = connection
        self._touch(connection, now)
        return connection.handle

    def send_frame(self, handle: int, data: bytes, now: float) -> FrameSent:
        """Send one envelope on its own stream; the path its packets take and the stream.
        ConnectionLost if the connection is not usable."""
        connection = self._connection(handle)
        stream_id = connection.send_frame(data)
        self.counters.frames_sent += 1
        self._touch(connection, now)
        return FrameSent(connection.path, stream_id)

    def release_stream(self, handle: int, stream_id: int, now: float, refusal: FrameRefusal | None = None) -> None:
        """The node is done with the frame `Received` on `stream_id`: accepted (None: an empty FIN
        on our direction) or refused (a RESET_STREAM whose code is `refusal`). Either lets the peer
        open another stream. Releasing a stream that is gone (connection closed, stopped by the
        peer, released already) does nothing."""
        connection = self._connections.get(handle)
        if connection is None or not connection.release(stream_id, refusal):
            return
        if refusal is not None:
            self.counters.frames_refused[refusal.name] += 1
        self._touch(connection, now)

    def send_datagram(self, handle: int, data: bytes, now: float) -> Path:
        connection = self._connection(handle)
        connection.send_datagram(data)
        self._touch(connection, now)
        return connection.path

    def close(self, now: float) -> None:
        """Close every connection, telling each peer."""
        for connection in list(self._connections.values()):
            self._apply(connection, connection.close("endpoint closing", now), now)

    def terminate_all(self, reason: str, now: float) -> None:
        """Forget every connection at once (after `close` had its chance to tell the peers)."""
        for connection in list(self._connections.values()):
            self._apply(connection, connection.terminate(reason), now)

    def _connection(self, handle: int) -> Connection:
        connection = self._connections.get(handle)
        if connection is None:
            raise ConnectionLost("the connection is gone")
        return connection

    def _new_connection(
        self,
        quic: TomQuicConnection,
        address: Address | None,
        *,
        dialer: bool,
        expected: NodeId | None,
        now: float,
        ids: tuple[bytes, ...],
    ) -> Connection:
        connection = Connection(
            next(self._handles),
            quic,
            address,
            dialer=dialer,
            expected_peer=expected,
            now=now,
            random_bytes=self._random_bytes,
            keepalive_interval_s=self.settings.keepalive_interval_s,
            give_up_after_s=self.settings.handshake_timeout_s,
            punch=self.settings.punch,
            streams_refused=self.counters.streams_refused,
            connection_ids=ids,
        )
        self._connections[connection.handle] = connection
        for connection_id in ids:
            self._by_connection_id[connection_id] = connection
        return connection

    # -- facts from a connection, and its packets ---------------------------------------------------

    def _apply(self, connection: Connection, facts: list[ConnectionFact], now: float) -> None:
        for fact in facts:
            if isinstance(fact, Delivered):
                assert connection.peer is not None  # noqa: S101 - nothing is delivered before
                if fact.transport is Transport.stream:
                    self.counters.frames_received += 1
                self._events.append(Received(connection.peer, connection.handle, fact.data, fact.transport,
                                             fact.path, fact.arrived_at_s, fact.stream_id))  # fmt: skip
            elif isinstance(fact, PeerRefused):
                assert connection.peer is not None  # noqa: S101 - refusals are read once authenticated
                self.counters.frames_refused_by_peer[fact.refusal.name] += 1
                self._events.append(FrameRefused(connection.peer, connection.handle, fact.stream_id, fact.refusal))
            elif isinstance(fact, SendPunch):
                peer = connection.peer_id_raw
                if peer is not None:
                    self._send(relay_wire.punch(relay_wire.PUNCH, self.identity, peer, fact.nonce), fact.address)
            elif isinstance(fact, PathSwitched):
                if fact.previous is not fact.current:
                    self._events.append(PathChanged(connection.peer, fact.previous, fact.current, fact.path_rtt_s,
                                                    fact.at_s, fact.time_to_direct_s))  # fmt: skip
            elif isinstance(fact, CallPeer):
                peer = connection.peer_id_raw
                if self.relay_registered and peer is not None and self.relay_address is not None:
                    self._send(relay_wire.call(peer), self.relay_address)
            elif isinstance(fact, ConnectionIdIssued):
                self._by_connection_id[fact.connection_id] = connection
            elif isinstance(fact, ConnectionIdRetired):
                if self._by_connection_id.get(fact.connection_id) is connection:
                    del self._by_connection_id[fact.connection_id]
            elif isinstance(fact, Authenticated):
                self._authenticated(connection, fact.peer, now)
            elif isinstance(fact, Closing):
                self._unusable(connection)
                self._dial_over(connection, fact.error)
            elif isinstance(fact, Terminated):
                self._terminated(connection, fact)
        self._touch(connection, now)

    def _touch(self, connection: Connection, now: float) -> None:
        """The connection may have packets to send: they are built when the driver asks for
        datagrams, after it handled the events. So an answer given while handling a delivery
        leaves in the same packet as the ACK and stream close that the delivery caused."""
        self._touched[connection.handle] = connection
        self._touched_at = now

    def _flush_touched(self) -> None:
        while self._touched:
            _, connection = self._touched.popitem()
            self._flush(connection, self._touched_at)

    def _flush(self, connection: Connection, now: float) -> None:
        """Send what QUIC has for this connection now, and note its next deadline."""
        peer = connection.peer_id_raw
        datagrams = connection.transmit(now)
        if datagrams:
            self._sent_by.add(connection.handle)
        for data, address in datagrams:
            if address is not None:
                self._send(data, address)
            elif self.relay_address is not None and peer is not None:
                self._send(relay_wire.forward(peer, data), self.relay_address)
        self._deadlines.set(connection.handle, None if connection.closed else connection.next_deadline())

    def _send(self, data: bytes, address: Address) -> None:
        self._outbox.append((data, address))
        self.counters.datagrams_sent += 1
        self.counters.bytes_sent += len(data)

    def _authenticated(self, connection: Connection, peer: NodeId, now: float) -> None:
        existing = self._by_peer.get(peer)
        kept, loser = connection, None
        if existing is not None and existing.usable and existing is not connection:
            kept = self._choose(existing, connection)
            loser = connection if kept is existing else existing
        self._by_peer[peer] = kept
        self._handshake_over(connection)
        if self._dials.get(peer) is connection:
            del self._dials[peer]
            self._events.append(DialSucceeded(peer, kept.handle))
        if loser is not None:
            loser.retire("duplicate connection", DRAIN_GRACE_S, now)
            self._touch(loser, now)
        if kept is not connection:
            return
        self._events.append(PeerConnected(peer, connection.handshake_s or 0.0, connection.path, connection.dialer))
        introduction = self._introductions.take(peer.raw, now)
        if introduction is not None and self.settings.punch:
            self._apply(connection, connection.introduced(introduction, now), now)
        else:
            self._apply(connection, connection.established(now, relay_available=self.relay_registered), now)

    def _choose(self, existing: Connection, newer: Connection) -> Connection:
        assert existing.established_at is not None and newer.established_at is not None  # noqa: S101
        if newer.established_at - existing.established_at > SIMULTANEOUS_DIAL_WINDOW_S:
            return newer  # the peer restarted and dialled again: the old one is stale

        def dialler(connection: Connection) -> bytes:
            assert connection.peer is not None  # noqa: S101 - both are authenticated
            return self.identity.node_id.raw if connection.dialer else connection.peer.raw

        return min(existing, newer, key=dialler)

    def _unusable(self, connection: Connection) -> None:
        if connection.peer is not None and self._by_peer.get(connection.peer) is connection:
            del self._by_peer[connection.peer]

    def _dial_over(self, connection: Connection, error: TransportError) -> None:
        peer = connection.expected_peer
        if connection.dialer and peer is not None and self._dials.get(peer) is connection:
            del self._dials[peer]
            self._events.append(DialFailed(peer, error))

    def _terminated(self, connection: Connection, fact: Terminated) -> None:
        self._unusable(connection)
        if connection.peer_id_raw is not None:
            self._introductions.forget(connection.peer_id_raw)
        self._dial_over(connection, ConnectionLost(fact.reason))
        self._connections.pop(connection.handle, None)
        self._deadlines.set(connection.handle, None)
        self._handshake_over(connection)
        for connection_id in connection.connection_ids:
            if self._by_connection_id.get(connection_id) is connection:
                del self._by_connection_id[connection_id]
        if fact.was_established:
            self._events.append(PeerDisconnected(connection.peer, fact.reason))

    # -- QUIC packets ---------------------------------------------------------------------------

    def _quic_received(self, data: bytes, address: Address | None, relayed_from: bytes | None, now: float) -> None:
        """A QUIC packet, from `address` directly or through the relay from `relayed_from`."""
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
        path = Path.relay if relayed_from is not None else Path.direct
        self._apply(connection, connection.receive(data, now, path), now)

    def _admit(
        self, header: QuicHeader, address: Address | None, relayed_from: bytes | None, now: float
    ) -> Connection | None:
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
        if address is None or verdict.token is None or verdict.retry_source_id is None or header.version is None:
            return  # the policy asks for Retries from direct sources, on Initials (which have a version)
        retry = encode_quic_retry(
            version=header.version,
            source_cid=verdict.retry_source_id,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=verdict.token,
        )
        self.counters.retries_sent += 1
        self._send(retry, address)

    def _accept(
        self, key: bytes, verdict: Verdict, address: Address | None, expected: NodeId | None, now: float
    ) -> Connection:
        quic = TomQuicConnection(
            configuration=self._server_configuration,
            original_destination_connection_id=verdict.original_destination_id,
            retry_source_connection_id=verdict.retry_source_id,
            counters=self.counters.quic,
            max_peer_streams=self.settings.max_peer_streams,
        )
        # `key` is the Initial's destination: the client's first choice, or our Retry's source ID.
        connection = self._new_connection(
            quic, address, dialer=False, expected=expected, now=now, ids=(key, quic.host_cid)
        )
        connection.admission_key = key
        self._half_open[key] = connection
        return connection

    def _handshake_over(self, connection: Connection) -> None:
        """Completed or gone: the connection no longer holds a half-open slot."""
        key = connection.admission_key
        if key is not None and self._half_open.get(key) is connection:
            del self._half_open[key]
            self._admission.completed(key)

    def _sweep_half_open(self, now: float) -> None:
        for key in self._admission.expired(now):
            connection = self._half_open.pop(key, None)
            if connection is not None and connection.established_at is None:
                self.counters.half_open_timeouts += 1
                # Forgotten at once, without a close: an unvalidated address may be forged, and
                # a validated or relayed dialer has given up by now (its own timeout) and redials.
                self._apply(connection, connection.terminate("handshake timed out"), now)

    def _send_reset_notice(
        self, connection_id: bytes, address: Address | None, relayed_from: bytes | None, now: float
    ) -> None:
        if not self._reset_notices.take(now):
            return
        self.counters.reset_notices_sent += 1
        notice = encode_reset_notice(self.identity, connection_id)
        if relayed_from is not None and self.relay_address is not None:
            self._send(relay_wire.forward(relayed_from, notice), self.relay_address)
        elif address is not None:
            self._send(notice, address)

    # -- control packets ------------------------------------------------------------------------

    def _control_received(self, data: bytes, address: Address | None, relayed_from: bytes | None, now: float) -> None:
        if not data:
            return
        kind = data[0]
        if kind == KIND_RESET_NOTICE:
            self._reset_notice_received(data, now)
        elif kind in (relay_wire.PUNCH, relay_wire.PUNCH_ACK) and address is not None:
            if self.settings.punch:  # without punching, neither side may validate a direct path
                self._punch_received(data, address, now)
        elif self.relay_address is not None and address == self.relay_address and kind in relay_wire.RELAY_KINDS:
            self._relay_packet_received(data, now)
        else:
            self.counters.malformed_packets += 1

    def _relay_packet_received(self, data: bytes, now: float) -> None:
        kind = data[0]
        if kind == relay_wire.RELAYED and len(data) > relay_wire.RELAY_HEADER_BYTES:
            source, payload = data[1 : relay_wire.RELAY_HEADER_BYTES], data[relay_wire.RELAY_HEADER_BYTES :]
            if is_quic_packet(payload):
                self._quic_received(payload, None, source, now)
            else:
                self._control_received(payload, None, source, now)
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
                self._apply(connection, connection.introduced(addresses, now), now)
            else:
                self._introductions.keep(peer, addresses, now)  # punched once the connection is up
        elif kind == relay_wire.UNREACHABLE:
            self.counters.relay_errors += 1
        elif self.relay is not None:
            self.relay.receive(data, now)
            self._drain_relay(now)

    def _connection_with(self, peer: bytes) -> Connection | None:
        """The live connection whose peer is (or is claimed to be, until authenticated) `peer`."""
        try:
            connection = self._by_peer.get(NodeId.from_bytes(peer))
        except IdentityError:
            return None
        if connection is not None and not connection.closed:
            return connection
        for connection in self._connections.values():
            if not connection.closed and connection.peer_id_raw == peer:
                return connection
        return None

    def _punch_received(self, data: bytes, address: Address, now: float) -> None:
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
            self._send(relay_wire.punch(relay_wire.PUNCH_ACK, self.identity, punch.sender, punch.nonce), address)
            self._apply(connection, connection.punched_by_peer(address, now), now)
        else:
            self._apply(connection, connection.punch_answered(punch.nonce, address, now), now)

    def _reset_notice_received(self, data: bytes, now: float) -> None:
        notice = decode_reset_notice(data)
        if notice is None:
            self.counters.malformed_packets += 1
            return
        # The notice names the ID the peer knew itself by: the ID we send to, not ours.
        for connection in list(self._connections.values()):
            if (
                connection.peer is not None
                and connection.peer.raw == notice.node_id_raw
                and connection.sends_to_connection_id(notice.connection_id)
                and notice.verifies()
            ):
                self.counters.reset_notices_honoured += 1
                self._apply(connection, connection.terminate("the peer lost this connection (it restarted)"), now)
