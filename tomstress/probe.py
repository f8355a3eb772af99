"""What a probe says, inside the encrypted Chat (spec/measurement.md §1).

A probe carries the run id, phase, sequence number, the sender's monotonic and wall-clock send
times (ns) and padding to the requested plaintext size. The reply echoes run id, phase, seq and
both send times, adds the responder's wall-clock receive and send times, and pads to the same
size so that both directions carry the same bytes. Both are msgpack arrays behind a 4-byte tag;
anything that does not parse is not a probe (never an exception).

The reply's send time is taken before the reply is sealed, so it cannot cover the sealing and the
sending. As in PTP's two-step clocks, the next reply to the same run follows it up: it carries
the previous reply's seq and how long the responder held that probe in all (packet in to reply
handed to the socket). Parsers accept extra trailing fields, so that later versions can add some.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

__all__ = [
    "PROBE_TAG",
    "REPLY_TAG",
    "Probe",
    "ProbeReply",
    "FollowUp",
    "encode_probe",
    "encode_reply",
    "parse_probe",
    "parse_reply",
    "minimum_probe_size",
]

PROBE_TAG = b"TSP1"
REPLY_TAG = b"TSR1"
_MAX_TEXT = 64


@dataclass(frozen=True, slots=True)
class Probe:
    run_id: str
    phase: str
    seq: int
    sent_monotonic_ns: int
    sent_wall_ns: int
    size: int  # requested plaintext size (the padding makes it so)


@dataclass(frozen=True, slots=True)
class FollowUp:
    """How long the responder held an earlier probe of the run, reply sealing and sending included."""

    seq: int
    hold_ns: int


@dataclass(frozen=True, slots=True)
class ProbeReply:
    run_id: str
    phase: str
    seq: int
    sent_monotonic_ns: int
    sent_wall_ns: int
    responder_received_wall_ns: int
    responder_sent_wall_ns: int
    follow_up: FollowUp | None = None


def _padded(tag: bytes, fields: list[object], size: int) -> bytes:
    body: bytes = tag + msgpack.packb([*fields, b""], use_bin_type=True)
    missing = size - len(body)
    if missing <= 0:
        return body
    # bin8 takes 2 header bytes, bin16 3, bin32 5: recompute once with the padding in place.
    padding = b"\x00" * missing
    body = tag + msgpack.packb([*fields, padding], use_bin_type=True)
    overshoot = len(body) - size
    padded: bytes = tag + msgpack.packb([*fields, padding[: max(0, missing - overshoot)]], use_bin_type=True)
    return padded


def minimum_probe_size(run_id: str, phase: str) -> int:
    return len(encode_probe(Probe(run_id, phase, 2**32, 2**62, 2**62, 0)))


def encode_probe(probe: Probe) -> bytes:
    fields = [probe.run_id, probe.phase, probe.seq, probe.sent_monotonic_ns, probe.sent_wall_ns]
    return _padded(PROBE_TAG, fields, probe.size)


def encode_reply(
    probe: Probe, received_wall_ns: int, sent_wall_ns: int, size: int, follow_up: FollowUp | None = None
) -> bytes:
    fields: list[object] = [
        probe.run_id,
        probe.phase,
        probe.seq,
        probe.sent_monotonic_ns,
        probe.sent_wall_ns,
        received_wall_ns,
        sent_wall_ns,
    ]
    if follow_up is not None:
        fields += [follow_up.seq, follow_up.hold_ns]
    return _padded(REPLY_TAG, fields, size)


def _unpack(data: bytes, tag: bytes, count: int) -> list[object] | None:
    """The fields (at least `count`, then padding), or None; two strings, then integers >= 0."""
    if not data.startswith(tag):
        return None
    try:
        fields = msgpack.unpackb(data[4:], raw=False, use_list=True)
    except Exception:  # not ours: any parse failure means "not a probe"
        return None
    if type(fields) is not list or len(fields) < count + 1 or not isinstance(fields[-1], bytes):
        return None
    strings, numbers = fields[:2], fields[2:-1]
    if not all(type(s) is str and len(s) <= _MAX_TEXT for s in strings):
        return None
    if not all(type(n) is int and n >= 0 for n in numbers):
        return None
    return fields


def parse_probe(data: bytes) -> Probe | None:
    fields = _unpack(data, PROBE_TAG, 5)
    if fields is None:
        return None
    run_id, phase, seq, monotonic_ns, wall_ns = fields[:5]
    return Probe(run_id, phase, seq, monotonic_ns, wall_ns, len(data))  # type: ignore[arg-type]


def parse_reply(data: bytes) -> ProbeReply | None:
    fields = _unpack(data, REPLY_TAG, 7)
    if fields is None:
        return None
    follow_up = FollowUp(*fields[7:9]) if len(fields) >= 10 else None  # type: ignore[arg-type]
    return ProbeReply(*fields[:7], follow_up=follow_up)  # type: ignore[arg-type, misc]
