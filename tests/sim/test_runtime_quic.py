"""The protocol runtime over real QUIC on a lossy network: what a user sends to a reachable peer
arrives once, and the sender sees it Delivered."""

from __future__ import annotations

import random
import time
from collections import Counter

from tests.sim.links import Impairment
from tests.sim.runtime_world import NodeSpec, RuntimeNode, RuntimeWorld
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.runtime_events import BackupStored, DuplicateReceived, MessageResent

SEEDS = range(100)
LOSSY = Impairment(delay_s=0.020, jitter_s=0.005, loss=0.10, duplicate=0.05)
MESSAGES_EACH_WAY = 4
SEND_WITHIN_S = 3.0
SETTLE_S = 120.0  # every message Delivered by then (QUIC retransmits; the runtime resends at 30 s)
TAIL_S = 10.0  # after the last ACK: nothing more may reach an application


def test_with_10_percent_loss_and_5_percent_duplication_every_message_arrives_once_and_ends_delivered() -> None:
    started = time.perf_counter()
    totals: Counter[str] = Counter()
    for seed in SEEDS:
        totals.update(exchange(seed))
    wall_s = time.perf_counter() - started
    print(f"\n{len(SEEDS)} seeds over QUIC, 10 % loss and 5 % duplication each way, two nodes behind NATs: "
          f"{totals['messages']} messages, each delivered once and Delivered; {dict(totals)}; "
          f"{wall_s:.1f} s wall")  # fmt: skip


def exchange(seed: int) -> Counter[str]:
    """Alice and Bob, behind NATs of their own, send each other messages at random times within
    3 s (dialling through the relay, then punching); each arrives once and ends Delivered."""
    totals: Counter[str] = Counter()
    with RuntimeWorld(seed, [NodeSpec("alice", behind_nat=True), NodeSpec("bob", behind_nat=True)],
                      impairment=LOSSY) as world:  # fmt: skip
        world.register()
        alice, bob = world["alice"], world["bob"]
        sent: dict[RuntimeNode, list[str]] = {alice: [], bob: []}
        draws = random.Random(f"tom-sim-runtime-sends-{seed}")
        start = world.now + 0.1
        for index in range(MESSAGES_EACH_WAY):
            for sender, recipient in ((alice, bob), (bob, alice)):

                def send(sender: RuntimeNode = sender, recipient: RuntimeNode = recipient, index: int = index) -> None:
                    sent[sender].append(sender.send(recipient, b"message %d from " % index + sender.name.encode()))

                world.at(start + draws.uniform(0, SEND_WITHIN_S), send)

        def unfinished() -> bool:
            return sum(map(len, sent.values())) < 2 * MESSAGES_EACH_WAY or any(
                sender.status(message) is not DeliveryStatus.delivered
                for sender, messages in sent.items()
                for message in messages
            )

        world.run_while(unfinished, start + SETTLE_S)
        world.run_for(TAIL_S)  # a copy still on its way would arrive now (and meet the dedup)
        for sender, recipient in ((alice, bob), (bob, alice)):
            received = recipient.received_ids()
            assert len(received) == len(set(received)), f"seed {seed}: {recipient.name} got a message twice"
            assert sorted(received) == sorted(sent[sender]), f"seed {seed}: {sender.name} → {recipient.name}"
            statuses = {sender.status(message) for message in sent[sender]}
            assert statuses == {DeliveryStatus.delivered}, f"seed {seed}: {statuses}"
        for node in (alice, bob):
            totals["messages"] += len(sent[node])
            totals["resent"] += len(node.facts(MessageResent))
            totals["duplicates dropped"] += len(node.facts(DuplicateReceived))
            totals["transport failures"] += node.runtime.counters.transport_failures
            totals["backed up"] += len(node.facts(BackupStored))
        totals["virtual s"] += int(world.now)
    return totals
