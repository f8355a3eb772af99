"""A packet flooder for the flood test and benchmark: forged QUIC Initials or relay registrations.

    python -m tomstress.benchmarks.flooder --target 127.0.0.1:7400 [--kind quic|relay]
        [--rate 2500] [--duration 4] [--count 20000] [--source 127.0.0.2] [--ports 64]

It runs as its own process (no GIL shared with what it measures), sends from `--source` (any
127/8 address is local on Linux) through `--ports` sockets round-robin, paced in 2 ms ticks, and
stops at `--duration` or `--count`, whichever comes first. Every packet is built before the
first one is sent. It prints a JSON line `{"event": "ready", ...}` once built, and
`{"event": "done", "sent": ..., "rate_per_s": ...}` at the end.

`quic` mixes: Initials built by a real aioquic client that never completes its handshake
(`client`), the same with the destination connection ID rewritten so each one is new and
undecryptable (`dcid`), hand-built Initials carrying a token that looks like ours but is forged
(`token`), and random junk (`junk`). `relay` mixes padded HELLOs for one made-up NodeId
(`hello`), unpadded ones for random NodeIds (`hello_short`), REGISTERs with made-up challenges
and signatures (`register`), junk, and answers every CHALLENGE it receives with a REGISTER whose
signature is wrong (`answered`): the attacker who owns its address and would burn the relay's
signature checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterator

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from tomproto.core.quic import ALPN
from tomproto.relay import protocol as wire

__all__ = ["quic_packets", "relay_packets", "flood", "main"]

INITIAL_BYTES = 1200
TICK_S = 0.002
MAX_REAL_INITIALS = 300  # each costs a key exchange to build; beyond, rewritten copies
QUIC_MIX = {"client": 0.3, "dcid": 0.3, "token": 0.3, "junk": 0.1}
RELAY_MIX = {"hello": 0.5, "hello_short": 0.1, "register": 0.3, "junk": 0.1}
# The NodeId its HELLOs claim, so that the challenges that come back can be answered.
ATTACKER_ID = bytes(range(32))


def _real_initial(target: tuple[str, int]) -> bytes:
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=[ALPN]))
    quic.connect(target, now=time.monotonic())
    return quic.datagrams_to_send(now=time.monotonic())[0][0]


def _forged_token_initial(rng: random.Random) -> bytes:
    """A v1 Initial long header with a token shaped like ours (version, time, odcid, scid, MAC)
    whose MAC is random, then a length and random 'protected' payload up to 1200 bytes."""
    dcid, scid = rng.randbytes(8), rng.randbytes(8)
    token = struct.pack(">BIB", 1, rng.getrandbits(32), 8) + rng.randbytes(8) + rng.randbytes(8) + rng.randbytes(16)
    head = bytes([0xC3]) + struct.pack(">I", 1) + bytes([8]) + dcid + bytes([8]) + scid
    head += bytes([len(token)]) + token  # a token under 64 bytes: a one-byte length
    rest = INITIAL_BYTES - len(head) - 2
    return head + struct.pack(">H", 0x4000 | rest) + rng.randbytes(rest)


def _junk(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(1, INITIAL_BYTES + 1))


def _kinds(mix: dict[str, float], total: int, rng: random.Random) -> list[str]:
    names, weights = list(mix), list(mix.values())
    return rng.choices(names, weights, k=total)


def quic_packets(target: tuple[str, int], total: int, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    real: list[bytes] = []
    for kind in _kinds(QUIC_MIX, total, rng):
        if kind == "client":
            if len(real) < MAX_REAL_INITIALS:
                real.append(_real_initial(target))
                yield kind, real[-1]
            else:
                yield kind, real[rng.randrange(len(real))]
        elif kind == "dcid":
            if not real:
                real.append(_real_initial(target))
            base = real[-1]
            yield kind, base[:6] + rng.randbytes(8) + base[14:]  # byte 5 is the DCID length, 8
        elif kind == "token":
            yield kind, _forged_token_initial(rng)
        else:
            yield kind, _junk(rng)


def relay_packets(total: int, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for kind in _kinds(RELAY_MIX, total, rng):
        node_id = rng.randbytes(wire.ID_BYTES)
        if kind == "hello":
            yield kind, wire.hello(ATTACKER_ID)
        elif kind == "hello_short":
            yield kind, bytes([wire.HELLO]) + node_id
        elif kind == "register":
            yield kind, bytes([wire.REGISTER]) + node_id + rng.randbytes(32) + b"\0" + rng.randbytes(wire.SIG_BYTES)
        else:
            yield kind, bytes([rng.choice(sorted(wire.RELAY_KINDS))]) + rng.randbytes(rng.randrange(0, 200))


def _answer_challenges(sockets: list[socket.socket], target: tuple[str, int], budget: int) -> int:
    """REGISTERs with a wrong signature for the CHALLENGEs that came back (at most `budget`)."""
    answered = 0
    readable, _, _ = select.select(sockets, [], [], 0)
    for sock in readable:
        for _ in range(64):  # bounded per socket and tick
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            if answered < budget and len(data) == wire.CHALLENGE_BYTES and data[0] == wire.CHALLENGE:
                forged = bytes([wire.REGISTER]) + ATTACKER_ID + data[33:] + b"\0" + os.urandom(wire.SIG_BYTES)
                sock.sendto(forged, target)
                answered += 1
    return answered


def flood(
    target: tuple[str, int],
    packets: list[tuple[str, bytes]],
    *,
    rate_per_s: float,
    duration_s: float,
    source: str,
    ports: int,
    answer: bool = False,
) -> dict[str, object]:
    sockets = []
    for _ in range(ports):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        sock.setblocking(False)
        sockets.append(sock)
    sent: Counter[str] = Counter()
    blocked = answered = 0
    started = time.monotonic()
    deadline = started + duration_s
    index = 0
    try:
        while index < len(packets) and (now := time.monotonic()) < deadline:
            due = min(len(packets), int((now - started) * rate_per_s) + 1)
            while index < due:
                kind, data = packets[index]
                try:
                    sockets[index % ports].sendto(data, target)
                    sent[kind] += 1
                except (BlockingIOError, OSError):
                    blocked += 1
                index += 1
            if answer:
                answered += _answer_challenges(sockets, target, budget=int(rate_per_s * TICK_S) + 1)
            time.sleep(TICK_S)
        elapsed_s = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
    total = sum(sent.values())
    return {
        "event": "done",
        "sent": total,
        "by_kind": dict(sent),
        "answered_challenges": answered,
        "send_errors": blocked,
        "elapsed_s": round(elapsed_s, 3),
        "rate_per_s": round(total / elapsed_s, 1) if elapsed_s > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, metavar="HOST:PORT")
    parser.add_argument("--kind", choices=("quic", "relay"), default="quic")
    parser.add_argument("--rate", type=float, default=2500.0, help="packets per second")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds")
    parser.add_argument("--count", type=int, default=20_000, help="at most this many packets")
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--ports", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args(argv)
    host, _, port = arguments.target.rpartition(":")
    target = (host, int(port))
    total = max(1, min(arguments.count, int(arguments.rate * arguments.duration) + 1))
    built_at = time.monotonic()
    if arguments.kind == "quic":
        packets = list(quic_packets(target, total, arguments.seed))
    else:
        packets = list(relay_packets(total, arguments.seed))
    build_s = round(time.monotonic() - built_at, 3)
    print(json.dumps({"event": "ready", "packets": len(packets), "build_s": build_s}), flush=True)
    report = flood(
        target, packets, rate_per_s=arguments.rate, duration_s=arguments.duration, source=arguments.source,
        ports=arguments.ports, answer=arguments.kind == "relay",
    )  # fmt: skip
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
