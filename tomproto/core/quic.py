"""aioquic configured for ToM: ALPN, mutual authentication by Ed25519 certificates, counters.

aioquic only requests a client certificate through a non-public switch
(`tls.Context._request_client_certificate`); aioquic is pinned to a minor version in pyproject.toml
and tests/integration/test_transport.py fails if the switch stops working (the listener would no
longer learn the dialer's NodeId).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from tomproto.core.admission import AdmissionSettings
from tomproto.core.certificates import node_certificate
from tomproto.identity import Identity

__all__ = [
    "ALPN",
    "MAX_DATAGRAM_BYTES",
    "TransportSettings",
    "PacketCounters",
    "TomQuicConnection",
    "quic_configuration",
]

ALPN = "tom-protocol/transport/0"
# A DATAGRAM frame must fit one QUIC packet of 1200 bytes: minus the short header (1 + 8-byte
# connection id + up to 4-byte packet number), the AEAD tag (16) and the frame header (1 + 2).
MAX_DATAGRAM_BYTES = 1200 - 13 - 16 - 3


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """Timers and the bounds on what peers can make a node buffer.

    `low_memory()` is the profile for small devices (a NAS with under 1 GB of RAM): smaller
    flow-control windows, fewer concurrent streams and connections. Each bound caps memory a
    peer can pin; none of them changes what a probe measures, only how much may be in flight.
    """

    idle_timeout_s: float = 30.0
    keepalive_interval_s: float = 10.0  # well under common UDP NAT timeouts (30 s)
    handshake_timeout_s: float = 5.0
    max_datagram_frame_bytes: int = 65536
    # What one peer may have in flight towards us: data per connection and per stream...
    max_connection_data_bytes: int = 4 * 1024 * 1024
    max_stream_data_bytes: int = 1024 * 1024 + 4
    # ...streams it may open at once (each holds a frame buffer until complete)...
    max_peer_streams: int = 128
    # ...and how many connections we keep (Initials beyond this are dropped and counted).
    max_connections: int = 1024
    # Our own sends wait while this many streams to one peer are still open (back-pressure)...
    max_open_send_streams: int = 32
    # ...and answers (which cannot wait) are dropped, and counted, beyond this many.
    max_reply_streams: int = 1024
    # Which Initials may open a connection: Retry past thresholds, half-open caps and timeout.
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    # Punch to a direct path through the relay (off: neither call nor answer punches, so the
    # connection stays on the relay path; for measuring the relay itself).
    punch: bool = True

    @classmethod
    def low_memory(cls) -> TransportSettings:
        return cls(
            max_connection_data_bytes=256 * 1024,
            max_stream_data_bytes=128 * 1024,
            max_peer_streams=16,
            max_connections=64,
            max_open_send_streams=8,
            max_reply_streams=64,
            # Half the connection slots at most may be half-open: established peers keep theirs;
            # an eighth of those per address-validated source, a quarter for all relayed ones.
            admission=AdmissionSettings(
                retry_threshold=4,
                max_unvalidated_per_source=2,
                max_half_open=32,
                max_validated_per_source=4,
                max_relayed_half_open=8,
            ),
        )


@dataclass(slots=True)
class PacketCounters:
    """QUIC packets sent and declared lost by aioquic's loss detection (path loss, not probe loss)."""

    packets_sent: int = 0
    packets_lost: int = 0


def quic_configuration(identity: Identity, settings: TransportSettings, *, is_client: bool) -> QuicConfiguration:
    certificate, private_key = node_certificate(identity)
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        verify_mode=ssl.CERT_NONE,  # the key is pinned to the NodeId after the handshake instead
        certificate=certificate,
        private_key=private_key,
        idle_timeout=settings.idle_timeout_s,
        max_datagram_frame_size=settings.max_datagram_frame_bytes,
        max_data=settings.max_connection_data_bytes,
        max_stream_data=settings.max_stream_data_bytes,
    )


class TomQuicConnection(QuicConnection):
    """A QuicConnection that asks the dialer for its certificate and counts packets."""

    def __init__(self, *, counters: PacketCounters, max_peer_streams: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counters = counters
        # Advertised in the transport parameters, which are serialised later, at _initialize.
        # `sent` too: aioquic raises the limit (MAX_STREAMS) only once `value` passes `sent`,
        # so a `sent` left at its default of 128 froze a lower cap for good: the peer could
        # open `max_peer_streams` streams in the connection's whole life, not at once.
        self._local_max_streams_bidi.value = self._local_max_streams_bidi.sent = max_peer_streams
        recovery = self._loss
        sent, lost = recovery.on_packet_sent, recovery._on_packets_lost

        def on_packet_sent(**arguments: Any) -> None:
            counters.packets_sent += 1
            sent(**arguments)

        def on_packets_lost(**arguments: Any) -> None:
            if arguments.get("congestion_event", True):  # False: a PTO expiry, not a loss
                arguments["packets"] = packets = list(arguments["packets"])
                counters.packets_lost += len(packets)
            lost(**arguments)

        recovery.on_packet_sent = on_packet_sent  # type: ignore[method-assign]
        recovery._on_packets_lost = on_packets_lost  # type: ignore[method-assign]

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            self.tls._request_client_certificate = True

    @property
    def peer_certificate(self) -> Any:
        return self.tls._peer_certificate if getattr(self, "tls", None) is not None else None
