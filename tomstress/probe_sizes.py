"""Which probe sizes work, found from the envelope's shape before anything is started.

A probe's plaintext (`--size`) becomes a sealed envelope whose wire size depends only on lengths:
byte fields travel as integer arrays, so each random byte of the ciphertext, nonce, key and
signature takes one byte or more, and a seal draws its size between two bounds
(`tomproto.sealing.WireSizeSpread`). The limits here are found by sealing for a throwaway pair of
identities (a NodeId is the same length whoever holds it), by secant steps on the wire size: a
refusal of `--size 50000000` takes a few seals of about 100 KB, never one of 50 MB.

- stream probes: the envelope must stay under the protocol's cap (MAX_ENVELOPE_BYTES) with
  six standard deviations to spare (a larger one would be refused by the responder);
- datagram probes: it must fit one QUIC packet in at least 9 seals of 10 (a seal that does not
  fit is sealed again, `Node.seal_datagram`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from tomproto.identity import Identity
from tomproto.node import MAX_DATAGRAM_ENVELOPE_BYTES
from tomproto.sealing import seal_envelope, wire_size_spread
from tomproto.transport import Transport
from tomproto.wire.envelope import MAX_ENVELOPE_BYTES, MessageType
from tomstress.probe import Probe, encode_probe, minimum_probe_size

__all__ = ["ProbeSizeLimits", "probe_size_limits", "size_problem"]

STREAM_MARGIN_SD = 6.0  # a stream envelope over the cap is lost: make that never happen
DATAGRAM_MARGIN_SD = 1.3  # the 90th percentile: the rare seal that does not fit is redrawn
_MAX_SECANT_STEPS = 4
_MAX_WALK_STEPS = 64  # header sizes change at 2^8 and 2^16 elements: a few bytes off the line


@dataclass(frozen=True, slots=True)
class ProbeSizeLimits:
    minimum: int
    stream_maximum: int
    datagram_maximum: int

    def maximum(self, transport: str) -> int:
        return self.datagram_maximum if transport is Transport.datagram else self.stream_maximum


def _likely_wire_bytes(run_id: str, phase: str, z: float) -> Callable[[int], float]:
    sender, recipient = Identity.from_seed(bytes(32)), Identity.from_seed(bytes([1]) * 32)

    def likely(size: int) -> float:
        # The largest values each field can take, so that the shape is the worst a run will seal.
        plaintext = encode_probe(Probe(run_id, phase, 2**32, 2**62, 2**62, size))
        sealed = seal_envelope(sender, recipient.node_id, MessageType.Chat, plaintext, now_ms=time.time_ns() // 10**6)
        return wire_size_spread(sealed).likely_at_most(z)

    return likely


def _largest_fitting(likely: Callable[[int], float], cap: int, smallest: int) -> int:
    """The largest size >= `smallest` whose likely wire size is within `cap` (`smallest` - 1 if none).

    The wire size grows almost linearly with the plaintext (about 2.5 bytes a byte), so secant
    steps land within a byte or two of the answer, and a short walk settles it: a handful of
    seals in all, whatever the size asked for."""
    if likely(smallest) > cap:
        return smallest - 1
    (near, near_bytes), (far, far_bytes) = (smallest, likely(smallest)), (smallest + 1024, likely(smallest + 1024))
    size = far
    for _ in range(_MAX_SECANT_STEPS):
        slope = (far_bytes - near_bytes) / (far - near)
        size = max(smallest, int(far + (cap - far_bytes) / slope))
        if size in (near, far):
            break
        (near, near_bytes), (far, far_bytes) = (far, far_bytes), (size, likely(size))
    for _ in range(_MAX_WALK_STEPS):
        if size > smallest and likely(size) > cap:
            size -= 1
        elif likely(size + 1) <= cap:
            size += 1
        else:
            return size
    raise RuntimeError(f"no size limit found near {size} bytes for a {cap}-byte cap")


@cache
def probe_size_limits(run_id_length: int, phase: str) -> ProbeSizeLimits:
    """The limits for probes whose run id has `run_id_length` characters (16 for a ping)."""
    run_id = "0" * run_id_length
    smallest = minimum_probe_size(run_id, phase)
    return ProbeSizeLimits(
        minimum=smallest,
        stream_maximum=_largest_fitting(
            _likely_wire_bytes(run_id, phase, STREAM_MARGIN_SD), MAX_ENVELOPE_BYTES, smallest
        ),
        datagram_maximum=_largest_fitting(
            _likely_wire_bytes(run_id, phase, DATAGRAM_MARGIN_SD), MAX_DATAGRAM_ENVELOPE_BYTES, smallest
        ),
    )


def size_problem(size: int, transport: str, run_id_length: int, phase: str) -> str | None:
    """Why `size` cannot be a probe size for `transport`, naming the range that works; None if it can."""
    if size < 0:
        return f"--size {size} is negative"
    limits = probe_size_limits(run_id_length, phase)
    if size < limits.minimum:
        return (
            f"--size {size} is too small: a probe carries at least {limits.minimum} bytes;"
            f" use --size {limits.minimum} or more"
        )
    largest = limits.maximum(transport)
    if size <= largest:
        return None
    if transport is Transport.datagram:
        return (
            f"--size {size} does not fit a datagram probe: its envelope must fit one QUIC packet "
            f"({MAX_DATAGRAM_ENVELOPE_BYTES} bytes on the wire); use --size {largest} or less (or drop --datagram)"
        )
    return (
        f"--size {size} is too large: the protocol caps an envelope at {MAX_ENVELOPE_BYTES} bytes on the wire, "
        f"which a probe of {largest} bytes reaches (byte fields travel as integer arrays); use --size {largest} or less"
    )
