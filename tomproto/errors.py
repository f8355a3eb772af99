"""The exceptions of tomproto, split by who broke the rules.

- `LocalError`: the caller misused the API or gave bad local input (a bad argument, a file that
  is not an identity, a datagram too large to send, a peer with no address and no relay).
- `RemoteError`: a peer (or the relay) sent something the protocol does not allow, or refused us.
  Code that handles network input catches it and turns it into a counted rejection; it never
  lets it escape the node.
- `ConnectionClosed`: nobody broke a rule, the way to the peer is gone or never came up (no
  handshake in time, the connection closed while it was used, no answer from the relay).

`TransportError` marks what the transport raises, whichever side broke the rules, so a caller
that only wants to know "could the message go?" catches one class.
"""

from __future__ import annotations

__all__ = [
    "TomError",
    "LocalError",
    "RemoteError",
    "ConnectionClosed",
    "DecodeError",
    "IdentityError",
    "CryptoError",
    "TransportError",
    "NoRoute",
    "DatagramTooLarge",
    "ConnectionBusy",
    "PeerAuthenticationError",
    "RelayRefused",
    "DialTimeout",
    "ConnectionLost",
    "RelayUnreachable",
    "Backpressure",
]


class TomError(Exception):
    """Base of every exception raised by tomproto."""


class LocalError(TomError):
    """The caller misused the API or gave bad local input (arguments, files)."""


class RemoteError(TomError):
    """Something received from the network breaks the protocol, or a peer refused us."""


class ConnectionClosed(TomError):
    """The way to a peer is gone or never came up; no one broke a rule."""


class DecodeError(RemoteError):
    """Bytes that are not a valid encoding of the expected wire value.

    `reason` is a short stable code (for metrics and events); the message says what was wrong.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class IdentityError(LocalError):
    """A NodeId string or an identity file that cannot be used."""


class CryptoError(RemoteError):
    """A signature that does not verify, or a ciphertext that does not open."""


class TransportError(TomError):
    """Raised by the transport: a peer could not be reached or a connection could not be used.
    Every concrete one is also a LocalError, a RemoteError or a ConnectionClosed."""


class NoRoute(TransportError, LocalError):
    """No address for the peer and no relay to reach it through."""


class DatagramTooLarge(TransportError, LocalError):
    """A datagram that cannot fit one QUIC packet; refused, never queued (a queued one would
    block every datagram after it)."""


class ConnectionBusy(TransportError, LocalError):
    """Too much is already queued towards that peer; the send was refused, not queued."""


class PeerAuthenticationError(TransportError, RemoteError):
    """The peer's key is not the NodeId dialled, or the dialer presented no usable key."""


class RelayRefused(TransportError, RemoteError):
    """The relay answered our registration with a refusal."""


class DialTimeout(TransportError, ConnectionClosed):
    """No handshake completed in time."""


class ConnectionLost(TransportError, ConnectionClosed):
    """The connection closed before or while it was used."""


class RelayUnreachable(TransportError, ConnectionClosed):
    """The relay did not answer within the registration timeout."""


class Backpressure(LocalError):
    """Too many of our messages are not yet acknowledged: wait (`Node.send_message` does) or slow
    down. Nothing was sent."""
