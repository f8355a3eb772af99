"""aioquic connections as simulated hosts, for the tests that prove QUIC runs on the network.

One QuicConnection per host, ToM's configuration (tomproto.core.quic): the client dials at
attach time, the server accepts the first Initial it receives. Each host keeps the events its
connection raised, the stream data it received, and the time its handshake completed. Build
them inside `seeded_aioquic` for a run fixed by the seed: connection ids are drawn at creation.
`dial_and_send` is the whole scenario the QUIC tests and the benchmark run.
"""

from __future__ import annotations

from typing import NamedTuple

from aioquic._buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from tests.sim.hosts import Address
from tests.sim.links import Impairment
from tests.sim.nat import EIM_EIF
from tests.sim.network import SimNetwork
from tests.sim.randomness import seeded_aioquic
from tomproto.core.quic import (
    PacketCounters,
    TomQuicConnection,
    TransportSettings,
    quic_configuration,
)
from tomproto.identity import Identity

__all__ = [
    "DEFAULT_SETTINGS",
    "SERVER",
    "Capture",
    "QuicClientHost",
    "QuicHost",
    "QuicRun",
    "QuicServerHost",
    "dial_and_send",
]

SERVER: Address = ("198.51.100.1", 4433)
# (time_s, sender's address, destination, bytes) of every datagram sent.
Capture = list[tuple[float, Address, Address, bytes]]


DEFAULT_SETTINGS = TransportSettings()


class QuicHost:
    """The Host interface over one TomQuicConnection (None until a server hears an Initial)."""

    def __init__(self) -> None:
        self.connection: TomQuicConnection | None = None
        self.counters = PacketCounters()
        self.events: list[events.QuicEvent] = []
        self.received: dict[int, bytearray] = {}
        self.finished_streams: set[int] = set()
        self.handshake_completed_s: float | None = None
        self._now = 0.0

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self._now = now
        connection = self.connection or self._accept(data)
        if connection is not None:
            connection.receive_datagram(data, source, now)
            self._collect_events(connection)

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self.connection is not None:
            self.connection.handle_timer(now)
            self._collect_events(self.connection)

    def next_deadline(self) -> float | None:
        return None if self.connection is None else self.connection.get_timer()

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        if self.connection is None:
            return []
        return [(data, (address[0], address[1])) for data, address in self.connection.datagrams_to_send(self._now)]

    def send_stream(self, data: bytes, *, end_stream: bool = True) -> int:
        """Open a stream and queue `data` on it (the network sends it at the next `poll`)."""
        if self.connection is None:
            raise RuntimeError("no connection yet")
        stream_id = self.connection.get_next_available_stream_id()
        self.connection.send_stream_data(stream_id, data, end_stream=end_stream)
        return stream_id

    def _accept(self, data: bytes) -> TomQuicConnection | None:
        return None

    def _collect_events(self, connection: TomQuicConnection) -> None:
        while (event := connection.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, events.HandshakeCompleted) and self.handshake_completed_s is None:
                self.handshake_completed_s = self._now
            elif isinstance(event, events.StreamDataReceived):
                self.received.setdefault(event.stream_id, bytearray()).extend(event.data)
                if event.end_stream:
                    self.finished_streams.add(event.stream_id)


class QuicClientHost(QuicHost):
    """Dials `server` at `now` (its Initial goes out when the network attaches it)."""

    def __init__(
        self, identity: Identity, server: Address, now: float, settings: TransportSettings = DEFAULT_SETTINGS
    ) -> None:
        super().__init__()
        self._now = now
        self.connection = TomQuicConnection(
            configuration=quic_configuration(identity, settings, is_client=True), counters=self.counters
        )
        self.connection.connect(server, now)


class QuicServerHost(QuicHost):
    """Accepts the first Initial it receives; ignores anything before it."""

    def __init__(self, identity: Identity, settings: TransportSettings = DEFAULT_SETTINGS) -> None:
        super().__init__()
        self._configuration: QuicConfiguration = quic_configuration(identity, settings, is_client=False)

    def _accept(self, data: bytes) -> TomQuicConnection | None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=self._configuration.connection_id_length)
        except ValueError:
            return None
        if header.packet_type is not QuicPacketType.INITIAL:
            return None
        self.connection = TomQuicConnection(
            configuration=self._configuration,
            original_destination_connection_id=header.destination_cid,
            counters=self.counters,
        )
        return self.connection


class QuicRun(NamedTuple):
    capture: Capture
    client: QuicClientHost
    server: QuicServerHost
    network: SimNetwork


def dial_and_send(seed: int, impairment: Impairment, payload: bytes) -> QuicRun:
    """A client behind an EIM NAT dials a public server and sends `payload` on one stream; the
    run ends half a virtual second after the server has it all (the last acknowledgements).
    Everything, identities and aioquic's draws included, comes from the network's seeded Random.
    Raises VirtualTimeLimitReached if the handshake takes over 10 s or the stream over 30 s."""
    network = SimNetwork(seed, default=impairment)
    capture: Capture = []
    network.tap = lambda time_s, source, destination, data: capture.append((time_s, source, destination, data))
    with seeded_aioquic(network.rng.randbytes):
        server = QuicServerHost(Identity.from_seed(network.rng.randbytes(32)))
        network.attach(server, SERVER)
        nat = network.add_nat("203.0.113.1", EIM_EIF)
        client = QuicClientHost(Identity.from_seed(network.rng.randbytes(32)), SERVER, network.now)
        network.attach(client, ("192.168.1.2", 5000), nat=nat)
        network.run_while(lambda: client.handshake_completed_s is None or server.handshake_completed_s is None, 10.0)
        stream_id = client.send_stream(payload)
        network.poll(client)
        network.run_while(lambda: stream_id not in server.finished_streams, 30.0)
        network.run_for(0.5)
    return QuicRun(capture, client, server, network)
