"""The far sides of the runtime benchmark's pings (tomstress.benchmarks.runtime), each its own process.

    python -m tomstress.benchmarks.ping_children transport-responder
    python -m tomstress.benchmarks.ping_children runtime-responder
    python -m tomstress.benchmarks.ping_children envelope-flood --target-id HEX --target-port P
                                                                [--rate 100] [--seconds 5]

- `transport-responder`: the responder as it was before the runtime (git 80f18a2,
  tomstress/responder.py and tomproto/node.py): a bare `Endpoint` whose `on_delivery` opens each
  probe envelope, builds the reply (`encode_reply`, with the run's follow-up), seals it and answers
  on the probe's connection and transport (`Endpoint.reply`). No ACKs, no dedup, no budgets;
- `runtime-responder`: the real `tomstress.responder.Responder` (a runtime Node: Hello/Welcome,
  ACKs, budgets), what `tom-stress responder` runs;
- `envelope-flood`: a peer that sends pre-sealed Chats (valid, signed, encrypted: the target pays
  for opening them) to the target at `--rate` for `--seconds`, without a grant (its own sealing is
  done before it starts, and is not on the target's CPU, nor on the pinger's).

The responders print `{"event": "ready", "port": ..., "node_id": ...}` and serve until stdin
closes (or an hour); the flood prints `ready` once its envelopes are sealed, connects and floods when a line comes on
stdin, then prints `{"event": "done", "sent": ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter, OrderedDict

from tomproto.core.transport_events import Received
from tomproto.errors import TransportError
from tomproto.identity import Identity, NodeId
from tomproto.sealing import EnvelopeRejected, open_envelope, seal_envelope
from tomproto.transport import ConnectionBusy, ConnectionLost, Endpoint
from tomproto.wire.envelope import MessageType
from tomstress.probe import FollowUp, encode_reply, parse_probe
from tomstress.responder import Responder

__all__ = ["TransportResponder", "main"]

LOOPBACK = "127.0.0.1"
MAX_FOLLOW_UPS = 1024
MAX_SERVE_S = 3600.0


class TransportResponder:
    """The pre-runtime responder's answer, on a bare Endpoint (see the module docstring)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.counts: Counter[str] = Counter()
        self._follow_ups: OrderedDict[tuple[NodeId, str], FollowUp] = OrderedDict()
        endpoint.on_delivery = self._answer

    def _answer(self, received: Received) -> None:
        identity = self.endpoint.identity
        arrived_ns = round(received.arrived_at_s * 1e9)
        try:
            opened = open_envelope(identity, received.data)
        except EnvelopeRejected:
            self.counts["rejected"] += 1
            return
        received_wall_ns = time.time_ns() - (time.monotonic_ns() - arrived_ns)
        probe = parse_probe(opened.plaintext)
        if probe is None:
            self.counts["not_a_probe"] += 1
            return
        peer = received.peer
        run = (peer, probe.run_id)
        follow_up = self._follow_ups.pop(run, None)
        plaintext = encode_reply(probe, received_wall_ns, time.time_ns(), len(opened.plaintext), follow_up)
        sealed = seal_envelope(identity, peer, MessageType.Chat, plaintext, now_ms=time.time_ns() // 1_000_000)
        try:
            sent = self.endpoint.reply(received.connection, sealed.wire, received.transport)
        except ConnectionBusy:
            self.counts["reply_dropped_busy"] += 1
            return
        except ConnectionLost:
            self.counts["reply_failed"] += 1
            return
        self.counts["probes_answered"] += 1
        if sent.left_ns is None:
            return
        self._follow_ups[run] = FollowUp(probe.seq, sent.left_ns - arrived_ns)
        if len(self._follow_ups) > MAX_FOLLOW_UPS:
            self._follow_ups.popitem(last=False)


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    deadline = time.monotonic() + MAX_SERVE_S
    while not reader.at_eof() and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(1024), 1.0)


def _ready(port: int, node_id: NodeId) -> None:
    print(json.dumps({"event": "ready", "port": port, "node_id": node_id.hex}), flush=True)


async def transport_responder() -> None:
    identity = Identity.generate()
    endpoint = await Endpoint.open(identity, LOOPBACK, 0)
    responder = TransportResponder(endpoint)
    _ready(endpoint.local_address[1], identity.node_id)
    try:
        await _until_stdin_closes()
    finally:
        await endpoint.close()
    print(json.dumps({"event": "counts", **responder.counts}), flush=True)


async def runtime_responder() -> None:
    identity = Identity.generate()
    responder = await Responder.start(identity, LOOPBACK, 0)
    assert responder.node is not None  # noqa: S101 - start sets it
    _ready(responder.node.endpoint.local_address[1], identity.node_id)
    try:
        await _until_stdin_closes()
    finally:
        await responder.close()
    print(json.dumps({"event": "counts", **responder.counts}), flush=True)


async def envelope_flood(target: NodeId, port: int, rate_per_s: float, seconds: float) -> None:
    identity = Identity.generate()
    now_ms = time.time_ns() // 1_000_000  # fresh for the run (minutes of clock-skew allowance)
    wires = [
        seal_envelope(identity, target, MessageType.Chat, b"flood", now_ms=now_ms).wire
        for _ in range(int(rate_per_s * seconds) + 1)
    ]
    print(json.dumps({"event": "ready", "envelopes": len(wires)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go" (or EOF)
    endpoint = await Endpoint.open(identity, LOOPBACK, 0)
    try:
        await endpoint.connect(target, (LOOPBACK, port))
        sent = dropped = 0
        started = time.monotonic()
        while sent + dropped < len(wires):
            due = min(int((time.monotonic() - started) * rate_per_s), len(wires))
            while sent + dropped < due:
                try:  # a busy connection drops a flood frame, not the run
                    endpoint.send_frame_now(target, wires[sent + dropped], urgent=True)
                    sent += 1
                except TransportError:
                    dropped += 1
            await asyncio.sleep(0.005)
        print(json.dumps({"event": "done", "sent": sent, "dropped_busy": dropped,
                          "rate_per_s": round(sent / (time.monotonic() - started), 1)}), flush=True)  # fmt: skip
    finally:
        await endpoint.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", required=True)
    kinds.add_parser("transport-responder", help="a bare Endpoint answering probes (no runtime)")
    kinds.add_parser("runtime-responder", help="tomstress.responder.Responder (the runtime)")
    flood = kinds.add_parser("envelope-flood", help="pre-sealed Chats to a target, without a grant")
    flood.add_argument("--target-id", required=True)
    flood.add_argument("--target-port", type=int, required=True)
    flood.add_argument("--rate", type=float, default=100.0)
    flood.add_argument("--seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    if arguments.kind == "transport-responder":
        asyncio.run(transport_responder())
    elif arguments.kind == "runtime-responder":
        asyncio.run(runtime_responder())
    else:
        target = NodeId.parse(arguments.target_id)
        asyncio.run(envelope_flood(target, arguments.target_port, arguments.rate, arguments.seconds))


if __name__ == "__main__":
    main()
