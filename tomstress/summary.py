"""The run summary: every figure of a ping run, computed from the tracker's records.

The same dict is printed by `--json`, written as the archive's `summary` event and rendered as the
summary table. Its key names are what field scripts read: add keys, never rename them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tomproto.addresses import format_host_port
from tomproto.transport import ConnectionInfo, TransportCounters
from tomstress.engine import Outcome, ProbeRecord, ProbeTracker
from tomstress.stats import DEFINITIONS, availability, self_check, summarize, summarize_loss

if TYPE_CHECKING:
    from tomstress.ping import PingConfig

__all__ = ["PingObservations", "build_summary", "clock_offset", "path_summary", "stack_summary"]

CLOCK_OFFSET_PROBES = 5


@dataclass
class PingObservations:
    """What the run saw besides the probe records."""

    handshake_ms: float | None = None
    connect_error: str | None = None
    started_s: float | None = None
    last_slot_s: float | None = None
    interrupted: bool = False
    pending_at_end: int = 0
    not_a_reply: int = 0
    down_since_s: float | None = None
    reconnections: list[float] = field(default_factory=list)
    loop_lags_ms: list[float] = field(default_factory=list)
    # seq -> (probe wall send ns, responder wall receive ns, responder wall send ns)
    timestamps: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    connection: ConnectionInfo | None = None  # the latest snapshot of the connection to the peer
    initial_path: str | None = None
    path_timeline: list[tuple[float, str]] = field(default_factory=list)  # (monotonic s, path from then on)
    time_to_direct_s: float | None = None
    hello: dict[str, Any] | None = None  # the capability hello: what we asked, the Welcome, any error
    hello_error: str | None = None  # why the run never probed although the peer was reached


def path_summary(observations: PingObservations, end_s: float | None) -> dict[str, Any]:
    """How the connection got to the peer: outcome, time to direct, time on each path."""
    timeline = observations.path_timeline
    time_on_path: dict[str, float] = {}
    # Equal lengths, except for an empty timeline: then the lone (end_s, None) is left over, and nothing is summed.
    for (start, path), (stop, _) in zip(timeline, [*timeline[1:], (end_s, None)], strict=False):
        if stop is not None:
            time_on_path[path] = time_on_path.get(path, 0.0) + max(0.0, stop - start)
    paths_seen = {path for _, path in timeline}
    if not timeline:
        outcome = "failed"
    elif "direct" in paths_seen:
        outcome = "direct"
    else:
        outcome = "relay_only"
    connection = observations.connection
    return {
        "initial": observations.initial_path,
        "outcome": outcome,
        "time_to_direct_s": None if observations.time_to_direct_s is None else round(observations.time_to_direct_s, 6),
        "punch_attempts": connection.punches_sent if connection is not None else 0,
        "path_changes": max(0, len(timeline) - 1),
        "time_on_path_s": {path: round(seconds, 3) for path, seconds in time_on_path.items()},
        "direct_path_rtt_ms": (
            round(connection.direct_path_rtt_s * 1000, 3)
            if connection is not None and connection.direct_path_rtt_s is not None
            else None
        ),
    }


def clock_offset(tracker: ProbeTracker, timestamps: dict[int, tuple[int, int, int]]) -> dict[str, Any] | None:
    """Peer clock minus ours, by the NTP formula on the lowest-RTT probe among the fastest few.

    offset = ((T2 - T1) + (T3 - T4)) / 2, with T4 = T1 + RTT on our side; its error is bounded by
    half the RTT. RTT itself never depends on clocks."""
    candidates = sorted(
        (record.rtt_s, seq)
        for seq, record in tracker.records.items()
        if record.outcome is Outcome.ok and seq in timestamps and record.rtt_s is not None
    )[:CLOCK_OFFSET_PROBES]
    if not candidates:
        return None
    rtt_s, seq = candidates[0]
    t1, t2, t3 = timestamps[seq]
    t4 = t1 + rtt_s * 1e9
    offset_ns = ((t2 - t1) + (t3 - t4)) / 2
    return {
        "offset_ms": round(offset_ns / 1e6, 3),
        "error_bound_ms": round(rtt_s * 1000 / 2, 3),
        "outbound_delay_ms": round((t2 - t1 - offset_ns) / 1e6, 3),
        "return_delay_ms": round((t4 - t3 + offset_ns) / 1e6, 3),
        "from_rtt_ms": round(rtt_s * 1000, 3),
        "definition": "NTP formula on the lowest-RTT probe; error bound = RTT/2",
    }


def stack_summary(ok: list[ProbeRecord]) -> dict[str, Any]:
    """Where the RTT went in the two stacks (p50, ms), and the RTT less both: the network's part."""

    def p50_ms(values: list[float | None]) -> float | None:
        known = [value * 1000 for value in values if value is not None]
        return summarize(known).p50 if known else None

    complete = [record for record in ok if record.network_rtt_s is not None]
    return {
        "send_p50_ms": p50_ms([record.send_stack_s for record in ok]),
        "receive_p50_ms": p50_ms([record.receive_stack_s for record in ok]),
        "responder_p50_ms": p50_ms([record.responder_hold_s for record in ok]),
        "network_rtt_ms": summarize([record.network_rtt_s * 1000 for record in complete]).as_dict(),  # type: ignore[operator]
        "network_rtt_ms_by_path": {
            path: summarize([r.network_rtt_s * 1000 for r in complete if r.path_received == path]).as_dict()  # type: ignore[operator]
            for path in sorted({record.path_received for record in complete if record.path_received})
        },
    }


def build_summary(
    config: PingConfig,
    run_id: str,
    tracker: ProbeTracker,
    observations: PingObservations,
    counters: TransportCounters,
) -> dict[str, Any]:
    records = [tracker.records[seq] for seq in sorted(tracker.records)]
    sent_records = [record for record in records if record.outcome is not None]
    ok = [record for record in sent_records if record.outcome is Outcome.ok]
    rtt = summarize([record.rtt_s * 1000 for record in ok])  # type: ignore[operator]
    counts = tracker.counts
    loss = summarize_loss(counts.sent, counts.lost)
    slot_ok = [record.outcome is Outcome.ok for record in sent_records]
    timer_errors = [record.timer_error_s * 1000 for record in sent_records if record.timer_error_s is not None]
    check = self_check(timer_errors, observations.loop_lags_ms, rtt.p50)
    reached = counts.ok + counts.late > 0
    by_path_sent = Counter(record.path_sent for record in sent_records if record.path_sent)
    by_path_received = Counter(record.path_received for record in sent_records if record.path_received)
    rtt_by_path = {
        path: summarize([r.rtt_s * 1000 for r in ok if r.path_received == path]).as_dict()  # type: ignore[operator]
        for path in sorted(by_path_received)
    }
    wire_sizes = [record.wire_size for record in sent_records if record.wire_size]
    duration_s = None
    if observations.started_s is not None and observations.last_slot_s is not None:
        duration_s = round(observations.last_slot_s - observations.started_s, 3)
    return {
        "schema_version": 1,
        "mode": "ping",
        "run_id": run_id,
        "peer": config.peer.hex,
        "target_addr": None if config.address is None else format_host_port(config.address),
        "relay": None if config.relay is None else format_host_port(config.relay),
        "transport": config.transport,
        "reached": reached,
        "connect_error": observations.connect_error,
        "hello_error": observations.hello_error,
        "hello": observations.hello,
        "handshake_ms": None if observations.handshake_ms is None else round(observations.handshake_ms, 3),
        "size": {"plaintext_bytes": config.size, "wire_bytes": max(wire_sizes) if wire_sizes else None},
        "duration_s": duration_s,
        "interrupted": observations.interrupted,
        "pending_at_end": observations.pending_at_end,
        "probes": {
            "sent": counts.sent,
            "ok": counts.ok,
            "late": counts.late,
            "lost": counts.lost,
            "send_error": counts.send_error,
            "duplicate": counts.duplicate,
            "out_of_order": counts.out_of_order,
            "stale": counts.stale,
            "unknown": counts.unknown + observations.not_a_reply,
        },
        "rtt_ms": rtt.as_dict(),
        "rtt_ms_by_path": rtt_by_path,
        "stack": stack_summary(ok),
        "loss": loss.as_dict(),
        "availability": availability(slot_ok, config.interval_s).as_dict(),
        "selfcheck": check.as_dict(),
        "clock": clock_offset(tracker, observations.timestamps),
        "path": {
            **path_summary(observations, observations.last_slot_s),
            "probes_by_path_sent": dict(by_path_sent),
            "probes_by_path_received": dict(by_path_received),
        },
        "reconnections": {
            "count": len(observations.reconnections),
            "time_to_recover_s": [round(value, 3) for value in observations.reconnections],
        },
        "quic": {
            "packets_sent": counters.quic.packets_sent,
            "packets_lost": counters.quic.packets_lost,
            "packet_loss_note": "QUIC packets declared lost by the sender's loss detection (path loss); "
            "probe loss is in `loss`",
            "datagrams_sent": counters.datagrams_sent,
            "datagrams_received": counters.datagrams_received,
        },
        "definitions": DEFINITIONS,
    }
