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

Before probing, the campaign says Hello (TSH1) and the responder answers Welcome (TSW1): see the
capability hello below and docs/design.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from tomproto.core.runtime import RuntimeSettings

__all__ = [
    "MEASUREMENT_RUNTIME",
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
    "HELLO_TAG",
    "WELCOME_TAG",
    "CAP_PROBE_V1",
    "CAP_FOLLOW_UP",
    "CAP_DATAGRAM",
    "CAP_RUNTIME_ACKS",
    "CAP_BUDGET",
    "CAPABILITIES",
    "Budget",
    "Hello",
    "Welcome",
    "encode_hello",
    "encode_welcome",
    "parse_hello",
    "parse_welcome",
]

# The runtime of a measuring node (the ping's and the responder's): it neither backs up its own
# probes and replies nor keeps replicas of others'. A probe is time-sensitive: one delivered from
# a backup minutes or hours later is not a measurement, and a measuring node's store is not a
# service to the network.
MEASUREMENT_RUNTIME = RuntimeSettings(backup=False, accept_replicas=False)

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


# -- the capability hello -------------------------------------------------------------------------
#
# Before it probes, a campaign's node sends a Hello (one message: it fits the anonymous anti-spam
# bucket) and the responder answers with a Welcome: versions, capabilities, and the budget the
# responder grants the campaign instead of the anonymous bucket, or why it refuses the campaign.
# Durations, not deadlines, cross the wire: the two clocks are not assumed to agree.

HELLO_TAG = b"TSH1"
WELCOME_TAG = b"TSW1"

CAP_PROBE_V1 = "probe-v1"  # TSP1 probes answered by TSR1 replies of the same size
CAP_FOLLOW_UP = "follow-up"  # replies carry the previous reply's hold time (two-step)
CAP_DATAGRAM = "datagram"  # probes may come as QUIC DATAGRAM frames, answered the same way
CAP_RUNTIME_ACKS = "runtime-acks"  # stream probes are routed, acknowledged messages
CAP_BUDGET = "budget"  # a Hello's budget is granted (or refused, with a reason)
CAPABILITIES = (CAP_PROBE_V1, CAP_FOLLOW_UP, CAP_DATAGRAM, CAP_RUNTIME_ACKS, CAP_BUDGET)

_MAX_CAPABILITIES = 64
_MAX_REASON = 512


@dataclass(frozen=True, slots=True)
class Budget:
    """A rate (messages a second), a burst (messages at once) and how long it holds (seconds)."""

    rate_per_s: float
    burst: float
    duration_s: float

    def as_dict(self) -> dict[str, float]:
        return {"rate_per_s": self.rate_per_s, "burst": self.burst, "duration_s": self.duration_s}


@dataclass(frozen=True, slots=True)
class Hello:
    version: str
    capabilities: tuple[str, ...]
    run_id: str
    budget: Budget  # what the campaign asks for


@dataclass(frozen=True, slots=True)
class Welcome:
    """The responder's answer: `accepted` (it will answer the campaign's probes) with the budget
    granted (None: held to the anonymous bucket), or refused; `reason` says why (a refusal, a
    budget capped or not granted), empty when there is nothing to say."""

    version: str
    capabilities: tuple[str, ...]
    accepted: bool
    budget: Budget | None
    reason: str = ""


def encode_hello(hello: Hello) -> bytes:
    budget = hello.budget
    fields = [hello.version, list(hello.capabilities), hello.run_id, budget.rate_per_s, budget.burst,
              budget.duration_s]  # fmt: skip
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return HELLO_TAG + packed


def encode_welcome(welcome: Welcome) -> bytes:
    budget = welcome.budget
    numbers = [0.0, 0.0, 0.0] if budget is None else [budget.rate_per_s, budget.burst, budget.duration_s]
    fields = [welcome.version, list(welcome.capabilities), welcome.accepted, budget is not None, *numbers,
              welcome.reason]  # fmt: skip
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return WELCOME_TAG + packed


def _fields(data: bytes, tag: bytes, count: int) -> list[object] | None:
    """The msgpack array behind `tag`, with at least `count` fields (extra ones are later versions')."""
    if not data.startswith(tag):
        return None
    try:
        fields = msgpack.unpackb(data[len(tag) :], raw=False, use_list=True, strict_map_key=True)
    except Exception:  # not ours: any parse failure means "not a hello"
        return None
    if type(fields) is not list or len(fields) < count:
        return None
    return fields


def _text(value: object, limit: int = _MAX_TEXT) -> str | None:
    return value if type(value) is str and len(value) <= limit else None


def _capabilities(value: object) -> tuple[str, ...] | None:
    if type(value) is not list or len(value) > _MAX_CAPABILITIES:
        return None
    names = tuple(_text(item) for item in value)
    return None if any(name is None for name in names) else names  # type: ignore[return-value]


def _budget(values: list[object]) -> Budget | None:
    numbers = []
    for value in values:
        if type(value) not in (int, float) or not 0 <= value < float("inf"):  # type: ignore[operator]
            return None
        numbers.append(float(value))  # type: ignore[arg-type]
    return Budget(*numbers)


def parse_hello(data: bytes) -> Hello | None:
    fields = _fields(data, HELLO_TAG, 6)
    if fields is None:
        return None
    version, capabilities, run_id = _text(fields[0]), _capabilities(fields[1]), _text(fields[2])
    budget = _budget(fields[3:6])
    if version is None or capabilities is None or run_id is None or budget is None:
        return None
    return Hello(version, capabilities, run_id, budget)


def parse_welcome(data: bytes) -> Welcome | None:
    fields = _fields(data, WELCOME_TAG, 8)
    if fields is None:
        return None
    version, capabilities, reason = _text(fields[0]), _capabilities(fields[1]), _text(fields[7], _MAX_REASON)
    accepted, granted = fields[2], fields[3]
    budget = _budget(fields[4:7])
    if version is None or capabilities is None or reason is None or budget is None:
        return None
    if type(accepted) is not bool or type(granted) is not bool:
        return None
    return Welcome(version, capabilities, accepted, budget if granted else None, reason)
