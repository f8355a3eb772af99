"""Human output: the live progress view (on stderr) and the summary table (on stdout)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tomstress.engine import Outcome
from tomstress.stats import summarize

if TYPE_CHECKING:
    from tomstress.ping import PingRun

__all__ = ["LiveView", "print_summary"]

LIVE_WINDOW = 200  # the live RTT figures cover the most recent probes


def _ms(value: float | None) -> str:
    # Four significant digits keep a ten-column table inside an 80-column terminal.
    return "-" if value is None else f"{value:.4g}"


class LiveView:
    """Progress of a running ping, redrawn a few times a second; nothing when not a terminal."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self._live = Live(console=console, refresh_per_second=4, transient=True) if enabled else None
        self._drawn_at = 0.0

    def __enter__(self) -> LiveView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)  # type: ignore[arg-type]

    def update(self, run: PingRun) -> None:
        if self._live is None or time.monotonic() - self._drawn_at < 0.2:
            return
        self._drawn_at = time.monotonic()
        counts = run.tracker.counts
        recent = [
            record.rtt_s * 1000  # type: ignore[operator]
            for record in list(run.tracker.records.values())[-LIVE_WINDOW:]
            if record.outcome is Outcome.ok
        ]
        window = summarize(recent)
        target = run.config.count if run.config.count is not None else "∞"
        table = Table.grid(padding=(0, 2))
        table.add_row(
            Text(f"ping {run.config.peer.hex[:16]}… ({run.config.transport})", style="bold"),
            f"sent {counts.sent}/{target}",
            Text(f"ok {counts.ok}", style="green"),
            Text(f"late {counts.late}", style="yellow"),
            Text(f"lost {counts.lost}", style="red"),
            Text(f"send_error {counts.send_error}", style="red"),
            f"waiting {run.tracker.pending} (overdue {run.tracker.overdue(time.monotonic())})",
        )
        connection = run.observations.connection
        table.add_row(
            "RTT ms (last %d)" % len(recent),
            f"p50 {_ms(window.p50)}",
            f"p99 {_ms(window.p99)}",
            f"max {_ms(window.max)}",
            f"jitter {_ms(window.jitter)}",
            f"path {connection.path if connection is not None else '-'}",
            "",
        )
        self._live.update(Group(table))


def print_summary(summary: dict[str, Any], console: Console) -> None:
    probes = summary["probes"]
    rtt = summary["rtt_ms"]
    loss = summary["loss"]
    title = f"ping {summary['peer'][:16]}… at {summary['target_addr']} ({summary['transport']})"
    table = Table(title=title, caption="RTT in ms; * = too few samples for that quantile", show_header=True, header_style="bold")
    for column in ("n", "min", "mean", "p50", "p90", "p95", "p99", "max", "stddev", "jitter"):
        table.add_column(column, justify="right")
    flagged = set(rtt.get("unreliable_quantiles", []))
    table.add_row(
        *[str(rtt["n"])]
        + [_ms(rtt[key]) + ("*" if key in flagged else "") for key in ("min", "mean", "p50", "p90", "p95", "p99", "max", "stddev", "jitter")]
    )
    console.print(table)
    if flagged:
        console.print(f"  * {', '.join(sorted(flagged))}: too few samples (n={rtt['n']}) to mean much")
    console.print(
        f"  probes: sent {probes['sent']}, ok {probes['ok']}, late {probes['late']}, lost {probes['lost']}, "
        f"send_error {probes['send_error']}, duplicate {probes['duplicate']}, out of order {probes['out_of_order']}"
    )
    if loss["ratio"] is not None:
        console.print(
            f"  loss: {loss['percent']:.2f} % (95 % interval {loss['interval_low'] * 100:.2f}–"
            f"{loss['interval_high'] * 100:.2f} %)"
        )
    availability = summary["availability"]
    if availability["slots"]:
        console.print(
            f"  availability: {availability['availability_percent']:.2f} %, {availability['outage_count']} outage(s), "
            f"longest {availability['longest_outage_s']:.1f} s"
        )
    stack = summary.get("stack") or {}
    network = stack.get("network_rtt_ms", {})
    if network.get("n"):
        console.print(
            f"  stack p50: send {_ms(stack['send_p50_ms'])}, receive {_ms(stack['receive_p50_ms'])}, responder "
            f"{_ms(stack['responder_p50_ms'])} ms; network's part of the RTT: p50 {_ms(network['p50'])} ms"
        )
    quic = summary["quic"]
    console.print(f"  QUIC packets: sent {quic['packets_sent']}, declared lost {quic['packets_lost']}")
    if summary.get("handshake_ms") is not None:
        console.print(f"  handshake: {summary['handshake_ms']:.1f} ms; wire size {summary['size']['wire_bytes']} B")
    check = summary["selfcheck"]
    if check["distorting"]:
        console.print(Text(f"  self-check: {check['reason']}", style="yellow"))
    if summary.get("connect_error"):
        console.print(Text(f"  not reached: {summary['connect_error']}", style="red"))
