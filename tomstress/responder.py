"""The responder: a node that answers every probe with a reply of the same size.

Each probe is an encrypted, signed Chat; the reply is an encrypted, signed Chat back to the
sender, on the same connection and the same transport (stream or datagram), carrying the
responder's wall-clock receive time (when the probe's packet reached the socket) and send time
(just before the reply is sealed), and the follow-up of the run's previous reply (how long that
probe was held in all). Anything that is not a probe is counted and ignored.

A campaign says Hello first (tomstress/probe.py): the responder answers Welcome, granting the
campaign's node the budget it asked for, capped by the configured one (`CampaignPolicy`), instead
of the anonymous anti-spam bucket; or refusing it, with the reason, when it already serves
`max_campaigns`. A campaign's slot is freed when its node disconnects or its grant ends. A peer
that never says Hello is held to the anonymous bucket, and sees its throttled messages refused.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass

from tomproto.errors import Backpressure
from tomproto.identity import Identity, NodeId
from tomproto.node import EnvelopeLeft, Node, ReceivedMessage
from tomproto.sealing import new_message_id
from tomproto.transport import (
    ConnectionBusy,
    ConnectionLost,
    DatagramTooLarge,
    PeerDisconnected,
    Transport,
    TransportSettings,
)
from tomproto.wire.envelope import MessageType
from tomstress import __version__
from tomstress.probe import (
    CAPABILITIES,
    MEASUREMENT_RUNTIME,
    Budget,
    FollowUp,
    Hello,
    Welcome,
    encode_reply,
    encode_welcome,
    parse_hello,
    parse_probe,
)

__all__ = ["Responder", "CampaignPolicy", "COUNTERS", "DEFAULT_CAMPAIGN_RATE_PER_S", "DEFAULT_MAX_CAMPAIGNS"]

# Every key of Responder.counts, so that a report lists the zeros too.
COUNTERS = (
    "probes_answered", "not_a_probe", "reply_too_large", "reply_dropped_busy", "reply_failed",
    "campaigns_granted", "campaigns_capped", "campaigns_refused", "welcome_failed",
)  # fmt: skip

# The fastest ping the CLI allows (--interval 1ms) asks 2/interval + 20 = 2020 msg/s: with margin.
DEFAULT_CAMPAIGN_RATE_PER_S = 2500.0
DEFAULT_MAX_CAMPAIGNS = 16
DEFAULT_MAX_GRANT_S = 24 * 3600.0
DEFAULT_CAMPAIGN_BUDGET = Budget(DEFAULT_CAMPAIGN_RATE_PER_S, 2 * DEFAULT_CAMPAIGN_RATE_PER_S, DEFAULT_MAX_GRANT_S)


@dataclass(frozen=True, slots=True)
class CampaignPolicy:
    """What a campaign may get: `budget` None grants nothing (every campaign is held to the
    anonymous bucket); at most `max_campaigns` campaigns are served at once."""

    budget: Budget | None = DEFAULT_CAMPAIGN_BUDGET
    max_campaigns: int = DEFAULT_MAX_CAMPAIGNS

    def as_dict(self) -> dict[str, object]:
        return {
            "budget": None if self.budget is None else self.budget.as_dict(),
            "max_campaigns": self.max_campaigns,
        }


# Follow-ups wait for the next probe of their run; beyond this many runs the oldest is forgotten.
MAX_FOLLOW_UPS = 1024


class Responder:
    capabilities: tuple[str, ...] = CAPABILITIES  # what the Welcome says this responder does

    def __init__(self, policy: CampaignPolicy | None = None) -> None:
        self.node: Node | None = None
        self.policy = policy or CampaignPolicy()
        self.counts: Counter[str] = Counter()
        self.campaigns: dict[NodeId, float] = {}  # the peers served, and when (monotonic s) their grant ends
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
        policy: CampaignPolicy | None = None,
    ) -> Responder:
        responder = cls(policy)
        # No backups: a reply delivered late is not a measurement (MEASUREMENT_RUNTIME).
        responder.node = await Node.start(identity, host, port, settings=settings, relay=relay,
                                          runtime=MEASUREMENT_RUNTIME)  # fmt: skip
        responder.node.events.subscribe(responder._answer, ReceivedMessage)
        responder.node.events.subscribe(responder._reply_left, EnvelopeLeft)
        responder.node.events.subscribe(responder._campaign_gone, PeerDisconnected)
        return responder

    # -- campaigns ----------------------------------------------------------------------------------

    def active_campaigns(self, now: float) -> int:
        for peer in [peer for peer, until in self.campaigns.items() if until <= now]:
            del self.campaigns[peer]
        return len(self.campaigns)

    def _welcome(self, peer: NodeId, hello: Hello) -> Welcome:
        """Grant, cap or refuse the campaign's budget, and say so."""
        node = self.node
        assert node is not None  # noqa: S101 - set before any message can arrive
        now = time.monotonic()
        policy = self.policy
        if peer not in self.campaigns and self.active_campaigns(now) >= policy.max_campaigns:
            self.counts["campaigns_refused"] += 1
            served = len(self.campaigns)
            return Welcome(__version__, self.capabilities, False, None,
                           f"serving {served} campaign{'s' if served != 1 else ''} already "
                           f"(--max-campaigns {policy.max_campaigns}); try again later")  # fmt: skip
        if policy.budget is None:
            self.campaigns[peer] = now + DEFAULT_MAX_GRANT_S
            self.counts["campaigns_granted"] += 1
            return Welcome(__version__, self.capabilities, True, None,
                           "this responder grants no budget (--no-budget): the campaign is held to the "
                           "anonymous anti-spam bucket (10 msg/s, bursts of 20)")  # fmt: skip
        asked, cap = hello.budget, policy.budget
        granted = Budget(min(asked.rate_per_s, cap.rate_per_s), min(asked.burst, cap.burst),
                         min(asked.duration_s, cap.duration_s))  # fmt: skip
        if granted.rate_per_s <= 0 or granted.burst < 1 or granted.duration_s <= 0:
            self.counts["campaigns_refused"] += 1
            return Welcome(__version__, self.capabilities, False, None, f"the budget asked for is empty: {asked}")
        if not node.grant(peer, granted.rate_per_s, granted.burst, granted.duration_s):
            self.counts["campaigns_refused"] += 1
            return Welcome(__version__, self.capabilities, False, None, "the node's table of grants is full")
        self.campaigns[peer] = now + granted.duration_s
        self.counts["campaigns_granted"] += 1
        reason = ""
        if granted != asked:
            self.counts["campaigns_capped"] += 1
            reason = (f"capped to this responder's --campaign-budget {cap.rate_per_s:g}/{cap.burst:g} "
                      f"for at most {cap.duration_s:g} s")  # fmt: skip
        return Welcome(__version__, self.capabilities, True, granted, reason)

    def _campaign_gone(self, event: PeerDisconnected) -> None:
        if event.peer is not None and self.campaigns.pop(event.peer, None) is not None and self.node is not None:
            self.node.revoke(event.peer)

    def _answer_hello(self, message: ReceivedMessage, hello: Hello) -> None:
        node = self.node
        assert node is not None  # noqa: S101 - set before any message can arrive
        welcome = self._welcome(message.sender, hello)
        try:
            node.send_message_nowait(message.sender, encode_welcome(welcome))
        except (ConnectionBusy, Backpressure, ConnectionLost):
            self.counts["welcome_failed"] += 1

    # -- probes -------------------------------------------------------------------------------------

    def _answer(self, message: ReceivedMessage) -> None:
        # The receive time is the packet's arrival, so that the hold time the pinger sees covers
        # our whole stack (QUIC, decrypt, verify), not just this function.
        received_wall_ns = time.time_ns() - (time.monotonic_ns() - message.arrived_ns)
        probe = parse_probe(message.plaintext)
        if probe is None:
            hello = parse_hello(message.plaintext)
            if hello is not None:
                self._answer_hello(message, hello)
            else:
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
