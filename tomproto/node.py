"""The composition root: an identity, one transport endpoint, and the envelope layer between them.

Rules it enforces:
- every envelope received is opened (decode, verify, decrypt) before the application sees it;
  refusals never escape: they are counted by reason (`rejected`);
- every envelope sent is sealed here (encrypt-then-sign for Chat), so nothing unsigned leaves;
- counts envelopes by direction and type (the later `tomproto_envelopes_total`).
Routing, ACKs and resends (roadmap item 1) will sit between this and the transport.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tomproto.identity import Identity, NodeId
from tomproto.sealing import EnvelopeRejected, OpenedEnvelope, SealedEnvelope, open_envelope, seal_envelope
from tomproto.transport import (
    MAX_DATAGRAM_BYTES,
    ConnectionBusy,
    DatagramTooLarge,
    Endpoint,
    PeerConnection,
    TransportSettings,
)
from tomproto.wire.envelope import MessageType

__all__ = ["Node", "ReceivedMessage", "TRANSPORT_STREAM", "TRANSPORT_DATAGRAM", "MAX_DATAGRAM_ENVELOPE_BYTES",
           "DATAGRAM_SEAL_ATTEMPTS"]  # fmt: skip

TRANSPORT_STREAM = "stream"
TRANSPORT_DATAGRAM = "datagram"
MAX_DATAGRAM_ENVELOPE_BYTES = MAX_DATAGRAM_BYTES  # a datagram carries one envelope
# The wire size of a sealed envelope varies from seal to seal (bytes travel as integer arrays, in
# which values of 128 or more take two bytes), and each seal draws a new ephemeral key and nonce.
DATAGRAM_SEAL_ATTEMPTS = 16


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """An opened envelope, with where it came from. `connection` can carry the answer back."""

    opened: OpenedEnvelope
    connection: PeerConnection
    transport: str
    path: str  # the path the message's last packet came by ("direct" or "relay")
    received_ns: int  # time.monotonic_ns() right after opening
    arrived_ns: int  # time.monotonic_ns() when its last packet reached our socket


MessageHandler = Callable[[ReceivedMessage], None]


class Node:
    def __init__(self, identity: Identity, endpoint: Endpoint, on_message: MessageHandler | None) -> None:
        self.identity = identity
        self.endpoint = endpoint
        self.on_message = on_message
        self.rejected: Counter[str] = Counter()
        self.envelopes: Counter[tuple[str, str]] = Counter()

    @classmethod
    async def start(
        cls,
        identity: Identity,
        host: str,
        port: int,
        *,
        settings: TransportSettings | None = None,
        on_message: MessageHandler | None = None,
        relay: tuple[str, int] | None = None,
    ) -> Node:
        """Bind, and register with `relay` when given (TransportError if that fails)."""
        node = cls(identity, None, on_message)  # type: ignore[arg-type]
        node.endpoint = await Endpoint.open(
            identity,
            host,
            port,
            settings,
            relay=relay,
            on_frame=lambda connection, data: node._received(connection, data, TRANSPORT_STREAM),
            on_datagram=lambda connection, data: node._received(connection, data, TRANSPORT_DATAGRAM),
        )
        return node

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
        address: tuple[str, int] | None = None,
        transport: str = TRANSPORT_STREAM,
    ) -> PeerConnection:
        """Send a sealed envelope, dialling `address` if there is no connection to `peer`."""
        if transport == TRANSPORT_DATAGRAM:
            connection = await self.endpoint.send_datagram(peer, sealed.wire, address)
        else:
            connection = await self.endpoint.send_frame(peer, sealed.wire, address)
        self.envelopes["out", sealed.envelope.msg_type.value] += 1
        return connection

    def reply(self, message: ReceivedMessage, sealed: SealedEnvelope) -> None:
        """Answer on the connection and transport the message came by (no dialling).

        An answer cannot wait for back-pressure (the callback must return), so beyond
        `max_reply_streams` open streams it is refused with ConnectionBusy: a peer that does not
        read its answers cannot make us buffer without bound."""
        connection = message.connection
        if message.transport != TRANSPORT_DATAGRAM and connection.open_streams >= self.endpoint.settings.max_reply_streams:
            raise ConnectionBusy(f"{connection.open_streams} streams to that peer are still open")
        if message.transport == TRANSPORT_DATAGRAM:
            message.connection.send_datagram(sealed.wire)
        else:
            message.connection.send_frame(sealed.wire)
        self.envelopes["out", sealed.envelope.msg_type.value] += 1

    def _received(self, connection: PeerConnection, data: bytes, transport: str) -> None:
        try:
            opened = open_envelope(self.identity, data)
        except EnvelopeRejected as refused:
            self.rejected[refused.reason.value] += 1
            return
        received_ns = time.monotonic_ns()
        self.envelopes["in", opened.envelope.msg_type.value] += 1
        if self.on_message is not None:
            self.on_message(ReceivedMessage(
                opened, connection, transport, connection.received_path, received_ns, self.endpoint.arrival_ns
            ))  # fmt: skip

    async def close(self) -> None:
        await self.endpoint.close()
