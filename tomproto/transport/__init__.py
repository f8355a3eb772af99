"""The asyncio side of the node: one UDP socket around the sans-IO transport core."""

from tomproto.core.framing import FrameRefusal
from tomproto.core.paths import Path, Transport
from tomproto.core.quic import ALPN, MAX_DATAGRAM_BYTES, TransportSettings
from tomproto.core.transport_counters import TransportCounters
from tomproto.core.transport_events import (
    ConnectionInfo,
    FrameRefused,
    PathChanged,
    PeerConnected,
    PeerDisconnected,
    Received,
)
from tomproto.errors import (
    ConnectionBusy,
    ConnectionLost,
    DatagramTooLarge,
    DialTimeout,
    NoRoute,
    PeerAuthenticationError,
    RelayRefused,
    RelayUnreachable,
    TransportError,
)
from tomproto.transport.endpoint import Endpoint, Sent

__all__ = [
    "ALPN",
    "Path",
    "Transport",
    "Endpoint",
    "Sent",
    "ConnectionInfo",
    "Received",
    "FrameRefused",
    "FrameRefusal",
    "PeerConnected",
    "PeerDisconnected",
    "PathChanged",
    "TransportCounters",
    "TransportSettings",
    "TransportError",
    "NoRoute",
    "PeerAuthenticationError",
    "RelayRefused",
    "RelayUnreachable",
    "DialTimeout",
    "ConnectionLost",
    "ConnectionBusy",
    "DatagramTooLarge",
    "MAX_DATAGRAM_BYTES",
]
