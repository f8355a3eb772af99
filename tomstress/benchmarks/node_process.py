"""A long-lived node in its own process, for integration tests and benchmarks.

    python -m tomstress.benchmarks.node_process --identity FILE [--listen 127.0.0.1:0]
        [--relay HOST:PORT] [--peer NODEID=HOST:PORT ...] [--role sink|relay|sender]
        [--max-seconds 600] [--profile FILE]

Starts a Node (the identity file is created when missing, so a restart keeps the same NodeId),
prints one JSON line `{"event": "ready", "node_id": ..., "port": ...}`, then obeys JSON commands,
one a line on stdin, each answered with one JSON line on stdout, until stdin closes or
`--max-seconds` pass:

- `{"op": "report", "ids": true}`: counters, the ids received (id -> times; with "ids") and the
  statuses each message of ours went through;
- `{"op": "send", "to": ID, "count": N, "size": B, "via": [ID, ...]}`: N tracked Chats (waiting
  while back-pressure lasts); answers with their ids;
- `{"op": "flood", "to": ID, "seconds": S, "size": B}`: as many 1-message sends as back-pressure
  allows for S seconds (statuses counted, not recorded); answers with the counts;
- `{"op": "wait", "timeout": S, "status": "delivered"}`: until every message of ours reached the
  status (or the timeout); answers with how many did;
- `{"op": "grant", "peer": ID, "rate": R, "burst": B, "seconds": S}`: hold that peer to this
  anti-spam budget instead of the anonymous one (10/s, bursts of 20);
- `{"op": "query", "peer": ID}`: a BackupQuery to a peer (what a node that comes back sends).

Roles: a sink records every message it receives (subscribed: the inbox never fills); a relay
is a middle node (it forwards what names it in `via`, as any node does, and reports how many);
a sender reads nothing it is sent (its inbox fills and holds frames, as an application that
stops reading). With `--profile`, cProfile runs for the whole life and its stats go to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tomproto.addresses import parse_host_port
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.runtime import RuntimeSettings
from tomproto.core.runtime_events import EnvelopeForwarded, MessageStatusChanged
from tomproto.identity import NodeId, load_or_create_identity
from tomproto.node import Node, ReceivedMessage
from tomproto.transport import TransportSettings

READY_EVENT = "ready"


class NodeProcess:
    def __init__(self, node: Node, role: str) -> None:
        self.node = node
        self.role = role
        self.received: Counter[str] = Counter()
        self.first_received_ns = 0
        self.last_received_ns = 0
        self.statuses: dict[str, list[str]] = {}  # every status each message of ours went through
        self.sent_ids: list[str] = []  # those of "send"
        self.recording = True  # off during a flood: only counted then
        self.status_counts: Counter[str] = Counter()  # all of ours, "flood" included
        self.last_delivered_ns = 0
        self.forwarded: Counter[str] = Counter()  # a relay's: envelope id -> times forwarded
        node.events.subscribe(self._status, MessageStatusChanged)
        if role == "relay":
            node.events.subscribe(self._forwarded, EnvelopeForwarded)
        if role == "sink":
            node.events.subscribe(self._message, ReceivedMessage)

    def _message(self, message: ReceivedMessage) -> None:
        if not self.received:
            self.first_received_ns = message.received_ns
        self.received[message.message_id] += 1
        self.last_received_ns = message.received_ns

    def _forwarded(self, forwarded: EnvelopeForwarded) -> None:
        self.forwarded[forwarded.message_id] += 1

    def _status(self, change: MessageStatusChanged) -> None:
        self.status_counts[change.status.name] += 1
        if change.status is DeliveryStatus.delivered:
            self.last_delivered_ns = time.monotonic_ns()
        if self.recording:
            self.statuses.setdefault(change.message_id, []).append(change.status.name)

    def report(self, ids: bool) -> dict[str, Any]:
        counters = self.node.counters
        runtime = self.node.runtime
        report: dict[str, Any] = {
            "received_count": sum(self.received.values()),
            "received_unique": len(self.received),
            "first_received_ns": self.first_received_ns,
            "last_received_ns": self.last_received_ns,
            "forwarded": counters.forwarded,
            "refused": dict(counters.refused),
            "delivered": counters.delivered,
            "duplicates": counters.duplicates,
            "held": counters.held,
            "backpressure": counters.backpressure,
            "transport_failures": counters.transport_failures,
            "resent": counters.resent,
            "refused_by_peers": dict(counters.refused_by_peers),
            "status_counts": dict(self.status_counts),
            "inbox_size": runtime.inbox_size,
            "held_frames": runtime.held_frames,
            "unfinished": runtime.tracker.unfinished,
            "backups": len(runtime.store),
            "connections": [
                f"{info.peer.hex[:8] if info.peer else None}:{info.path.value}:{info.open_streams}"
                for info in self.node.endpoint.connections()
            ],
        }
        if ids:
            report["received"] = dict(self.received)
            report["statuses"] = self.statuses
            report["forwarded_ids"] = dict(self.forwarded)
        return report

    async def send(self, to: NodeId, count: int, size: int, via: tuple[NodeId, ...]) -> list[str]:
        sent = []
        for _ in range(count):
            message_id = await self.node.send_message(to, os.urandom(size), via=via)
            sent.append(message_id)
        self.sent_ids += sent
        return sent

    async def flood(self, to: NodeId, seconds: float, size: int) -> dict[str, Any]:
        payload = os.urandom(size)  # the same plaintext: each seal still encrypts it anew
        delivered_before = self.status_counts["delivered"]
        started = time.monotonic()
        deadline = started + seconds
        sent = 0
        self.recording = False
        try:
            while time.monotonic() < deadline:
                await self.node.send_message(to, payload)
                sent += 1
                if sent % 32 == 0:
                    await asyncio.sleep(0)  # let acknowledgements in
        finally:
            self.recording = True
        sending_s = time.monotonic() - started
        return {"sent": sent, "seconds": sending_s,
                "delivered_while_sending": self.status_counts["delivered"] - delivered_before}  # fmt: skip

    async def wait(self, status: DeliveryStatus, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            reached = sum(1 for message_id in self.sent_ids if (self.node.status(message_id) or 0) >= status)
            if reached == len(self.sent_ids) or time.monotonic() >= deadline:
                return {"reached": reached, "of": len(self.sent_ids)}
            await asyncio.sleep(0.05)

    async def obey(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command.get("op")
        if op == "report":
            return self.report(bool(command.get("ids")))
        if op == "send":
            if "address" in command:  # where to dial the recipient
                self.node.addresses[NodeId.parse(command["to"])] = parse_host_port(command["address"])
            via = tuple(NodeId.parse(hop) for hop in command.get("via", ()))
            ids = await self.send(NodeId.parse(command["to"]), int(command["count"]), int(command.get("size", 64)), via)
            return {"ids": ids}
        if op == "flood":
            return await self.flood(
                NodeId.parse(command["to"]), float(command["seconds"]), int(command.get("size", 1024))
            )
        if op == "wait":
            status = DeliveryStatus[command.get("status", "delivered")]
            return await self.wait(status, float(command.get("timeout", 30)))
        if op == "grant":
            granted = self.node.grant(NodeId.parse(command["peer"]), float(command["rate"]),
                                      float(command.get("burst", command["rate"])),
                                      float(command.get("seconds", 3600)))  # fmt: skip
            return {"granted": granted}
        if op == "query":
            self.node.query_backups(NodeId.parse(command["peer"]))
            return {}
        raise ValueError(f"unknown op {op!r}")


def _emit(event: str, fields: dict[str, Any]) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def serve(arguments: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    identity = load_or_create_identity(arguments.identity)
    host, port = arguments.listen
    settings = RuntimeSettings(inbox_messages=arguments.inbox_messages)
    transport = TransportSettings(handshake_timeout_s=arguments.handshake_timeout)
    node = await Node.start(identity, host, port, settings=transport, relay=arguments.relay, runtime=settings)
    for node_id, address in arguments.peer:
        node.addresses[node_id] = address
    process = NodeProcess(node, arguments.role)
    _emit(READY_EVENT, {"node_id": identity.node_id.hex, "port": node.endpoint.local_address[1],
                        "role": arguments.role, "pid": os.getpid()})  # fmt: skip
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    deadline = time.monotonic() + arguments.max_seconds
    try:
        while time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(reader.readline(), min(1.0, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                continue
            if not line:
                break  # stdin closed: the parent is done with us
            op = "error"
            try:
                command = json.loads(line)
                op = str(command.get("op"))
                answer = await asyncio.wait_for(process.obey(command), max(0.0, deadline - time.monotonic()))
            except Exception as error:  # a bad command is answered, not fatal
                answer = {"error": f"{type(error).__name__}: {error}"}
            _emit(op, answer)
    finally:
        await node.close()


def _peer(text: str) -> tuple[NodeId, tuple[str, int]]:
    node_id, _, address = text.partition("=")
    return NodeId.parse(node_id), parse_host_port(address, allow_port_zero=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identity", type=Path, required=True, help="identity file (created when missing)")
    parser.add_argument("--listen", type=parse_host_port, default=("127.0.0.1", 0))
    parser.add_argument("--relay", type=lambda text: parse_host_port(text, allow_port_zero=False), default=None)
    parser.add_argument("--peer", type=_peer, action="append", default=[], help="NODEID=HOST:PORT, repeatable")
    parser.add_argument("--role", choices=("sink", "relay", "sender"), default="sink")
    parser.add_argument("--inbox-messages", type=int, default=RuntimeSettings().inbox_messages)
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=TransportSettings().handshake_timeout_s,
        help="seconds a dial may take (a transport attempt fails after it)",
    )
    parser.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long in any case")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    arguments = parser.parse_args()
    if arguments.profile is None:
        asyncio.run(serve(arguments))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(serve(arguments))
    finally:
        profiler.disable()
        profiler.dump_stats(arguments.profile)


if __name__ == "__main__":
    main()
