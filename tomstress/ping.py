"""The ping run: open-loop probes to one responder, every outcome accounted for, one summary.

The clock of a probe starts before the probe is built, encrypted, signed and sent, and stops when
the matching reply has been opened (spec/measurement.md §1): the RTT is the application's round
trip, our own stack included. Sends run as tasks, so a slow send or a redial never delays the
next slot (no coordinated omission).

Between connecting and probing comes the capability hello (docs/design.md): the run says Hello,
asking for a budget sized to its schedule, and probes only once the responder's Welcome grants it
(or accepts it with no budget). A refusal, a Welcome that lacks a capability the run needs, or no
Welcome at all (a responder older than the hello) end the run before its first probe, with the
reason in the summary and the archive: never a loss figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tomproto.addresses import format_host_port
from tomproto.core.antispam import anonymous_rate_per_s
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.runtime_events import MessageStatusChanged
from tomproto.errors import Backpressure, LocalError
from tomproto.identity import NodeId
from tomproto.node import EnvelopeLeft, Node, ReceivedMessage
from tomproto.sealing import new_message_id
from tomproto.transport import Path, PathChanged, PeerConnected, PeerDisconnected, Transport, TransportError
from tomproto.wire.envelope import MessageType
from tomstress import __version__
from tomstress.archive import Archive
from tomstress.engine import Outcome, ProbeRecord, ProbeTracker, ReplyVerdict
from tomstress.probe import (
    CAP_DATAGRAM,
    CAP_PROBE_V1,
    CAP_RUNTIME_ACKS,
    CAPABILITIES,
    Budget,
    FollowUp,
    Hello,
    Probe,
    Welcome,
    encode_hello,
    encode_probe,
    parse_reply,
    parse_welcome,
)
from tomstress.selfcheck import LoopLagSampler
from tomstress.summary import PingObservations, build_summary

__all__ = ["PingConfig", "PingRun", "PHASE", "probes_for_duration", "HELLO_WAIT_S", "TOO_OLD"]

PHASE = "ping"

HELLO_WAIT_S = 5.0  # the longest wait for the Welcome (or --timeout when shorter)
# A responder answers Hello before the runtime ACKs it: an ACK with no Welcome this long after it
# is a responder that does not know Hello (it counted it as not_a_probe).
HELLO_ACK_GRACE_S = 1.0
TOO_OLD = (
    "responder too old: it did not answer the capability hello (it predates the Hello/Welcome exchange of "
    f"tom-stress {__version__}); upgrade it"
)


@dataclass(frozen=True, slots=True)
class PingConfig:
    peer: NodeId
    address: tuple[str, int] | None  # None: reach the peer through the relay
    count: int | None  # None: continuous until stopped
    interval_s: float
    timeout_s: float
    size: int
    transport: Transport
    max_loss_percent: float | None = None
    relay: tuple[str, int] | None = None
    duration_s: float | None = None  # what --duration asked for (count is then derived from it)

    def as_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer.hex,
            "target_addr": None if self.address is None else format_host_port(self.address),
            "relay": None if self.relay is None else format_host_port(self.relay),
            "count": self.count,
            "interval_s": self.interval_s,
            "timeout_s": self.timeout_s,
            "size": self.size,
            "transport": self.transport,
            "max_loss_percent": self.max_loss_percent,
            "duration_s": self.duration_s,
        }


def probes_for_duration(duration_s: float, interval_s: float) -> int:
    """Slots start + k x interval that begin within `duration_s` (at least one)."""
    return max(1, math.ceil(round(duration_s / interval_s, 9)))


@dataclass
class PingRun:
    """One ping run against one responder; `await run()` returns the summary dict."""

    config: PingConfig
    node: Node
    archive: Archive
    stop: asyncio.Event
    on_progress: Callable[[PingRun], None] | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))
    tracker: ProbeTracker = field(init=False)
    observations: PingObservations = field(default_factory=PingObservations)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _probe_ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # message id -> seq, clock start

    _welcome: Welcome | None = None
    _hello_id: str | None = None
    _hello_acked_s: float | None = None

    def __post_init__(self) -> None:
        self.tracker = ProbeTracker(self.run_id, self.config.timeout_s)

    def budget(self) -> Budget:
        """What the run asks of the responder, and grants it: its probes (or replies) and their
        ACKs at the probe rate, with margin; for the whole schedule (a day when continuous)."""
        config = self.config
        rate = 2.0 / config.interval_s + 20.0
        duration_s = 24 * 3600.0 if config.count is None else config.count * config.interval_s + config.timeout_s + 60
        return Budget(rate, 2 * rate + 100, duration_s)

    def required_capabilities(self) -> tuple[str, ...]:
        if self.config.transport is Transport.datagram:
            return (CAP_PROBE_V1, CAP_DATAGRAM)
        return (CAP_PROBE_V1, CAP_RUNTIME_ACKS)

    def _t(self, monotonic_s: float) -> float:
        return self.archive.t_of(monotonic_s)

    async def run(self) -> dict[str, Any]:
        # The responder's replies come at the probe rate: it gets a budget above the anonymous one.
        budget = self.budget()
        self.node.grant(self.config.peer, budget.rate_per_s, budget.burst, budget.duration_s)
        messages = self.node.events.subscribe(self._on_message, ReceivedMessage)
        departures = self.node.events.subscribe(self._on_left, EnvelopeLeft)
        statuses = self.node.events.subscribe(self._on_status, MessageStatusChanged)
        transport_events = self.node.events.subscribe(
            self._on_transport_event, PathChanged, PeerConnected, PeerDisconnected
        )
        lag = LoopLagSampler()
        lag.start()
        try:
            reached = await self._connect()
            if reached and await self._hello():
                await self._probe()
            elif reached:
                self.observations.interrupted = self.stop.is_set()
        finally:
            lag.stop()
            messages.close()
            departures.close()
            statuses.close()
            transport_events.close()
            self._note_connection()
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        for record in self.tracker.expire(time.monotonic(), run_over=True):
            self._archive_probe(record)
        self.observations.loop_lags_ms = lag.samples_ms
        counters = self.node.endpoint.counters
        summary = build_summary(self.config, self.run_id, self.tracker, self.observations, counters)
        summary["refused_by_peer"] = dict(self.node.counters.refused_by_peers)
        return summary

    async def _connect(self) -> bool:
        started = time.monotonic()
        try:
            connection = await self.node.endpoint.connect(
                self.config.peer, self.config.address, timeout_s=min(self.config.timeout_s, 10.0)
            )
        except TransportError as error:
            self.observations.connect_error = str(error) or type(error).__name__
            self.archive.write("error", message=f"cannot reach the responder: {error}")
            return False
        self.observations.handshake_ms = (time.monotonic() - started) * 1000
        self.observations.connection = connection
        self.observations.initial_path = connection.path
        self.observations.path_timeline.append((time.monotonic(), connection.path))
        self.archive.write(
            "connected",
            handshake_ms=round(self.observations.handshake_ms, 3),
            path=connection.path,
            **({"peer_addr": format_host_port(self.config.address)} if self.config.address else {}),
        )
        return True

    async def _hello(self) -> bool:
        """Say Hello and wait for the Welcome; True when the run may probe (else the reason is in
        `observations.hello_error`, and in the archive)."""
        config = self.config
        asked = self.budget()
        hello = Hello(__version__, CAPABILITIES, self.run_id, asked)
        record: dict[str, Any] = {"version": __version__, "capabilities": list(CAPABILITIES),
                                  "asked": asked.as_dict(), "welcome": None}  # fmt: skip
        self.observations.hello = record
        self._hello_id = new_message_id()
        waited = time.monotonic()
        try:
            self.node.send_message_nowait(config.peer, encode_hello(hello), address=config.address,
                                          message_id=self._hello_id)  # fmt: skip
        except (TransportError, Backpressure) as error:
            return self._hello_failed(record, f"cannot send the capability hello: {error}")
        deadline = waited + min(config.timeout_s, HELLO_WAIT_S)
        while self._welcome is None and not self.stop.is_set():
            now = time.monotonic()
            acked = self._hello_acked_s
            if now >= deadline or (acked is not None and now >= acked + HELLO_ACK_GRACE_S):
                break
            await self._wait(min(0.02, deadline - now))
        welcome = self._welcome
        record["wait_ms"] = round((time.monotonic() - waited) * 1000, 3)
        if welcome is None:
            if self.stop.is_set():
                return False
            return self._hello_failed(record, TOO_OLD, "too_old")
        record["welcome"] = {
            "version": welcome.version,
            "capabilities": list(welcome.capabilities),
            "accepted": welcome.accepted,
            "budget": None if welcome.budget is None else welcome.budget.as_dict(),
            "reason": welcome.reason or None,
        }
        if not welcome.accepted:
            return self._hello_failed(record, f"the responder refused the run: {welcome.reason}", "refused")
        missing = [name for name in self.required_capabilities() if name not in welcome.capabilities]
        if missing:
            return self._hello_failed(
                record,
                f"the responder (tom-stress {welcome.version}) lacks the capability {', '.join(missing)} "
                f"that a {config.transport} run needs",
                "missing_capability",
            )
        probe_rate = 1.0 / config.interval_s
        granted_rate = anonymous_rate_per_s() if welcome.budget is None else welcome.budget.rate_per_s
        if probe_rate > granted_rate:
            record["warning"] = (
                f"the responder grants {granted_rate:g} msg/s ({welcome.reason or 'its budget'}), below the probe "
                f"rate of {probe_rate:g}/s: probes over it are refused (see refused_by_peer)"
            )
        self.archive.write("hello", **record)
        return True

    def _hello_failed(self, record: dict[str, Any], message: str, kind: str = "failed") -> bool:
        record["error"] = message
        record["error_kind"] = kind
        self.observations.hello_error = message
        self.archive.write("hello", **record)
        self.archive.write("error", message=message)
        return False

    def _on_status(self, event: MessageStatusChanged) -> None:
        if event.message_id == self._hello_id and event.status in (DeliveryStatus.delivered, DeliveryStatus.read):
            self._hello_acked_s = time.monotonic()

    async def _probe(self) -> None:
        config = self.config
        start = time.monotonic()
        self.observations.started_s = start
        seq = 0
        while (config.count is None or seq < config.count) and not self.stop.is_set():
            slot = start + seq * config.interval_s
            if await self._wait(slot - time.monotonic()):
                break
            self.tracker.scheduled(seq, slot)
            task = asyncio.ensure_future(self._send(seq))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._expire()
            seq += 1
        self.observations.last_slot_s = time.monotonic()
        # Grace: one timeout after the last send, or until every probe has its answer.
        deadline = time.monotonic() + config.timeout_s
        while not self.stop.is_set() and (self.tracker.pending or self._tasks) and time.monotonic() < deadline:
            await self._wait(min(0.05, deadline - time.monotonic()))
            self._expire()
        self.observations.interrupted = self.stop.is_set()
        self.observations.pending_at_end = self.tracker.pending

    async def _wait(self, delay_s: float) -> bool:
        """Sleep `delay_s` unless stopped first; True when stopped."""
        if delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay_s)
        if self.on_progress is not None:
            self.on_progress(self)
        return self.stop.is_set()

    async def _send(self, seq: int) -> None:
        config = self.config
        sent_ns = time.monotonic_ns()  # before the probe is built: the RTT includes our own stack
        sent_s = sent_ns / 1e9
        self.tracker.sent(seq, sent_s, None, None)
        probe = Probe(self.run_id, PHASE, seq, sent_ns, time.time_ns(), config.size)
        record = self.tracker.records[seq]
        try:
            if config.transport is Transport.datagram:
                sealed = self.node.seal_datagram(config.peer, MessageType.Chat, encode_probe(probe))
                record.wire_size = len(sealed.wire)
                # asyncio.timeout, not wait_for: the send runs in this task, so nothing (a fast
                # reply included) can run between the packet leaving and the path being noted.
                async with asyncio.timeout(config.timeout_s):
                    sent = await self.node.send_datagram(config.peer, sealed, address=config.address)
                self._left(record, sent.path, sent.left_ns, sent_ns)
            else:
                # A routed, acknowledged message: its departure comes back as an EnvelopeLeft.
                message_id = new_message_id()
                self._probe_ids[message_id] = (seq, sent_ns)
                try:
                    self.node.send_message_nowait(config.peer, encode_probe(probe), address=config.address,
                                                  message_id=message_id)  # fmt: skip
                except BaseException:
                    self._probe_ids.pop(message_id, None)  # it never left: no EnvelopeLeft will name it
                    raise
        except (TransportError, TimeoutError, Backpressure, LocalError) as error:
            message = str(error) or "send timed out"
            self._archive_probe(self.tracker.send_failed(seq, sent_s, message))
            return

    def _on_left(self, event: EnvelopeLeft) -> None:
        probe = self._probe_ids.pop(event.message_id, None)
        if probe is None:
            return
        seq, sent_ns = probe
        record = self.tracker.records.get(seq)
        if record is not None:
            self._left(record, event.path, event.left_ns, sent_ns)
            record.wire_size = event.wire_bytes

    def _left(self, record: ProbeRecord, path: Path, left_ns: int | None, sent_ns: int) -> None:
        record.path_sent = path
        if left_ns is not None:  # else it waits for flow control: no figure
            record.send_stack_s = (left_ns - sent_ns) / 1e9

    def _on_message(self, message: ReceivedMessage) -> None:
        reply = parse_reply(message.plaintext)
        if reply is None:
            welcome = parse_welcome(message.plaintext)
            if welcome is not None and message.sender == self.config.peer and self._welcome is None:
                self._welcome = welcome
                return
            self.observations.not_a_reply += 1
            return
        verdict, record = self.tracker.reply(reply.run_id, reply.seq, message.received_ns / 1e9, message.path)
        if verdict in (ReplyVerdict.ok, ReplyVerdict.late) and record is not None:
            record.receive_stack_s = (message.received_ns - message.arrived_ns) / 1e9
            self.observations.timestamps[reply.seq] = (
                reply.sent_wall_ns,
                reply.responder_received_wall_ns,
                reply.responder_sent_wall_ns,
            )
            self._archive_probe(record)
        elif verdict is ReplyVerdict.duplicate:
            self.archive.write("duplicate", seq=reply.seq)
        if reply.run_id == self.run_id and reply.follow_up is not None:
            self._follow_up(reply.follow_up)

    def _follow_up(self, follow_up: FollowUp) -> None:
        """The responder's whole hold of an earlier probe: the far end's share of its RTT."""
        record = self.tracker.records.get(follow_up.seq)
        if record is None or record.outcome not in (Outcome.ok, Outcome.late) or record.responder_hold_s is not None:
            return
        record.responder_hold_s = follow_up.hold_ns / 1e9
        self.archive.write("responder_hold", seq=follow_up.seq, hold_ms=_ms(record.responder_hold_s))

    def _note_connection(self) -> None:
        """Keep the latest snapshot of the connection to the peer (punches, direct path RTT)."""
        info = self.node.endpoint.connection_to(self.config.peer)
        if info is not None:
            self.observations.connection = info

    def _on_transport_event(self, event: object) -> None:
        now = time.monotonic()
        if isinstance(event, PathChanged) and event.peer == self.config.peer:
            self._note_connection()
            self.observations.path_timeline.append((now, event.current))
            if event.current is Path.direct and self.observations.time_to_direct_s is None:
                self.observations.time_to_direct_s = event.time_to_direct_s
            rtt_ms = None if event.path_rtt_s is None else round(event.path_rtt_s * 1000, 3)
            self.archive.write("path_change", **{"from": event.previous, "to": event.current, "path_rtt_ms": rtt_ms})
        elif isinstance(event, PeerDisconnected) and event.peer == self.config.peer:
            self.observations.down_since_s = now
            self.archive.write("error", message=f"connection lost: {event.reason}")
        elif isinstance(event, PeerConnected) and event.peer == self.config.peer:
            down = self.observations.down_since_s
            if down is not None:
                self.observations.down_since_s = None
                self.observations.reconnections.append(now - down)
                self.archive.write(
                    "reconnect", down_t=self._t(down), up_t=self._t(now), time_to_recover_s=round(now - down, 6)
                )

    def _expire(self) -> None:
        for record in self.tracker.expire(time.monotonic()):
            self._archive_probe(record)

    def _archive_probe(self, record: ProbeRecord) -> None:
        rtt = record.rtt_s
        timer_error = record.timer_error_s
        self.archive.write(
            "probe",
            seq=record.seq,
            phase=PHASE,
            outcome=record.outcome.value if record.outcome else None,
            rtt_ms=None if rtt is None or record.outcome not in (Outcome.ok, Outcome.late) else round(rtt * 1000, 6),
            scheduled_t=self._t(record.scheduled_s),
            sent_t=None if record.sent_s is None else self._t(record.sent_s),
            timer_error_ms=None if timer_error is None else round(timer_error * 1000, 6),
            path_sent=record.path_sent,
            path_received=record.path_received,
            size=self.config.size,
            wire_size=record.wire_size,
            transport=self.config.transport,
            send_ms=_ms(record.send_stack_s),
            receive_ms=_ms(record.receive_stack_s),
            **({"error": record.error} if record.error else {}),
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 6)
