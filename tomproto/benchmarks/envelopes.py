"""Envelopes per second through the envelope layer, each way, and where the time goes.

    python -m tomproto.benchmarks.envelopes [--seconds 2] [--json]

"seal" is build + encrypt + sign + encode of a Chat; "open" is decode + verify + decrypt.
Every envelope is built anew with its own ephemeral key, nonce and id, as in real traffic, and
every opened envelope is a distinct one (opening the same bytes twice would flatter caches).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

from tomproto.crypto.e2e import decrypt_with, encrypt_for
from tomproto.identity import Identity
from tomproto.sealing import open_envelope, seal_envelope
from tomproto.wire.codec import decode, encode
from tomproto.wire.envelope import MessageType, decode_envelope_and_signing_bytes
from tomproto.wire.payloads import EncryptedPayload

NOW_MS = 1_764_000_000_000


def _rate(operation: Callable[[int], Any], seconds: float) -> tuple[float, int]:
    """Calls per second of `operation(i)` over about `seconds` (checked every 64 calls)."""
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(64):
            operation(count)
            count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started), count


def run(seconds: float) -> dict[str, Any]:
    sender = Identity.generate()
    recipient = Identity.generate()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "sizes": {},
    }
    for size in (1024, 64):
        plaintext = os.urandom(size)

        def seal(_: int) -> bytes:
            # Called only within this iteration, so the loop variable is the one meant.
            return seal_envelope(sender, recipient.node_id, MessageType.Chat, plaintext, now_ms=NOW_MS).wire  # noqa: B023

        seal_rate, _ = _rate(seal, seconds)
        pool = [seal(0) for _ in range(max(1000, int(seal_rate * seconds)))]

        def open_one(index: int) -> bytes:
            return open_envelope(recipient, pool[index % len(pool)]).plaintext  # noqa: B023 - as seal

        open_rate, opened = _rate(open_one, seconds)
        results["sizes"][str(size)] = {
            "plaintext_bytes": size,
            "wire_bytes": len(pool[0]),
            "seal_per_s": round(seal_rate),
            "open_per_s": round(open_rate),
            "distinct_envelopes_opened": min(opened, len(pool)),
        }
    results["breakdown_1KiB_us"] = _breakdown(sender, recipient, os.urandom(1024))
    return results


def _breakdown(sender: Identity, recipient: Identity, plaintext: bytes) -> dict[str, float]:
    """Microseconds per step for a 1 KiB Chat, each step timed alone."""
    rounds = 2000
    sealed = encrypt_for(recipient.node_id.raw, plaintext)
    wire = seal_envelope(sender, recipient.node_id, MessageType.Chat, plaintext, now_ms=NOW_MS).wire
    envelope, signed = decode_envelope_and_signing_bytes(wire)
    steps: dict[str, Callable[[], Any]] = {
        "encrypt (ephemeral X25519 + HKDF + XChaCha20-Poly1305)": lambda: encrypt_for(recipient.node_id.raw, plaintext),
        "encode EncryptedPayload": lambda: encode(sealed),
        "sign (Ed25519 over the signed bytes)": lambda: sender.sign(signed),
        "seal, whole": lambda: seal_envelope(sender, recipient.node_id, MessageType.Chat, plaintext, now_ms=NOW_MS),
        "decode envelope (with canonical check)": lambda: decode_envelope_and_signing_bytes(wire),
        "decode EncryptedPayload": lambda: decode(envelope.payload, EncryptedPayload),
        "decrypt (X25519 + HKDF + XChaCha20-Poly1305)": lambda: decrypt_with(recipient.x25519_secret, sealed),
        "open, whole (includes verify)": lambda: open_envelope(recipient, wire),
    }
    timings = {}
    for name, step in steps.items():
        step()
        started = time.perf_counter()
        for _ in range(rounds):
            step()
        timings[name] = round((time.perf_counter() - started) / rounds * 1e6, 1)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure (default 2)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    arguments = parser.parse_args()
    if arguments.seconds <= 0:
        parser.error("--seconds must be positive")
    results = run(arguments.seconds)
    if arguments.json:
        print(json.dumps(results))
        return
    print(f"envelope layer on {results['machine']}")
    for figures in results["sizes"].values():
        print(
            f"  Chat {figures['plaintext_bytes']:>5} B plaintext ({figures['wire_bytes']} B on the wire): "
            f"seal {figures['seal_per_s']:>7,}/s   open {figures['open_per_s']:>7,}/s"
        )
    print("  where the time goes, 1 KiB Chat (us per call):")
    for name, microseconds in results["breakdown_1KiB_us"].items():
        print(f"    {microseconds:>7.1f}  {name}")


if __name__ == "__main__":
    main()
