"""Ping through the whole stack against bare aioquic and a plain UDP echo, in one run.

    python -m tomstress.benchmarks.ping [--count 200] [--rounds 3] [--interval 10ms] [--size 64]
                                        [--oneway-count 5000] [--json]

The far side runs in another process (tomstress.benchmarks.peers). Each round measures, one after
the other and at the same interval: a plain UDP echo, a bare aioquic stream ping-pong, and
tom-stress's own ping (PingRun, the code behind `tom-stress ping`), all with the ping's wire size.
Then the one-way rate: 1 KiB encrypted Chat envelopes sealed and sent as fast as the sender can,
counted where they are opened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect as aioquic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from tomproto.core.certificates import node_certificate
from tomproto.core.quic import ALPN
from tomproto.durations import parse_duration
from tomproto.identity import Identity, NodeId
from tomproto.node import Node, ReceivedMessage
from tomproto.transport import Transport
from tomproto.wire.envelope import MessageType
from tomstress.archive import Archive
from tomstress.benchmarks.peers import REPORT_REQUEST
from tomstress.ping import PingConfig, PingRun
from tomstress.probe import Probe, encode_probe
from tomstress.stats import summarize

LOOPBACK = "127.0.0.1"


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, address: tuple[str, int]) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class StreamClient(QuicConnectionProtocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.waiters: dict[int, asyncio.Future[None]] = {}

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived) and event.end_stream:
            waiter = self.waiters.pop(event.stream_id, None)
            if waiter is not None:
                waiter.set_result(None)
        else:
            super().quic_event_received(event)

    async def exchange(self, payload: bytes) -> None:
        stream_id = self._quic.get_next_available_stream_id()
        self.waiters[stream_id] = asyncio.get_running_loop().create_future()
        self._quic.send_stream_data(stream_id, payload, end_stream=True)
        self.transmit()
        await asyncio.wait_for(self.waiters[stream_id], 10)


async def _paced(count: int, interval_s: float, exchange: Any) -> list[float]:
    """RTTs (ms) of `count` exchanges started at slot k x interval (one in flight at a time)."""
    rtts = []
    start = time.monotonic()
    for k in range(count):
        delay = start + k * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        begun = time.perf_counter_ns()
        await exchange()
        rtts.append((time.perf_counter_ns() - begun) / 1e6)
    return rtts


async def _udp_rtts(port: int, payload: bytes, count: int, interval_s: float) -> list[float]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(UdpClient, remote_addr=(LOOPBACK, port))

    async def exchange() -> None:
        client.waiter = loop.create_future()
        transport.sendto(payload)
        await asyncio.wait_for(client.waiter, 10)

    try:
        return await _paced(count, interval_s, exchange)
    finally:
        transport.close()


async def _quic_rtts(port: int, payload: bytes, count: int, interval_s: float) -> list[float]:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)
    configuration.certificate, configuration.private_key = node_certificate(Identity.generate())
    async with aioquic_connect(LOOPBACK, port, configuration=configuration, create_protocol=StreamClient) as client:
        return await _paced(count, interval_s, lambda: client.exchange(payload))  # type: ignore[attr-defined]


async def _ping_rtts(node: Node, peer: NodeId, port: int, count: int, interval_s: float, size: int) -> list[float]:
    config = PingConfig(peer, (LOOPBACK, port), count, interval_s, 10.0, size, Transport.stream)
    with tempfile.TemporaryDirectory() as directory, Archive.create(Path(directory), "bench", "ping") as archive:
        run = PingRun(config, node, archive, asyncio.Event())
        await run.run()
    return [record.rtt_s * 1000 for record in run.tracker.records.values() if record.rtt_s is not None]


async def _oneway_rate(node: Node, sink: NodeId, port: int, count: int) -> dict[str, Any]:
    plaintext = os.urandom(1024)
    await node.endpoint.connect(sink, (LOOPBACK, port))
    started = time.perf_counter()
    for index in range(count):
        await node.send_message(sink, plaintext)
        if index % 64 == 0:
            await asyncio.sleep(0)  # let acknowledgements in
    send_s = time.perf_counter() - started
    reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    subscription = node.events.subscribe(
        lambda message: reports.put_nowait(json.loads(message.plaintext)), ReceivedMessage
    )
    report: dict[str, Any] = {"count": 0}
    deadline = time.monotonic() + 60
    while report["count"] < count and time.monotonic() < deadline:
        await node.send_message(sink, REPORT_REQUEST)
        report = await asyncio.wait_for(reports.get(), 30)
        if report["count"] < count:
            await asyncio.sleep(0.2)  # not all opened yet: ask again
    subscription.close()
    span_s = (report["last_ns"] - report["first_ns"]) / 1e9
    return {
        "envelopes": count,
        "opened": report["count"],
        "plaintext_bytes": 1024,
        "sender_rate_per_s": round(count / send_s),
        "received_rate_per_s": round((report["count"] - 1) / span_s) if span_s > 0 else None,
    }


def _figures(rtts: list[float]) -> dict[str, Any]:
    summary = summarize(rtts)
    return {"n": summary.n, "min": summary.min, "p50": summary.p50, "p99": summary.p99, "max": summary.max}


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    peers = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; its ready line is awaited before any timing
        [sys.executable, "-m", "tomstress.benchmarks.peers"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert peers.stdout is not None  # noqa: S101 - we asked for a pipe
        info = json.loads(peers.stdout.readline())
        node = await Node.start(Identity.generate(), LOOPBACK, 0)
        responder = NodeId.parse(info["responder_id"])
        probe = encode_probe(Probe("0" * 16, "ping", 0, 0, 0, arguments.size))
        wire = len(node.seal(responder, MessageType.Chat, probe).wire)
        payload = os.urandom(wire)
        rtts: dict[str, list[float]] = {"udp_echo": [], "bare_aioquic_stream": [], "tom_stress_ping": []}
        for _ in range(arguments.rounds):
            rtts["udp_echo"] += await _udp_rtts(info["udp_port"], payload, arguments.count, arguments.interval)
            rtts["bare_aioquic_stream"] += await _quic_rtts(
                info["quic_port"], payload, arguments.count, arguments.interval
            )
            rtts["tom_stress_ping"] += await _ping_rtts(
                node, responder, info["responder_port"], arguments.count, arguments.interval, arguments.size
            )
        oneway = await _oneway_rate(node, NodeId.parse(info["sink_id"]), info["sink_port"], arguments.oneway_count)
        await node.close()
    finally:
        if peers.stdin is not None:
            peers.stdin.close()
        try:
            peers.wait(timeout=10)
        except subprocess.TimeoutExpired:
            peers.kill()
    figures = {name: _figures(values) for name, values in rtts.items()}
    ratio = figures["tom_stress_ping"]["p50"] / figures["bare_aioquic_stream"]["p50"]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "settings": {"count_per_round": arguments.count, "rounds": arguments.rounds, "interval_s": arguments.interval,
                     "probe_plaintext_bytes": arguments.size, "wire_bytes": wire},
        "rtt_ms": figures,
        "ping_p50_over_bare_aioquic_p50": round(ratio, 2),
        "oneway_1KiB": oneway,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="exchanges per method per round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each running every method (default 3)")
    parser.add_argument("--interval", type=parse_duration, default=0.01, help="time between exchanges (default 10ms)")
    parser.add_argument("--size", type=int, default=64, help="probe plaintext bytes (default 64)")
    parser.add_argument("--oneway-count", type=int, default=5000, help="1 KiB envelopes for the one-way rate")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    arguments = parser.parse_args()
    if min(arguments.count, arguments.rounds, arguments.oneway_count) < 1 or arguments.interval <= 0:
        parser.error("counts must be positive and the interval a positive duration")
    results = asyncio.run(run(arguments))
    if arguments.json:
        print(json.dumps(results))
        return
    settings = results["settings"]
    print(f"ping benchmark on {results['machine']}, loopback, "
          f"{settings['rounds']} rounds x {settings['count_per_round']} "
          f"at {settings['interval_s'] * 1000:g} ms, {settings['wire_bytes']} B on the wire")  # fmt: skip
    for name, figures in results["rtt_ms"].items():
        print(
            f"  {name:<22} n={figures['n']:<5} "
            f"p50 {figures['p50']:.3f} ms   p99 {figures['p99']:.3f} ms   min {figures['min']:.3f} ms"
        )
    print(f"  ping p50 / bare aioquic p50 = {results['ping_p50_over_bare_aioquic_p50']}")
    oneway = results["oneway_1KiB"]
    print(f"  one-way 1 KiB encrypted envelopes: {oneway['received_rate_per_s']}/s opened at the receiver "
          f"(sender sealed and sent {oneway['sender_rate_per_s']}/s)")  # fmt: skip


if __name__ == "__main__":
    main()
