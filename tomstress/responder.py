"""The responder: a node that answers every probe with a reply of the same size.

Each probe is an encrypted, signed Chat; the reply is an encrypted, signed Chat back to the
sender, on the same connection and the same transport (stream or datagram), carrying the
responder's wall-clock receive and send times. Anything that is not a probe is counted and
ignored.
"""

from __future__ import annotations

import time
from collections import Counter

from tomproto.identity import Identity
from tomproto.node import TRANSPORT_DATAGRAM, Node, ReceivedMessage
from tomproto.transport import ConnectionBusy, ConnectionLost, DatagramTooLarge, TransportSettings
from tomproto.wire.envelope import MessageType
from tomstress.probe import encode_reply, parse_probe

__all__ = ["Responder"]


class Responder:
    def __init__(self) -> None:
        self.node: Node | None = None
        self.counts: Counter[str] = Counter()

    @classmethod
    async def start(
        cls,
        identity: Identity,
        host: str,
        port: int,
        settings: TransportSettings | None = None,
        relay: tuple[str, int] | None = None,
    ) -> Responder:
        responder = cls()
        responder.node = await Node.start(
            identity, host, port, settings=settings, on_message=responder._answer, relay=relay
        )
        return responder

    def _answer(self, message: ReceivedMessage) -> None:
        received_wall_ns = time.time_ns()
        probe = parse_probe(message.opened.plaintext)
        if probe is None:
            self.counts["not_a_probe"] += 1
            return
        node = self.node
        assert node is not None  # noqa: S101 - set before any message can arrive
        plaintext = encode_reply(probe, received_wall_ns, time.time_ns(), len(message.opened.plaintext))
        peer = message.connection.peer
        assert peer is not None  # noqa: S101 - messages come only from authenticated peers
        try:
            if message.transport == TRANSPORT_DATAGRAM:
                sealed = node.seal_datagram(peer, MessageType.Chat, plaintext)
            else:
                sealed = node.seal(peer, MessageType.Chat, plaintext)
            node.reply(message, sealed)
        except DatagramTooLarge:
            self.counts["reply_too_large"] += 1
            return
        except ConnectionBusy:
            self.counts["reply_dropped_busy"] += 1
            return
        except ConnectionLost:
            self.counts["reply_failed"] += 1
            return
        self.counts["probes_answered"] += 1

    async def close(self) -> None:
        if self.node is not None:
            await self.node.close()
