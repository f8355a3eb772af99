"""The responder: a node that answers every probe with a reply of the same size.

Each probe is an encrypted, signed Chat; the reply is an encrypted, signed Chat back to the
sender, on the same connection and the same transport (stream or datagram), carrying the
responder's wall-clock receive time (when the probe's packet reached the socket) and send time
(just before the reply is sealed), and the follow-up of the run's previous reply (how long that
probe was held in all). Anything that is not a probe is counted and ignored.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict

from tomproto.errors import Backpressure
from tomproto.identity import Identity, NodeId
from tomproto.node import EnvelopeLeft, Node, ReceivedMessage
from tomproto.sealing import new_message_id
from tomproto.transport import (
    ConnectionBusy,
    ConnectionLost,
    DatagramTooLarge,
    PeerConnected,
    Transport,
    TransportSettings,
)
from tomproto.wire.envelope import MessageType
from tomstress.probe import FollowUp, encode_reply, parse_probe

__all__ = ["Responder", "COUNTERS"]

# Every key of Responder.counts, so that a report lists the zeros too.
COUNTERS = ("probes_answered", "not_a_probe", "reply_too_large", "reply_dropped_busy", "reply_failed")


# Follow-ups wait for the next probe of their run; beyond this many runs the oldest is forgotten.
MAX_FOLLOW_UPS = 1024


class Responder:
    def __init__(self) -> None:
        self.node: Node | None = None
        self.counts: Counter[str] = Counter()
        self._follow_ups: OrderedDict[tuple[NodeId, str], FollowUp] = OrderedDict()
        # The reply being sent, while its send is under way: run, seq, its probe's arrival.
        self._replying: tuple[str, tuple[NodeId, str], int, int] | None = None

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
            identity, host, port, settings=settings, relay=relay
        )
        responder.node.events.subscribe(responder._answer, ReceivedMessage)
        responder.node.events.subscribe(responder._reply_left, EnvelopeLeft)
        responder.node.events.subscribe(responder._grant, PeerConnected)
        return responder

    def _grant(self, event: PeerConnected) -> None:
        # Interim: every peer that connects gets the campaign budget (the hello that asks for it
        # replaces this).
        assert self.node is not None  # noqa: S101
        self.node.grant(event.peer, 2000.0, 4000.0, 3600.0)

    def _answer(self, message: ReceivedMessage) -> None:
        # The receive time is the packet's arrival, so that the hold time the pinger sees covers
        # our whole stack (QUIC, decrypt, verify), not just this function.
        received_wall_ns = time.time_ns() - (time.monotonic_ns() - message.arrived_ns)
        probe = parse_probe(message.plaintext)
        if probe is None:
            self.counts["not_a_probe"] += 1
            return
        node = self.node
        assert node is not None  # noqa: S101 - set before any message can arrive
        peer = message.sender
        run = (peer, probe.run_id)
        follow_up = self._follow_ups.pop(run, None)
        plaintext = encode_reply(probe, received_wall_ns, time.time_ns(), len(message.plaintext), follow_up)
        try:
            if message.transport is Transport.datagram:
                sent = node.reply_datagram(message, node.seal_datagram(peer, MessageType.Chat, plaintext))
                self._replied(run, probe.seq, message.arrived_ns, sent.left_ns)
            else:
                # The reply goes before the probe's ACK (the runtime sends that after we return),
                # and its first packet's departure comes back as an EnvelopeLeft.
                reply_id = new_message_id()
                self._replying = (reply_id, run, probe.seq, message.arrived_ns)
                node.send_message_nowait(peer, plaintext, message_id=reply_id)
        except DatagramTooLarge:
            self.counts["reply_too_large"] += 1
            return
        except (ConnectionBusy, Backpressure):
            self.counts["reply_dropped_busy"] += 1
            return
        except ConnectionLost:
            self.counts["reply_failed"] += 1
            return
        finally:
            self._replying = None
        self.counts["probes_answered"] += 1

    def _reply_left(self, event: EnvelopeLeft) -> None:
        replying = self._replying
        if replying is not None and event.message_id == replying[0]:
            self._replied(replying[1], replying[2], replying[3], event.left_ns)

    def _replied(self, run: tuple[NodeId, str], seq: int, arrived_ns: int, left_ns: int | None) -> None:
        if left_ns is None:  # the reply waits for flow control: no figure
            return
        self._follow_ups[run] = FollowUp(seq, left_ns - arrived_ns)
        if len(self._follow_ups) > MAX_FOLLOW_UPS:
            self._follow_ups.popitem(last=False)

    async def close(self) -> None:
        if self.node is not None:
            await self.node.close()
