"""The protocol runtime between real node processes over loopback (and, for back-pressure and
hostile input, between Nodes in this process): relaying through a middle node, backup delivery to
a recipient that was down, an application that stops reading, and hostile input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.processes import NodeProcessHandle, start_node, start_relay
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
