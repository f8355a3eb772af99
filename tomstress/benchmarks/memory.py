"""Resident memory of a responder: under a heavy load with and without --low-memory, or after a
long continuous ping (a soak).

    python -m tomstress.benchmarks.memory [--clients 8] [--seconds 20] [--size 60000]
    python -m tomstress.benchmarks.memory --soak 600 [--responder-command "build/out/x86_64/tom-stress"]

The figure is the responder's Python process itself: for a frozen binary, the innermost process
(staticx and PyInstaller's one-file bootloader each run the program in a child), read from
/proc/PID/status (VmRSS now, VmHWM the peak). The load: several clients, each sending large
probes as fast as back-pressure lets it, for a fixed time; the same load for both profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tomproto.identity import Identity, NodeId
from tomproto.node import Node
from tomproto.transport import Transport, TransportError
from tomstress.archive import Archive
from tomstress.ping import PingConfig, PingRun
from tomstress.probe import Probe, encode_probe

LOOPBACK = "127.0.0.1"


def innermost_process(pid: int) -> int:
    """The deepest descendant of `pid` (the Python process inside the binary's wrappers)."""
    for _ in range(10):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return pid
        if not children:
            return pid
        pid = int(children[-1])
    return pid


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def start_responder(command: list[str], low_memory: bool) -> tuple[subprocess.Popen[str], NodeId, int]:
    arguments = [*command, "responder", "--listen", f"{LOOPBACK}:0", "--quiet"]
    if low_memory:
        arguments.append("--low-memory")
    process = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None  # noqa: S101
    ready = json.loads(process.stdout.readline())
    return process, NodeId.parse(ready["node_id"]), int(ready["port"])


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


async def _blast(peer: NodeId, port: int, size: int, seconds: float) -> int:
    """One client: large probes as fast as the transport accepts them; returns how many were sent."""
    node = await Node.start(Identity.generate(), LOOPBACK, 0)
    sent = 0
    try:
        plaintext = encode_probe(Probe("0" * 16, "load", 0, 0, 0, size))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(node.send_message(peer, plaintext, address=(LOOPBACK, port)), 5)
            except (TimeoutError, TransportError):
                await asyncio.sleep(0.05)
                continue
            sent += 1
    finally:
        await node.close()
    return sent


async def load(command: list[str], low_memory: bool, clients: int, seconds: float, size: int) -> dict[str, Any]:
    process, peer, port = start_responder(command, low_memory)
    try:
        pid = innermost_process(process.pid)
        idle = memory_kib(pid)
        sent = await asyncio.gather(*[_blast(peer, port, size, seconds) for _ in range(clients)])
        loaded = memory_kib(pid)
    finally:
        stop(process)
    return {
        "low_memory": low_memory,
        "idle_rss_mib": round(idle["VmRSS"] / 1024, 1),
        "peak_rss_mib": round(loaded["VmHWM"] / 1024, 1),
        "envelopes_sent": sum(sent),
    }


async def soak(command: list[str], seconds: float, interval_s: float) -> dict[str, Any]:
    process, peer, port = start_responder(command, low_memory=False)
    try:
        pid = innermost_process(process.pid)
        node = await Node.start(Identity.generate(), LOOPBACK, 0)
        count = max(1, int(seconds / interval_s))
        config = PingConfig(peer, (LOOPBACK, port), count, interval_s, 10.0, 64, Transport.stream)
        with tempfile.TemporaryDirectory() as directory, Archive.create(Path(directory), "soak", "ping") as archive:
            summary = await PingRun(config, node, archive, asyncio.Event()).run()
        await node.close()
        memory = memory_kib(pid)
    finally:
        stop(process)
    return {
        "seconds": seconds,
        "probes": summary["probes"],
        "rss_mib": round(memory["VmRSS"] / 1024, 1),
        "peak_rss_mib": round(memory["VmHWM"] / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responder-command", default=f"{sys.executable} -m tomstress", help="how to run tom-stress")
    parser.add_argument("--clients", type=int, default=8, help="load clients (default 8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration (default 20)")
    parser.add_argument("--size", type=int, default=60000, help="probe plaintext bytes of the load (default 60000)")
    parser.add_argument(
        "--soak", type=float, default=None, metavar="SECONDS", help="instead: continuous ping for SECONDS"
    )
    parser.add_argument("--interval", type=float, default=0.1, help="soak probe interval in seconds (default 0.1)")
    arguments = parser.parse_args()
    command = shlex.split(arguments.responder_command)
    if arguments.soak is not None:
        result = asyncio.run(soak(command, arguments.soak, arguments.interval))
        print(json.dumps(result))
        print(
            f"responder after {result['seconds']:g} s of continuous ping: RSS {result['rss_mib']} MiB "
            f"(peak {result['peak_rss_mib']} MiB), probes {result['probes']['ok']}/{result['probes']['sent']} ok",
            file=sys.stderr,
        )
        return
    results = [
        asyncio.run(load(command, low, arguments.clients, arguments.seconds, arguments.size)) for low in (False, True)
    ]
    summary = {"clients": arguments.clients, "seconds": arguments.seconds, "size": arguments.size, "runs": results}
    print(json.dumps(summary))
    for result in results:
        print(
            f"{'low-memory' if result['low_memory'] else 'default   '}: idle {result['idle_rss_mib']} MiB, "
            f"peak under load {result['peak_rss_mib']} MiB ({result['envelopes_sent']} envelopes of "
            f"{arguments.size} B from {arguments.clients} clients in {arguments.seconds:g} s)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
