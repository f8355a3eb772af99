"""The protocol runtime's figures, in one run: ACKed throughput, ping beside a transport-only
ping, and ping during a hostile flood.

    python -m tomstress.benchmarks.runtime [--seconds 10] [--count 300] [--rounds 3] [--interval 10ms]
                                           [--size 64] [--profile] [--json]

- throughput: two node processes (tomstress.benchmarks.node_process); the sender sends 1 KiB
  encrypted Chats as fast as back-pressure allows for `--seconds`, the receiver (a sink, which
  granted the sender a budget) counts; delivered/s at the receiver and Delivered statuses/s at
  the sender. With `--profile`, both run under cProfile and the top functions by cumulative
  time, and the share of own time in crypto, aioquic, msgpack, the runtime, come with it;
- ping: each responder in its own process (tomstress.benchmarks.ping_children), the pingers in
  this one. Transport-only: a bare Endpoint answering each probe as the responder did before the
  runtime (open, `encode_reply`, seal, `Endpoint.reply`), pinged from a bare Endpoint with the
  same clock points as tomstress/ping.py (before the probe is built, to its reply opened). Runtime:
  the real `PingRun` (`tom-stress ping`: Hello, tracked probes, ACKs) against the real Responder.
  `--rounds` rounds of `--count` probes at `--interval` per side, alternating which goes first, so
  that the machine's noise falls on both: p50/p90/p99, our send and receive stacks and the
  responder's hold (p50), the p50 of each round, and the difference and ratio of the p50s;
- flood: the same runtime ping once more while a third process sends ten times the anonymous
  budget to the runtime responder (pre-sealed envelopes: its own sealing is not on the responder's
  CPU, nor on the pinger's), beside the quiet runtime figures.
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
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomproto.core.antispam import anonymous_rate_per_s
from tomproto.core.transport_events import Received
from tomproto.durations import parse_duration
from tomproto.identity import Identity, NodeId
from tomproto.node import Node
from tomproto.sealing import EnvelopeRejected, open_envelope, seal_envelope
from tomproto.transport import Endpoint, Transport
from tomproto.wire.envelope import MessageType
from tomstress.archive import Archive
from tomstress.benchmarks.children import read_json_line, wait_or_kill
from tomstress.engine import Outcome
from tomstress.ping import PingConfig, PingRun
from tomstress.probe import Probe, encode_probe, parse_reply
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


# -- ping: through the runtime, and bare endpoints, against responders in child processes ------


def _child(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tomstress.benchmarks.ping_children", *arguments],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip


def _close(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    wait_or_kill(process, 10)


@dataclass
class Samples:
    """One side's probes (ms): RTT, and where it went when known (our send and receive stacks, the
    responder's hold), with the RTT p50 of each round."""

    rtt: list[float] = field(default_factory=list)
    send_stack: list[float] = field(default_factory=list)
    receive_stack: list[float] = field(default_factory=list)
    responder_hold: list[float] = field(default_factory=list)
    lost: int = 0
    round_p50s: list[float] = field(default_factory=list)

    def add_round(self, rtt: list[float], send: list[float], receive: list[float], hold: list[float],
                  lost: int) -> None:  # fmt: skip
        self.rtt += rtt
        self.send_stack += send
        self.receive_stack += receive
        self.responder_hold += hold
        self.lost += lost
        if rtt:
            self.round_p50s.append(round(summarize(rtt).p50 or 0.0, 3))

    def figures(self) -> dict[str, Any]:
        rtt = summarize(self.rtt)

        def p50(values: list[float]) -> float | None:
            return None if not values else round(summarize(values).p50 or 0.0, 3)

        return {
            "n": rtt.n, "lost": self.lost,
            "min": round(rtt.min or 0.0, 3), "p50": round(rtt.p50 or 0.0, 3), "p90": round(rtt.p90 or 0.0, 3),
            "p99": round(rtt.p99 or 0.0, 3), "round_p50s": self.round_p50s,
            "stack_p50": {"send": p50(self.send_stack), "receive": p50(self.receive_stack),
                          "responder_hold": p50(self.responder_hold)},
        }  # fmt: skip


class TransportPinger:
    """tomstress/ping.py's stream ping as it was before the runtime, on a bare Endpoint: open-loop
    probes (slot k at start + k x interval), each sealed and sent as one frame; the clock starts
    before the probe is built and stops when its reply is opened."""

    def __init__(self, endpoint: Endpoint, peer: NodeId) -> None:
        self.endpoint = endpoint
        self.peer = peer
        self._run_id = ""
        self._sent_ns: dict[int, int] = {}  # seq -> clock start, while unanswered
        self._rtt: dict[int, float] = {}
        self._receive: list[float] = []
        self._send: list[float] = []
        self._hold: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered = asyncio.Event()  # every probe of the run sent and answered
        self._all_sent = False
        endpoint.on_delivery = self._on_delivery

    def _on_delivery(self, received: Received) -> None:
        try:
            opened = open_envelope(self.endpoint.identity, received.data)
        except EnvelopeRejected:
            return
        received_ns = time.monotonic_ns()  # the reply opened: where tomstress/ping.py stops the clock
        reply = parse_reply(opened.plaintext)
        if reply is None or reply.run_id != self._run_id:
            return
        sent_ns = self._sent_ns.pop(reply.seq, None)
        if sent_ns is not None:
            self._rtt[reply.seq] = (received_ns - sent_ns) / 1e6
            self._receive.append((received_ns - round(received.arrived_at_s * 1e9)) / 1e6)
            if self._all_sent and not self._sent_ns:
                self._answered.set()
        if reply.follow_up is not None:
            self._hold.append(reply.follow_up.hold_ns / 1e6)

    def _probe(self, seq: int, size: int) -> None:
        sent_ns = time.monotonic_ns()  # before the probe is built
        probe = Probe(self._run_id, "ping", seq, sent_ns, time.time_ns(), size)
        sealed = seal_envelope(self.endpoint.identity, self.peer, MessageType.Chat, encode_probe(probe),
                               now_ms=time.time_ns() // 1_000_000)  # fmt: skip
        self._sent_ns[seq] = sent_ns
        sent = self.endpoint.send_frame_now(self.peer, sealed.wire)
        if sent is None:  # no room at once: wait for it in a task (the next slot does not wait)
            task = asyncio.ensure_future(self._send_later(sent_ns, sealed.wire))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif sent.left_ns is not None:
            self._send.append((sent.left_ns - sent_ns) / 1e6)

    async def _send_later(self, sent_ns: int, wire: bytes) -> None:
        sent = await self.endpoint.send_frame(self.peer, wire)
        if sent.left_ns is not None:
            self._send.append((sent.left_ns - sent_ns) / 1e6)

    async def run(self, samples: Samples, count: int, interval_s: float, size: int, timeout_s: float) -> None:
        self._run_id = secrets.token_hex(8)
        self._sent_ns.clear()
        self._answered.clear()
        self._all_sent = False
        self._rtt, self._receive, self._send, self._hold = {}, [], [], []
        start = time.monotonic()
        for seq in range(count):
            delay = start + seq * interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._probe(seq, size)
        self._all_sent = True
        if self._sent_ns:  # grace: one timeout after the last send, or until every probe has its answer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), timeout_s)
        for task in self._tasks:
            task.cancel()
        rtt = [self._rtt[seq] for seq in sorted(self._rtt)]
        samples.add_round(rtt, self._send, self._receive, self._hold, count - len(rtt))


async def _ping_run(node: Node, samples: Samples, peer: NodeId, port: int, count: int, interval_s: float,
                    size: int, timeout_s: float) -> None:  # fmt: skip
    """The real `tom-stress ping` (PingRun: Hello, then tracked probes answered by tracked replies)."""
    config = PingConfig(peer, (LOOPBACK, port), count, interval_s, timeout_s, size, Transport.stream)
    with tempfile.TemporaryDirectory() as directory, Archive.create(Path(directory), "bench", "ping") as archive:
        run = PingRun(config, node, archive, asyncio.Event())
        summary = await run.run()
    if run.observations.hello_error:
        raise RuntimeError(f"the runtime ping did not start: {summary.get('hello')}")
    records = sorted(run.tracker.records.values(), key=lambda record: record.seq)
    ok = [record for record in records if record.rtt_s is not None and record.outcome is Outcome.ok]

    def ms(values: list[float | None]) -> list[float]:
        return [value * 1000 for value in values if value is not None]

    samples.add_round(ms([record.rtt_s for record in ok]), ms([record.send_stack_s for record in ok]),
                      ms([record.receive_stack_s for record in ok]), ms([record.responder_hold_s for record in ok]),
                      count - len(ok))  # fmt: skip


async def _pings(arguments: argparse.Namespace, transport: dict[str, Any], runtime: dict[str, Any],
                 flooder: subprocess.Popen[str]) -> dict[str, Any]:  # fmt: skip
    count, interval_s, size, timeout_s = arguments.count, arguments.interval, arguments.size, 10.0
    transport_id, runtime_id = NodeId.parse(transport["node_id"]), NodeId.parse(runtime["node_id"])
    endpoint = await Endpoint.open(Identity.generate(), LOOPBACK, 0)
    node = await Node.start(Identity.generate(), LOOPBACK, 0)
    sides = {"transport_only": Samples(), "runtime": Samples()}
    flooded = Samples()
    order: list[str] = []
    try:
        pinger = TransportPinger(endpoint, transport_id)
        await endpoint.connect(transport_id, (LOOPBACK, transport["port"]))
        for index in range(arguments.rounds):  # alternate which side goes first
            for side in ("transport_only", "runtime") if index % 2 == 0 else ("runtime", "transport_only"):
                order.append(side)
                if side == "transport_only":
                    await pinger.run(sides[side], count, interval_s, size, timeout_s)
                else:
                    await _ping_run(node, sides[side], runtime_id, runtime["port"], count, interval_s, size,
                                    timeout_s)  # fmt: skip
        # The runtime ping again, while a third peer floods the runtime responder.
        assert flooder.stdin is not None  # noqa: S101 - we asked for a pipe
        flooder.stdin.write("go\n")
        flooder.stdin.flush()
        await asyncio.sleep(1.0)  # the flood is under way, its burst spent
        await _ping_run(node, flooded, runtime_id, runtime["port"], count, interval_s, size, timeout_s)
    finally:
        await endpoint.close()
        await node.close()
    transport_figures = sides["transport_only"].figures()
    runtime_figures = sides["runtime"].figures()
    flooded_figures = flooded.figures()
    return {
        "settings": {"rounds": arguments.rounds, "count_per_round": count, "interval_s": interval_s,
                     "probe_plaintext_bytes": size, "order": order},
        "transport_only_ms": transport_figures,
        "runtime_ms": runtime_figures,
        "runtime_minus_transport_p50_ms": round(runtime_figures["p50"] - transport_figures["p50"], 3),
        "runtime_over_transport_p50": round(runtime_figures["p50"] / transport_figures["p50"], 3),
        "during_flood": {"runtime_ms": flooded_figures,
                         "flood_over_quiet_p50": round(flooded_figures["p50"] / runtime_figures["p50"], 2)},
    }  # fmt: skip


def pings(arguments: argparse.Namespace) -> dict[str, Any]:
    """Each responder in its own process; the pingers here, one side at a time."""
    transport_child = _child("transport-responder")
    runtime_child = _child("runtime-responder")
    flooder: subprocess.Popen[str] | None = None
    try:
        transport = read_json_line(transport_child, "ready", 20)
        runtime = read_json_line(runtime_child, "ready", 20)
        flood_rate = 10 * anonymous_rate_per_s()
        flood_seconds = arguments.count * arguments.interval + 3
        flooder = _child("envelope-flood", "--target-id", runtime["node_id"], "--target-port", str(runtime["port"]),
                         "--rate", str(flood_rate), "--seconds", str(flood_seconds))  # fmt: skip
        read_json_line(flooder, "ready", 60)
        results = asyncio.run(_pings(arguments, transport, runtime, flooder))
        flood = read_json_line(flooder, "done", flood_seconds + 30)
        results["during_flood"].update(flood_per_s=flood_rate, flood_sent=flood["sent"],
                                       flood_dropped_busy=flood["dropped_busy"])  # fmt: skip
        return results
    finally:
        for process in (transport_child, runtime_child, *([flooder] if flooder is not None else [])):
            _close(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput: seconds of sending")
    parser.add_argument("--count", type=int, default=300, help="pings per side per round (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each pinging both sides (default 3)")
    parser.add_argument("--interval", type=parse_duration, default=0.01, help="time between pings (default 10ms)")
    parser.add_argument("--size", type=int, default=64, help="probe plaintext bytes (default 64)")
    parser.add_argument("--profile", action="store_true", help="profile both throughput processes (slower)")
    parser.add_argument("--json", action="store_true", help="one JSON object (the default prints it indented)")
    arguments = parser.parse_args()
    if min(arguments.count, arguments.rounds) < 1 or arguments.interval <= 0 or arguments.seconds <= 0:
        parser.error("counts must be positive and the interval a positive duration")
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "throughput_1KiB": throughput(arguments.seconds, arguments.profile),
        "ping": pings(arguments),
    }
    print(json.dumps(results) if arguments.json else json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
