"""What the transport core tells its driver, as typed facts in past tense.

Public events (`PeerConnected`, `PeerDisconnected`, `PathChanged`, `RelayRegistered`,
`FrameRefused`) are what a user or a campaign observes; `Received` carries a delivery with
everything it needs (the peer, the connection it came on, the stream to release, how, by which
path and when it reached the socket), so nobody has to read the transport's state while handling
it; `DialSucceeded`/`DialFailed` and `RelayRegistrationFailed` answer the driver's own requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from tomproto.core.framing import FrameRefusal
from tomproto.core.paths import Address, Path, Transport
from tomproto.errors import TransportError
from tomproto.identity import NodeId

__all__ = [
    "PeerConnected",
    "PeerDisconnected",
    "PathChanged",
    "Received",
    "FrameRefused",
    "DialSucceeded",
    "DialFailed",
    "RelayRegistered",
    "RelayRegistrationFailed",
    "ObservedAddressChanged",
    "TransportEvent",
    "ConnectionInfo",
]


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer: NodeId
    handshake_s: float
    path: Path
    dialer: bool


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer: NodeId | None
    reason: str


@dataclass(frozen=True, slots=True)
class PathChanged:
    """A connection now sends by another path; `path_rtt_s` is the new path's round trip (a
    punch round trip for direct) when known. `at_s` is the monotonic time of the switch."""

    peer: NodeId | None
    previous: Path
    current: Path
    path_rtt_s: float | None
    at_s: float
    time_to_direct_s: float | None


@dataclass(frozen=True, slots=True)
class Received:
    """A frame or datagram from an authenticated peer. `connection` names the connection it came
    on (answers go back on it); `arrived_at_s` is when its last packet reached the socket. A
    frame's `stream_id` stays open on our side until released (`EndpointCore.release_stream`):
    the peer cannot reuse that stream credit before; None for a datagram."""

    peer: NodeId
    connection: int
    data: bytes
    transport: Transport
    path: Path
    arrived_at_s: float
    stream_id: int | None = None


@dataclass(frozen=True, slots=True)
class FrameRefused:
    """`peer` refused the frame we sent on `stream_id` of `connection` (the `stream_id` that
    sending it returned): it read the frame and said why not."""

    peer: NodeId
    connection: int
    stream_id: int
    refusal: FrameRefusal


@dataclass(frozen=True, slots=True)
class DialSucceeded:
    peer: NodeId
    connection: int


@dataclass(frozen=True, slots=True)
class DialFailed:
    peer: NodeId
    error: TransportError


@dataclass(frozen=True, slots=True)
class RelayRegistered:
    observed_address: Address


@dataclass(frozen=True, slots=True)
class RelayRegistrationFailed:
    error: TransportError


@dataclass(frozen=True, slots=True)
class ObservedAddressChanged:
    """The relay now sees us from another address (our NAT moved our mapping)."""

    observed_address: Address


TransportEvent = (
    PeerConnected | PeerDisconnected | PathChanged | Received | FrameRefused | DialSucceeded | DialFailed
    | RelayRegistered | RelayRegistrationFailed | ObservedAddressChanged
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one connection, for callers above the transport (which hold no connection)."""

    connection: int
    peer: NodeId | None
    dialer: bool
    path: Path
    handshake_s: float | None
    punches_sent: int
    direct_path_rtt_s: float | None
    time_to_direct_s: float | None
    open_streams: int
