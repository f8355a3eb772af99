"""The asyncio side of the node: one UDP socket, QUIC connections authenticated by NodeId, framing."""

from tomproto.transport.connection import PATH_DIRECT, PATH_RELAY, PeerConnection
from tomproto.transport.endpoint import Endpoint, PathChanged, PeerConnected, PeerDisconnected, TransportCounters
from tomproto.transport.errors import (
    ConnectionBusy,
    ConnectionLost,
    DatagramTooLarge,
    DialTimeout,
    PeerAuthenticationError,
    TransportError,
)
from tomproto.transport.quic import ALPN, MAX_DATAGRAM_BYTES, TransportSettings

__all__ = [
    "ALPN",
    "PATH_DIRECT",
    "PATH_RELAY",
    "Endpoint",
    "PeerConnection",
    "PeerConnected",
    "PeerDisconnected",
    "PathChanged",
    "TransportCounters",
    "TransportSettings",
    "TransportError",
    "PeerAuthenticationError",
    "DialTimeout",
    "ConnectionLost",
    "ConnectionBusy",
    "DatagramTooLarge",
    "MAX_DATAGRAM_BYTES",
]
