"""The protocol runtime between real node processes over loopback (and, for back-pressure and
hostile input, between Nodes in this process): relaying through a middle node, backup delivery to
a recipient that was down, an application that stops reading, and hostile input."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.processes import NodeProcessHandle, start_node, start_relay
from tests.integration.test_transport import Inbox, endpoint
from tomproto.core.antispam import anonymous_rate_per_s
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.runtime import RuntimeSettings
from tomproto.core.runtime_events import MessageStatusChanged
from tomproto.errors import Backpressure
from tomproto.identity import Identity, NodeId
from tomproto.node import Node, ReceivedMessage
from tomproto.sealing import SealedEnvelope, seal_envelope
from tomproto.transport import TransportSettings
from tomproto.wire.envelope import MAX_ENVELOPE_BYTES, MessageType, encode_envelope, pack_signed
from tomstress.benchmarks.children import stop

N_RELAYED = 200
N_BACKED_UP = 10


@contextmanager
def nodes() -> Iterator[list[NodeProcessHandle]]:
    """Node processes started in the block, all stopped at its end."""
    started: list[NodeProcessHandle] = []
    try:
        yield started
    finally:
        for handle in started:
            handle.kill()


def test_messages_relayed_through_a_middle_node_arrive_once_and_end_delivered(tmp_path: Path) -> None:
    with nodes() as running:
        c = start_node(tmp_path / "c.key", "--role", "sink")
        running.append(c)
        b = start_node(tmp_path / "b.key", "--role", "relay", "--peer", f"{c.node_id}={c.address}")
        running.append(b)
        a = start_node(tmp_path / "a.key", "--role", "sender", "--peer", f"{b.node_id}={b.address}")
        running.append(a)
        # Past a burst of 20, an anonymous sender gets 10 envelopes a second (anti-spam): B and
        # C serve A as a campaign's peers do, with a budget granted to it.
        for handle in (b, c):
            assert handle.command(op="grant", peer=a.node_id, rate=10_000, burst=10_000)["granted"]
        sent = a.command(op="send", to=c.node_id, count=N_RELAYED, size=256, via=[b.node_id])["ids"]
        assert len(set(sent)) == N_RELAYED
        assert a.command(op="wait", status="delivered", timeout=30) == {"event": "wait", "reached": N_RELAYED,
                                                                       "of": N_RELAYED}  # fmt: skip
        a_report = a.command(op="report", ids=True)
        for message_id in sent:
            statuses = a_report["statuses"][message_id]
            assert "relayed" in statuses and "delivered" in statuses, (message_id, statuses)
            assert statuses.index("relayed") < statuses.index("delivered"), statuses
            assert statuses.count("delivered") == 1
        c_report = c.command(op="report", ids=True)
        assert c_report["received"] == dict.fromkeys(sent, 1)  # each exactly once, nothing else
        assert c_report["duplicates"] == 0
        b_report = b.command(op="report", ids=True)
        # B forwarded each message once, and each of C's ACKs back (the reversed via).
        assert {message_id: b_report["forwarded_ids"][message_id] for message_id in sent} == dict.fromkeys(sent, 1)
        assert b_report["forwarded"] == 2 * N_RELAYED
        assert b_report["received_count"] == 0  # a middle node keeps nothing for itself
        for handle in running:
            assert handle.command(op="report")["refused"] == {}


def test_messages_for_a_recipient_that_is_down_are_kept_and_delivered_once_when_it_comes_back(
    tmp_path: Path,
) -> None:
    """C is registered with a tom-relay; A knows C only by NodeId (dials it through the relay).
    While C is down, A's transport attempts fail and A keeps the messages (BackupStored). C comes
    back with the same identity, at a new port: the relay learns its new address when it
    registers, and C asks A for what A keeps for it (BackupQuery), as a node coming back does: it
    gets each message once, with its original id, and A's messages end Delivered, without waiting
    for A's next backup retry (5 s, doubling)."""
    relay, relay_port = start_relay()
    relay_address = f"127.0.0.1:{relay_port}"
    try:
        with nodes() as running:
            c = start_node(tmp_path / "c.key", "--role", "sink", "--relay", relay_address)
            running.append(c)
            c_id = c.node_id
            # A gives up a dial after 1 s rather than 5: its three transport attempts fail
            # within about 4 s, and the test stays short (the same mechanism).
            a = start_node(tmp_path / "a.key", "--role", "sender", "--relay", relay_address,
                           "--handshake-timeout", "1")  # fmt: skip
            running.append(a)
            # C is up: a first message reaches it through the relay.
            first = a.command(op="send", to=c_id, count=1, size=64)["ids"]
            assert a.command(op="wait", status="delivered", timeout=20)["reached"] == 1
            assert c.stop() == 0  # its connections close: A knows it is gone
            deadline = time.monotonic() + 10
            while a.command(op="report")["connections"] and time.monotonic() < deadline:
                time.sleep(0.1)
            # C is down: the transport attempts fail (through the relay, which does not reach C
            # any more), and the messages are kept.
            kept = a.command(op="send", to=c_id, count=N_BACKED_UP, size=64)["ids"]
            deadline = time.monotonic() + 20
            while (report := a.command(op="report"))["backups"] < N_BACKED_UP and time.monotonic() < deadline:
                time.sleep(0.2)
            assert report["backups"] == N_BACKED_UP, report
            statuses = a.command(op="report", ids=True)["statuses"]
            assert all(message_id not in statuses for message_id in kept), statuses  # none left
            restarted = start_node(tmp_path / "c.key", "--role", "sink", "--relay", relay_address,
                                   "--peer", f"{a.node_id}={a.address}")  # fmt: skip
            running.append(restarted)
            assert restarted.node_id == c_id
            asked_at = time.monotonic()
            restarted.command(op="query", peer=a.node_id)
            assert a.command(op="wait", status="delivered", timeout=20)["reached"] == 1 + N_BACKED_UP
            assert time.monotonic() - asked_at < 4.5, "delivered by the query, not by a later retry"
            c_report = restarted.command(op="report", ids=True)
            assert c_report["received"] == dict.fromkeys(kept, 1)  # the original ids, once each
            a_report = a.command(op="report")
            assert a_report["backups"] == 0
            assert a_report["status_counts"]["delivered"] == 1 + N_BACKED_UP
            assert first[0] not in c_report["received"]
    finally:
        stop(relay)


# -- in-process: two Nodes on loopback ---------------------------------------------------------

N_FLOWING = 10_000
SENDER_MAX_UNACKNOWLEDGED = 2_000
STOPPED_READING_S = 3.0  # the application "stops for a minute": shortened, the same mechanism


def test_an_application_that_stops_reading_holds_its_senders_back_and_loses_nothing() -> None:
    """While the receiving application reads nothing, its inbox fills (1024), the frames beyond
    it are held un-released in the transport (at most the streams a peer may open), the sender's
    streams stay open and its sends wait (back-pressure: send_message_nowait raises, counted),
    its unacknowledged messages stay under its cap. Then the application reads again: each of
    the 10,000 arrives once, and ends Delivered at the sender."""

    async def scenario() -> None:
        receiver = await Node.start(Identity.generate(), "127.0.0.1", 0)
        sender = await Node.start(
            Identity.generate(), "127.0.0.1", 0, runtime=RuntimeSettings(max_unacknowledged=SENDER_MAX_UNACKNOWLEDGED)
        )
        try:
            receiver.grant(sender.node_id, 1e6, 1e6, 600)  # a peer it serves: no anonymous budget
            address = receiver.endpoint.local_address
            sent: list[str] = []
            backpressure = 0
            room = asyncio.Event()
            sender.events.subscribe(lambda _: room.set(), MessageStatusChanged)

            async def send_all() -> None:
                nonlocal backpressure
                while len(sent) < N_FLOWING:
                    try:
                        sent.append(sender.send_message_nowait(receiver.node_id, b"%d" % len(sent), address=address))
                    except Backpressure:
                        backpressure += 1
                        room.clear()
                        await room.wait()
                    if len(sent) % 64 == 0:
                        await asyncio.sleep(0)

            sending = asyncio.ensure_future(send_all())
            runtime = receiver.runtime
            worst = Counter[str]()

            def watch() -> bool:
                worst["unfinished"] = max(worst["unfinished"], sender.runtime.tracker.unfinished)
                worst["inbox"] = max(worst["inbox"], runtime.inbox_size)
                worst["held"] = max(worst["held"], runtime.held_frames)
                return runtime.inbox_size == RuntimeSettings().inbox_messages and backpressure > 0

            await _until(watch, 30)  # the inbox fills, and the sender is held back
            deadline = time.monotonic() + STOPPED_READING_S  # and stays so while nobody reads
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                watch()
            worst_unfinished = worst["unfinished"]
            assert worst["inbox"] == RuntimeSettings().inbox_messages
            assert worst["held"] <= TransportSettings().max_peer_streams
            assert runtime.inbox_size == RuntimeSettings().inbox_messages  # full, not beyond
            assert 0 < runtime.held_frames <= TransportSettings().max_peer_streams
            assert receiver.counters.held > 0
            assert backpressure > 0 and not sending.done()
            assert worst_unfinished <= SENDER_MAX_UNACKNOWLEDGED
            assert receiver.counters.delivered == runtime.inbox_size  # nothing ACKed that is not kept
            # The application reads again.
            received: Counter[str] = Counter()
            while len(received) < N_FLOWING:
                try:
                    message = await asyncio.wait_for(receiver.receive(), 20)
                except TimeoutError:
                    raise AssertionError(_stalled(sender, receiver, len(received), len(sent))) from None
                received[message.message_id] += 1
                assert runtime.inbox_size <= RuntimeSettings().inbox_messages
            await asyncio.wait_for(sending, 20)
            assert set(received) == set(sent) and set(received.values()) == {1}
            await _until(lambda: all(sender.status(m) is DeliveryStatus.delivered for m in sent), 30)
            assert Counter(sender.status(m) for m in sent) == {DeliveryStatus.delivered: N_FLOWING}
            assert receiver.counters.duplicates == 0 and receiver.receive_nowait() is None
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))


FLOOD_TIMES_BUDGET = 10
FLOOD_S = 3.0


def test_hostile_input_is_refused_and_counted_while_another_peers_traffic_flows() -> None:
    """Against a running node: a forged signature, a replay (a fresh one is a duplicate, dropped
    and re-ACKed; an old one is refused as stale), an oversize frame, an envelope for the node
    carrying a payload encrypted for another (the wrong recipient: undecryptable), and one
    sender flooding at ten times the anonymous budget. Each is refused and counted, the node
    keeps running, and a well-behaved peer's messages all end Delivered meanwhile."""

    async def scenario() -> None:
        target = await Node.start(Identity.generate(), "127.0.0.1", 0)
        friend = await Node.start(Identity.generate(), "127.0.0.1", 0)
        attacker_identity, someone_else = Identity.generate(), Identity.generate()
        received: list[ReceivedMessage] = []
        target.events.subscribe(received.append, ReceivedMessage)
        address = target.endpoint.local_address
        me = target.node_id
        try:
            async with endpoint(attacker_identity, inbox=Inbox()) as attacker:
                now_ms = time.time_ns() // 1_000_000

                def sealed(recipient: NodeId = me, when_ms: int = now_ms, payload: bytes = b"x") -> SealedEnvelope:
                    return seal_envelope(attacker_identity, recipient, MessageType.Chat, payload, now_ms=when_ms)

                async def refused_for(wire: bytes, reason: str) -> None:
                    before = target.counters.refused[reason]
                    await attacker.send_frame(me, wire, address)
                    await _until(lambda: target.counters.refused[reason] == before + 1)

                forged = sealed().envelope
                await refused_for(encode_envelope(dataclasses.replace(forged, signature=bytes(64))), "bad_signature")
                fresh = sealed().wire
                await attacker.send_frame(me, fresh, address)
                await attacker.send_frame(me, fresh, address)
                await _until(lambda: target.counters.duplicates == 1)
                await refused_for(sealed(when_ms=now_ms - 20 * 60 * 1000).wire, "stale")
                await refused_for(b"\x00" * (MAX_ENVELOPE_BYTES + 1), "too_large")
                for_someone_else = sealed(someone_else.node_id).envelope
                misdirected = dataclasses.replace(for_someone_else, recipient=me.hex, signature=b"")
                await refused_for(pack_signed(misdirected, attacker_identity.sign)[1], "undecryptable")
                assert [message.plaintext for message in received] == [b"x"]  # the fresh one, once

                # The flood, with a friend's traffic beside it.
                rate = FLOOD_TIMES_BUDGET * anonymous_rate_per_s()
                friend_ids: list[str] = []

                async def friend_sends() -> None:
                    for index in range(int(FLOOD_S * 5)):  # 5/s: within the anonymous budget
                        friend_ids.append(await friend.send_message(me, b"f%d" % index, address=address))
                        await asyncio.sleep(0.2)

                friendly = asyncio.ensure_future(friend_sends())
                flood_sent = 0
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < FLOOD_S:
                    while flood_sent < elapsed * rate:
                        attacker.send_frame_now(me, sealed(payload=b"flood").wire, urgent=True)
                        flood_sent += 1
                    await asyncio.sleep(0.01)
                await friendly
                await _until(lambda: all(friend.status(m) is DeliveryStatus.delivered for m in friend_ids), 15)
                throttled = target.counters.refused["throttled"]
                admitted = sum(1 for message in received if message.plaintext == b"flood")
                assert throttled > 0 and throttled + admitted >= flood_sent * 0.9, (throttled, admitted, flood_sent)
                # The anonymous bucket: a burst of 20, then 10/s.
                assert admitted <= 2 * anonymous_rate_per_s() + anonymous_rate_per_s() * (FLOOD_S + 2)
                assert sorted(m.plaintext for m in received if m.sender == friend.node_id) == sorted(
                    b"f%d" % index for index in range(len(friend_ids))
                )
        finally:
            await friend.close()
            await target.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.02)


def _stalled(sender: Node, receiver: Node, received: int, sent: int) -> str:
    sending = sender.runtime
    return (
        f"stalled at {received} received of {sent} sent: receiver inbox {receiver.runtime.inbox_size}, held "
        f"{receiver.runtime.held_frames}, counters {receiver.counters}; sender unfinished "
        f"{sending.tracker.unfinished}, in transit, queued {sending.outbound.waiting()}, "
        f"tasks {len(sender._sending)}, "
        f"connections {sender.endpoint.connections()}, counters {sender.counters}, "
        f"statuses {Counter(record.status.name for record in sending.tracker.records.values())}"
    )
