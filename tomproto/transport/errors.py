"""Transport errors: what a caller of the transport can be told."""

from __future__ import annotations

from tomproto.errors import TomError

__all__ = ["TransportError", "PeerAuthenticationError", "DialTimeout", "ConnectionLost", "ConnectionBusy",
           "DatagramTooLarge"]


class TransportError(TomError):
    """A peer could not be reached or a connection could not be used."""


class PeerAuthenticationError(TransportError):
    """The peer's key is not the NodeId dialled, or the dialer presented no usable key."""


class DialTimeout(TransportError):
    """No handshake completed in time."""


class ConnectionLost(TransportError):
    """The connection closed before or while it was used."""


class ConnectionBusy(TransportError):
    """Too much is already queued towards that peer; the send was refused, not queued."""


class DatagramTooLarge(TransportError):
    """A datagram that cannot fit one QUIC packet; refused, never queued (a queued one would
    block every datagram after it)."""
