"""What a flood of forged packets costs the users of a responder and of tom-relay.

    python -m tomstress.benchmarks.flood [--rate 2500] [--seconds 5] [--samples 10]
                                         [--targets responder,low-memory,always,relay] [--json]

For each target, quiet and then under a flood (tomstress.benchmarks.flooder from 127.0.0.2, its
own process), it measures: a running ping's RTT p50 / p99 (`tom-stress ping`, its own process,
started once the flood runs); how long a new connection takes (a fresh node's handshake, dialled
from this process every few hundred ms during the window); for tom-relay, how long a new node
takes to register, and the ping goes through the relay (`--relay-only`). Targets: a responder,
the same with `--low-memory`, the same with `--address-validation always` (every handshake pays
a Retry round trip: its cost is the difference in handshake time), and tom-relay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomproto.identity import Identity, NodeId
from tomproto.transport import Endpoint, TransportError
from tomstress.benchmarks.children import read_json_line, stop

TOM_STRESS = [sys.executable, "-m", "tomstress"]
START_TIMEOUT_S = 20.0
PING_INTERVAL_S = 0.01


@dataclass
class Row:
    target: str
    phase: str
    ping: dict[str, Any] = field(default_factory=dict)
    handshake_ms: list[float] = field(default_factory=list)
    registration_ms: list[float] = field(default_factory=list)
    failures: int = 0
    flood: dict[str, Any] = field(default_factory=dict)


def _json_line(process: subprocess.Popen[str], event: str) -> dict[str, Any]:
    return read_json_line(process, event, START_TIMEOUT_S)


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


async def _sample_connections(
    peer: NodeId,
    address: tuple[str, int] | None,
    relay: tuple[str, int] | None,
    row: Row,
    samples: int,
    spacing_s: float,
) -> None:
    """A fresh node dials the target `samples` times: handshake (and registration) times."""
    for _ in range(samples):
        started = time.monotonic()
        try:
            endpoint = await Endpoint.open(Identity.generate(), "127.0.0.1", 0, relay=relay)
        except TransportError:
            row.failures += 1
            await asyncio.sleep(spacing_s)
            continue
        registered = time.monotonic()
        if relay is not None:
            row.registration_ms.append((registered - started) * 1000)
        try:
            await endpoint.connect(peer, address, timeout_s=10.0)
            row.handshake_ms.append((time.monotonic() - registered) * 1000)
        except TransportError:
            row.failures += 1
        finally:
            await endpoint.close()
        await asyncio.sleep(spacing_s)


async def _phase(
    row: Row, target: dict[str, Any], flood_rate: float, seconds: float, samples: int, output_dir: Path
) -> None:
    flooder = ping = None
    try:  # whatever fails, no child outlives its phase to load the next one
        if flood_rate > 0:
            flooder = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the child runs alongside
                [sys.executable, "-m", "tomstress.benchmarks.flooder", "--target", target["flood_target"],
                 "--kind", target["flood_kind"], "--rate", str(flood_rate), "--duration", str(seconds + 2.0)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            await asyncio.to_thread(_json_line, flooder, "ready")
        count = int(seconds / PING_INTERVAL_S)
        ping = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the child runs alongside
            [*TOM_STRESS, "ping", *target["ping_args"], "--count", str(count),
             "--interval", f"{PING_INTERVAL_S * 1000:g}ms", "--timeout", "5s", "--json", "--no-live",
             "--output-dir", str(output_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        await asyncio.sleep(0.5)
        relay = target.get("relay")
        await _sample_connections(target["peer"], target.get("address"), relay, row, samples, seconds / samples / 2)
        stdout, _ = await asyncio.to_thread(ping.communicate, timeout=seconds + 30)
        summary = json.loads(stdout) if stdout.strip() else {}
        rtt = summary.get("rtt_ms", {})
        probes = summary.get("probes", {})
        row.ping = {"p50": rtt.get("p50"), "p99": rtt.get("p99"), "max": rtt.get("max"),
                    "ok": probes.get("ok", 0), "sent": probes.get("sent", count)}  # fmt: skip
        if flooder is not None:
            row.flood = await asyncio.to_thread(_json_line, flooder, "done")
    finally:
        for child in (ping, flooder):
            if child is not None:
                stop(child)


def _start_responder(*extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [*TOM_STRESS, "responder", "--listen", "127.0.0.1:0", "--quiet", *extra], stdout=subprocess.PIPE, text=True
    )
    try:
        return process, _json_line(process, "listening")
    except BaseException:
        stop(process)
        raise


async def _bench(arguments: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    output_dir = Path(tempfile.mkdtemp(prefix="tom-flood-"))
    responders = [("responder", "responder", ()), ("low-memory", "responder --low-memory", ("--low-memory",)),
                  ("always", "responder retry always", ("--address-validation", "always"))]  # fmt: skip
    for key, name, extra in responders:
        if key not in arguments.targets:
            continue
        process, ready = _start_responder(*extra)
        try:
            address = f"127.0.0.1:{ready['port']}"
            low_memory = ("--low-memory",) if "--low-memory" in extra else ()
            target = {
                "peer": NodeId.parse(ready["node_id"]),
                "address": ("127.0.0.1", ready["port"]),
                "ping_args": ["--connect", ready["node_id"], "--target-addr", address, *low_memory],
                "flood_target": address,
                "flood_kind": "quic",
            }
            for phase, rate in (("quiet", 0.0), ("flood", arguments.rate)):
                row = Row(name, phase)
                await _phase(row, target, rate, arguments.seconds, arguments.samples, output_dir)
                rows.append(row)
        finally:
            stop(process)
    if "relay" not in arguments.targets:
        return rows
    relay = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the relay runs alongside
        [*TOM_STRESS, "relay", "--listen", "127.0.0.1:0", "--stats-interval", "1h"], stdout=subprocess.PIPE, text=True
    )
    responder = None
    try:
        relay_address = _json_line(relay, "listening")["addresses"][0]
        host, _, port = relay_address.rpartition(":")
        responder, ready = _start_responder("--relay", relay_address)
        target = {
            "peer": NodeId.parse(ready["node_id"]),
            "address": None,
            "relay": (host, int(port)),
            "ping_args": ["--connect", ready["node_id"], "--relay", relay_address, "--relay-only"],
            "flood_target": relay_address,
            "flood_kind": "relay",
        }
        for phase, rate in (("quiet", 0.0), ("flood", arguments.rate)):
            row = Row("tom-relay (relayed)", phase)
            await _phase(row, target, rate, arguments.seconds, arguments.samples, output_dir)
            rows.append(row)
    finally:
        if responder is not None:
            stop(responder)
        stop(relay)
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'target':<24} {'phase':<6} {'ping p50':>8} {'p99':>7} {'max':>7} {'ok/sent':>9} "
        f"{'handshake p50':>13} {'max':>7} {'register p50':>12} {'max':>7} {'fail':>4} {'flood pkt/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ping = row.ping
        print(
            f"{row.target:<24} {row.phase:<6} "
            f"{_ms(ping.get('p50')):>8} {_ms(ping.get('p99')):>7} {_ms(ping.get('max')):>7} "
            f"{str(ping.get('ok')) + '/' + str(ping.get('sent')):>9} "
            f"{_ms(_median(row.handshake_ms)):>13} {_ms(max(row.handshake_ms, default=None)):>7} "
            f"{_ms(_median(row.registration_ms)):>12} {_ms(max(row.registration_ms, default=None)):>7} "
            f"{row.failures:>4} {row.flood.get('rate_per_s', '-'):>11}"
        )
    print("times in ms; handshake = a fresh node's QUIC handshake (through the relay for tom-relay), "
          "register = HELLO to REGISTERED; the flood comes from 127.0.0.2")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2500.0, help="flood packets per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="each phase's ping duration")
    parser.add_argument("--samples", type=int, default=10, help="new connections per phase")
    parser.add_argument("--targets", default="responder,low-memory,always,relay", help="comma-separated")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    arguments.targets = set(arguments.targets.split(","))
    rows = asyncio.run(_bench(arguments))
    if arguments.json:
        print(json.dumps([row.__dict__ for row in rows]))
    else:
        print_table(rows)


if __name__ == "__main__":
    main()
