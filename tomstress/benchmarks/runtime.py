"""The protocol runtime's figures, in one run: ACKed throughput, ping beside a transport-only
ping, and ping during a hostile flood.

    python -m tomstress.benchmarks.runtime [--seconds 10] [--count 300] [--profile] [--json]

- throughput: two node processes (tomstress.benchmarks.node_process); the sender sends 1 KiB
  encrypted Chats as fast as back-pressure allows for `--seconds`, the receiver (a sink, which
  granted the sender a budget) counts; delivered/s at the receiver and Delivered statuses/s at
  the sender. With `--profile`, both run under cProfile and the top functions by cumulative
  time, and the share of own time in crypto, aioquic, msgpack, the runtime, come with it;
- ping: two Nodes in this process, a tracked Chat answered by a tracked Chat (each ACKed, the
  ACKs leave after the answer), next to two bare Endpoints exchanging sealed envelopes as frames
  (the answer sealed and sent from `on_delivery`, no runtime): p50s and the difference;
- flood: the same runtime ping while a third peer sends ten times the anonymous budget to the
  answering node (pre-sealed envelopes: its own sealing is not on the answering node's CPU),
  beside the quiet baseline.
No timed asserts: figures only (noisy on a shared machine; compare within a run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tomproto.core.antispam import anonymous_rate_per_s
from tomproto.core.transport_events import Received
from tomproto.errors import TransportError
from tomproto.identity import Identity
from tomproto.node import Node, ReceivedMessage
from tomproto.sealing import open_envelope, seal_envelope
from tomproto.transport import Endpoint, Transport
from tomproto.wire.envelope import MessageType
from tomstress.benchmarks.children import read_json_line, wait_or_kill
from tomstress.stats import summarize

LOOPBACK = "127.0.0.1"
CATEGORIES = {  # own time by where the function lives (first match wins)
    "crypto": ("nacl", "sodium", "tomproto/crypto", "cryptography", "_hazmat"),
    "aioquic": ("aioquic", "pylsqpack"),
    "msgpack": ("msgpack", "tomproto/wire"),
    "runtime": ("tomproto/core/runtime", "tomproto/core/delivery", "tomproto/core/backup", "tomproto/node.py",
                "tomproto/core/antispam", "tomproto/core/dedup", "tomproto/core/liveness", "tomproto/sealing"),
    "transport": ("tomproto/core", "tomproto/transport"),
    "asyncio": ("asyncio", "selectors"),
}  # fmt: skip


# -- throughput between two processes ----------------------------------------------------------


def _node(identity: Path, role: str, profile: Path | None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tomstress.benchmarks.node_process", "--identity", str(identity),
               "--role", role, "--max-seconds", "600"]  # fmt: skip
    if profile is not None:
        command += ["--profile", str(profile)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _ask(process: subprocess.Popen[str], timeout_s: float, **command: Any) -> dict[str, Any]:
    assert process.stdin is not None  # noqa: S101 - we asked for a pipe
    process.stdin.write(json.dumps(command) + "\n")
    process.stdin.flush()
    return read_json_line(process, str(command["op"]), timeout_s)


def _profile_summary(path: Path, top: int = 12) -> dict[str, Any]:
    stats = pstats.Stats(str(path))
    own: dict[str, float] = dict.fromkeys([*CATEGORIES, "other"], 0.0)
    rows = []
    for (filename, line, name), (_, _, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        category = next((c for c, marks in CATEGORIES.items() if any(m in filename for m in marks)), "other")
        if name in ("select", "poll", "epoll.poll") or "method 'poll'" in name or "select" in name:
            category = "idle"
        own[category] = own.get(category, 0.0) + tottime
        rows.append((cumtime, f"{Path(filename).name}:{line}({name})"))
    rows.sort(reverse=True)
    busy = sum(value for key, value in own.items() if key != "idle") or 1.0
    return {
        "own_time_share_of_busy": {key: round(value / busy, 3) for key, value in own.items() if key != "idle"},
        "idle_s": round(own.get("idle", 0.0), 2),
        "top_cumulative": [f"{cumtime:.2f}s {where}" for cumtime, where in rows[:top]],
    }


def throughput(seconds: float, profile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        receiver = _node(folder / "r.key", "sink", folder / "receiver.prof" if profile else None)
        sender = _node(folder / "s.key", "sender", folder / "sender.prof" if profile else None)
        try:
            r_ready = read_json_line(receiver, "ready", 20)
            s_ready = read_json_line(sender, "ready", 20)
            sender_id, receiver_id = s_ready["node_id"], r_ready["node_id"]
            _ask(receiver, 10, op="grant", peer=sender_id, rate=1e6, burst=1e6)
            assert sender.stdin is not None  # noqa: S101
            # Tell the sender where the receiver is: a known peer is dialled at its address.
            _ask(sender, 30, op="send", to=receiver_id, count=1, size=16, address=f"{LOOPBACK}:{r_ready['port']}")
            flooded = _ask(sender, seconds + 60, op="flood", to=receiver_id, seconds=seconds, size=1024)
            time.sleep(2.0)  # the last ACKs
            r_report = _ask(receiver, 10, op="report")
            s_report = _ask(sender, 10, op="report")
        finally:
            for process in (receiver, sender):
                if process.stdin is not None:
                    process.stdin.close()
                wait_or_kill(process, 30)
        span_s = (r_report["last_received_ns"] - r_report["first_received_ns"]) / 1e9
        result: dict[str, Any] = {
            "seconds": round(flooded["seconds"], 2),
            "sent": flooded["sent"],
            "received": r_report["received_count"],
            "received_per_s": round((r_report["received_count"] - 1) / span_s) if span_s > 0 else None,
            "sent_per_s": round(flooded["sent"] / flooded["seconds"]),
            "delivered_statuses_per_s": round(flooded["delivered_while_sending"] / flooded["seconds"]),
            "delivered_statuses_total": s_report["status_counts"].get("delivered", 0),
            "sender_backpressure_waits": s_report["backpressure"],
            "receiver_duplicates": r_report["duplicates"],
        }
        if profile:
            result["profile"] = {
                "sender": _profile_summary(folder / "sender.prof"),
                "receiver": _profile_summary(folder / "receiver.prof"),
            }
        return result


# -- ping: through the runtime, and bare endpoints ---------------------------------------------


async def _runtime_rtts(count: int, interval_s: float, flood_rate: float = 0.0) -> list[float]:
    a_identity, b_identity = Identity.generate(), Identity.generate()
    a = await Node.start(a_identity, LOOPBACK, 0)
    b = await Node.start(b_identity, LOOPBACK, 0)
    waiter: asyncio.Future[None] | None = None

    def answer(message: ReceivedMessage) -> None:
        b.send_message_nowait(message.sender, message.plaintext)

    def answered(message: ReceivedMessage) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    b.events.subscribe(answer, ReceivedMessage)
    a.events.subscribe(answered, ReceivedMessage)
    b.grant(a_identity.node_id, 1e4, 1e4, 3600)
    a.grant(b_identity.node_id, 1e4, 1e4, 3600)
    flooding: asyncio.Task[int] | None = None
    attacker: Endpoint | None = None
    try:
        a.addresses[b.node_id] = b.endpoint.local_address
        await a.endpoint.connect(b.node_id, b.endpoint.local_address)
        if flood_rate > 0:
            attacker = await Endpoint.open(Identity.generate(), LOOPBACK, 0)
            flooding = asyncio.ensure_future(_flood(attacker, b, flood_rate, count * interval_s + 2))
            await asyncio.sleep(1.0)  # the flood is under way, its burst spent
        rtts = []
        loop = asyncio.get_running_loop()
        for _ in range(count):
            waiter = loop.create_future()
            started = time.perf_counter_ns()
            a.send_message_nowait(b.node_id, b"p" * 64)
            await asyncio.wait_for(waiter, 10)
            rtts.append((time.perf_counter_ns() - started) / 1e6)
            await asyncio.sleep(interval_s)
        return rtts
    finally:
        if flooding is not None:
            flooding.cancel()
            await asyncio.gather(flooding, return_exceptions=True)
        if attacker is not None:
            await attacker.close()
        await a.close()
        await b.close()


async def _flood(attacker: Endpoint, target: Node, rate_per_s: float, seconds: float) -> int:
    """Pre-sealed Chats to `target` at `rate_per_s` (their timestamps stay fresh for the run)."""
    identity = attacker.identity
    now_ms = time.time_ns() // 1_000_000
    wires = [
        seal_envelope(identity, target.node_id, MessageType.Chat, b"flood", now_ms=now_ms).wire
        for _ in range(int(rate_per_s * seconds) + 1)
    ]
    await attacker.connect(target.node_id, target.endpoint.local_address)
    sent = 0
    started = time.monotonic()
    while sent < len(wires):
        due = int((time.monotonic() - started) * rate_per_s)
        while sent < min(due, len(wires)):
            with contextlib.suppress(TransportError):  # a busy connection drops a flood frame, not the run
                attacker.send_frame_now(target.node_id, wires[sent], urgent=True)
            sent += 1
        await asyncio.sleep(0.005)
    return sent


async def _transport_rtts(count: int, interval_s: float) -> list[float]:
    a_identity, b_identity = Identity.generate(), Identity.generate()
    a = await Endpoint.open(a_identity, LOOPBACK, 0)
    b = await Endpoint.open(b_identity, LOOPBACK, 0)
    waiter: asyncio.Future[None] | None = None

    def answer(frame: Received) -> bool:
        opened = open_envelope(b_identity, frame.data)
        reply = seal_envelope(
            b_identity, frame.peer, MessageType.Chat, opened.plaintext, now_ms=time.time_ns() // 10**6
        )
        b.reply(frame.connection, reply.wire, Transport.stream)
        return False

    def answered(frame: Received) -> bool:
        open_envelope(a_identity, frame.data)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return False

    b.on_delivery = answer
    a.on_delivery = answered
    try:
        await a.connect(b_identity.node_id, b.local_address)
        rtts = []
        loop = asyncio.get_running_loop()
        for _ in range(count):
            waiter = loop.create_future()
            started = time.perf_counter_ns()
            probe = seal_envelope(a_identity, b_identity.node_id, MessageType.Chat, b"p" * 64,
                                  now_ms=time.time_ns() // 10**6)  # fmt: skip
            a.send_frame_now(b_identity.node_id, probe.wire)
            await asyncio.wait_for(waiter, 10)
            rtts.append((time.perf_counter_ns() - started) / 1e6)
            await asyncio.sleep(interval_s)
        return rtts
    finally:
        await a.close()
        await b.close()


def _figures(rtts: list[float]) -> dict[str, Any]:
    summary = summarize(rtts)
    return {"n": summary.n, "min": round(summary.min or 0.0, 3), "p50": round(summary.p50 or 0.0, 3),
            "p99": round(summary.p99 or 0.0, 3)}  # fmt: skip


async def pings(count: int, interval_s: float) -> dict[str, Any]:
    transport = _figures(await _transport_rtts(count, interval_s))
    runtime = _figures(await _runtime_rtts(count, interval_s))
    flood_rate = 10 * anonymous_rate_per_s()
    flooded = _figures(await _runtime_rtts(count, interval_s, flood_rate))
    return {
        "transport_only_ms": transport,
        "runtime_ms": runtime,
        "runtime_minus_transport_p50_ms": round(runtime["p50"] - transport["p50"], 3),
        "during_flood": {"flood_per_s": flood_rate, "runtime_ms": flooded,
                         "flood_over_quiet_p50": round(flooded["p50"] / runtime["p50"], 2)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput: seconds of sending")
    parser.add_argument("--count", type=int, default=300, help="pings per method")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between pings")
    parser.add_argument("--profile", action="store_true", help="profile both throughput processes (slower)")
    parser.add_argument("--json", action="store_true", help="one JSON object (the default prints it indented)")
    arguments = parser.parse_args()
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "throughput_1KiB": throughput(arguments.seconds, arguments.profile),
        "ping": asyncio.run(pings(arguments.count, arguments.interval)),
    }
    print(json.dumps(results) if arguments.json else json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
