"""The composition root: an identity, one transport endpoint, and the envelope layer between them.

Rules it enforces:
- every envelope received is opened (decode, verify, decrypt) before the application sees it;
  refusals never escape: they are counted by reason (`rejected`);
- every envelope sent is sealed here (encrypt-then-sign for Chat), so nothing unsigned leaves;
- counts envelopes by direction and type (the later `tomproto_envelopes_total`);
- everything it observes is published on `events` to any number of subscribers: each opened
  envelope as a `ReceivedMessage` (with its peer, path and arrival time), and the transport's
  `PeerConnected`, `PeerDisconnected` and `PathChanged`. Nothing above the node holds a
  connection: a `ReceivedMessage` names its connection by a number the node answers on.
Routing, ACKs and resends (roadmap item 1) will sit between this and the transport.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from tomproto.core.paths import Address, Path, Transport
from tomproto.core.transport_events import Received, TransportEvent
from tomproto.errors import DatagramTooLarge
from tomproto.events import EventHub
from tomproto.identity import Identity, NodeId
from tomproto.sealing import EnvelopeRejected, OpenedEnvelope, SealedEnvelope, open_envelope, seal_envelope
from tomproto.transport import MAX_DATAGRAM_BYTES, Endpoint, Sent, TransportSettings
from tomproto.wire.envelope import MessageType

__all__ = ["Node", "ReceivedMessage", "MAX_DATAGRAM_ENVELOPE_BYTES", "DATAGRAM_SEAL_ATTEMPTS"]

MAX_DATAGRAM_ENVELOPE_BYTES = MAX_DATAGRAM_BYTES  # a datagram carries one envelope
# The wire size of a sealed envelope varies from seal to seal (bytes travel as integer arrays, in
# which values of 128 or more take two bytes), and each seal draws a new ephemeral key and nonce.
DATAGRAM_SEAL_ATTEMPTS = 16


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """An opened envelope, with where it came from and when."""

    opened: OpenedEnvelope
    peer: NodeId  # the authenticated peer it came from (the transport's, not the envelope's claim)
    connection: int  # the connection it came on: `Node.reply` answers there
    transport: Transport
    path: Path  # the path its last packet came by
    received_ns: int  # time.monotonic_ns() right after opening
    arrived_ns: int  # time.monotonic_ns() when its last packet reached our socket


class Node:
    def __init__(self, identity: Identity, endpoint: Endpoint) -> None:
        self.identity = identity
        self.endpoint = endpoint
        self.events = EventHub()
        self.rejected: Counter[str] = Counter()
        self.envelopes: Counter[tuple[str, str]] = Counter()
        endpoint.on_delivery = self._received
        endpoint.on_event = self._transport_event

    @classmethod
    async def start(
        cls,
        identity: Identity,
        host: str,
        port: int,
        *,
        settings: TransportSettings | None = None,
        relay: Address | None = None,
    ) -> Node:
        """Bind, and register with `relay` when given (TransportError if that fails)."""
        endpoint = await Endpoint.open(identity, host, port, settings, relay=relay)
        return cls(identity, endpoint)

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    def seal(self, peer: NodeId, msg_type: MessageType, payload: bytes) -> SealedEnvelope:
        return seal_envelope(self.identity, peer, msg_type, payload, now_ms=time.time_ns() // 1_000_000)

    def seal_datagram(self, peer: NodeId, msg_type: MessageType, payload: bytes) -> SealedEnvelope:
        """A sealed envelope that fits one datagram: sealed again (a new draw of its size) while
        it does not, up to DATAGRAM_SEAL_ATTEMPTS times; then DatagramTooLarge."""
        for _ in range(DATAGRAM_SEAL_ATTEMPTS):
            sealed = self.seal(peer, msg_type, payload)
            if len(sealed.wire) <= MAX_DATAGRAM_ENVELOPE_BYTES:
                return sealed
        raise DatagramTooLarge(
            f"a {len(payload)}-byte payload sealed to {len(sealed.wire)} bytes, more than a datagram carries "
            f"({MAX_DATAGRAM_ENVELOPE_BYTES}), {DATAGRAM_SEAL_ATTEMPTS} times"
        )

    async def send(
        self,
        peer: NodeId,
        sealed: SealedEnvelope,
        *,
        address: Address | None = None,
        transport: Transport = Transport.stream,
    ) -> Sent:
        """Send a sealed envelope, dialling `address` if there is no connection to `peer`."""
        if transport is Transport.datagram:
            sent = await self.endpoint.send_datagram(peer, sealed.wire, address)
        else:
            sent = await self.endpoint.send_frame(peer, sealed.wire, address)
        self.envelopes["out", sealed.envelope.msg_type.value] += 1
        return sent

    def reply(self, message: ReceivedMessage, sealed: SealedEnvelope) -> Sent:
        """Answer on the connection and transport the message came by (no dialling, no waiting:
        ConnectionBusy when too many answers to that peer are still open)."""
        sent = self.endpoint.reply(message.connection, sealed.wire, message.transport)
        self.envelopes["out", sealed.envelope.msg_type.value] += 1
        return sent

    def _received(self, delivery: Received) -> None:
        try:
            opened = open_envelope(self.identity, delivery.data)
        except EnvelopeRejected as refused:
            self.rejected[refused.reason.value] += 1
            return
        received_ns = time.monotonic_ns()
        self.envelopes["in", opened.envelope.msg_type.value] += 1
        self.events.publish(ReceivedMessage(
            opened, delivery.peer, delivery.connection, delivery.transport, delivery.path, received_ns,
            round(delivery.arrived_at_s * 1e9),
        ))  # fmt: skip

    def _transport_event(self, event: TransportEvent) -> None:
        self.events.publish(event)

    async def close(self) -> None:
        await self.endpoint.close()
