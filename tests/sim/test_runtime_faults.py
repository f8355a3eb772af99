"""Whole envelopes and ACKs lost or doubled above QUIC (a node that crashed after reading a frame,
a buggy relay): the runtime's resend rule decides each message's fate, and nothing reaches the
application twice. Every outcome is checked against the injector's own record of what it did."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from tests.sim.links import Impairment
from tests.sim.runtime_world import EnvelopeFaults, RuntimeNode, RuntimeWorld
from tomproto.core.delivery import DELIVERY_DEADLINE_S, MAX_RESENDS, DeliveryStatus
from tomproto.core.runtime_events import DuplicateReceived, MessageResent, MessageStatusChanged

SEEDS = range(60)
MESSAGES = 10  # per seed: 6 from alice to bob, 4 back
SPACING_S = 0.2
FINISHED = (DeliveryStatus.delivered, DeliveryStatus.failed)
ACK_ALONE_LOST = "delivered after its ACK alone was lost, by the re-ACK of a resend"
FAILED = "failed: every copy or its ACKs lost"


def test_with_envelopes_and_acks_faulted_at_10_percent_each_message_ends_as_the_resend_rule_says() -> None:
    started = time.perf_counter()
    outcomes: Counter[str] = Counter()
    for seed in SEEDS:
        outcomes.update(exchange(seed))
    wall_s = time.perf_counter() - started
    print(f"\n{len(SEEDS)} seeds over QUIC, envelopes and ACKs dropped 10 % and doubled 10 % above QUIC: "
          f"{sum(outcomes.values())} messages, {dict(outcomes)}; {wall_s:.1f} s wall")  # fmt: skip
    assert outcomes[ACK_ALONE_LOST] >= 1
    assert outcomes[FAILED] >= 1


def exchange(seed: int) -> Counter[str]:
    """Alice and Bob (public, a clean network) exchange messages through the injector; each
    message's outcome, checked."""
    outcomes: Counter[str] = Counter()
    faults = EnvelopeFaults(seed, drop=0.10, duplicate=0.10)
    with RuntimeWorld(seed, ["alice", "bob"], impairment=Impairment(delay_s=0.020, jitter_s=0.005),
                      faults=faults) as world:  # fmt: skip
        alice, bob = world["alice"], world["bob"]
        sent: list[tuple[RuntimeNode, RuntimeNode, str]] = []
        for index in range(MESSAGES):
            sender, recipient = (alice, bob) if index % 5 < 3 else (bob, alice)

            def send(sender: RuntimeNode = sender, recipient: RuntimeNode = recipient, index: int = index) -> None:
                sent.append((sender, recipient, sender.send(recipient, b"message %d" % index)))

            world.at(0.1 + index * SPACING_S, send)
        world.run_while(lambda: len(sent) < MESSAGES or any(s.status(m) not in FINISHED for s, _, m in sent),
                        4 * DELIVERY_DEADLINE_S + 10)  # fmt: skip
        world.run_for(DELIVERY_DEADLINE_S + 5)  # nothing more may happen to them
        for node in (alice, bob):
            received = node.received_ids()
            assert len(received) == len(set(received)), f"seed {seed}: {node.name} got a message twice"
        for sender, recipient, message in sent:
            outcomes[check_message(faults, sender, recipient, message, seed)] += 1
    return outcomes


def check_message(faults: EnvelopeFaults, sender: RuntimeNode, recipient: RuntimeNode, message: str, seed: int) -> str:
    """The message's fate, checked against what the injector did to its copies and their ACKs."""
    where = f"seed {seed}, {sender.name} → {recipient.name} {message}"
    copies = faults.copies_of(message)
    acks = faults.acks_of(message)
    # The same envelope, byte for byte, at most MAX_RESENDS times again, each DELIVERY_DEADLINE_S
    # after the previous one left.
    assert 1 <= len(copies) <= 1 + MAX_RESENDS, where
    assert len({copy.tx.wire for copy in copies}) == 1, where
    assert [e.resend for e in sender.facts(MessageResent) if e.message_id == message] == list(
        range(1, len(copies))
    ), where
    for before, after in itertools.pairwise(copies):
        assert after.at_s - before.at_s == pytest.approx(DELIVERY_DEADLINE_S), where
    # Every copy that reached the recipient was acknowledged (the first delivered, the others
    # dropped as duplicates and acknowledged again); the application saw it once.
    arrived = sum(copy.copies for copy in copies)
    assert len(acks) == arrived, where
    assert recipient.received_ids().count(message) == (1 if arrived else 0), where
    duplicates = [e for e in recipient.facts(DuplicateReceived) if e.message_id == message]
    assert len(duplicates) == max(0, arrived - 1), where
    # Delivered if and only if one acknowledgement came through; Failed otherwise, after the
    # last copy's deadline.
    status = sender.status(message)
    changes = [e for e in sender.facts(MessageStatusChanged) if e.message_id == message]
    if any(ack.copies for ack in acks):
        assert status is DeliveryStatus.delivered, where
        first_ack = next(ack for ack in acks if ack.copies)
        lost_before = [ack for ack in acks if ack.at_s < copies[0].at_s + DELIVERY_DEADLINE_S]
        if copies[0].copies and lost_before and not any(ack.copies for ack in lost_before):
            assert first_ack.at_s > copies[1].at_s, where
            return ACK_ALONE_LOST
        return f"delivered after {len(copies) - 1} resends"
    assert status is DeliveryStatus.failed, where
    assert len(copies) == 1 + MAX_RESENDS, where
    failed_at = next(e.at_s for e in changes if e.status is DeliveryStatus.failed)
    assert failed_at - copies[-1].at_s == pytest.approx(DELIVERY_DEADLINE_S), where
    return FAILED
