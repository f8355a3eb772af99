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

__all__ = ["LiveView", "print_summary", "print_brief_summary"]

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
        timeline = run.observations.path_timeline
        table.add_row(
            f"RTT ms (last {len(recent)})",
            f"p50 {_ms(window.p50)}",
            f"p99 {_ms(window.p99)}",
            f"max {_ms(window.max)}",
            f"jitter {_ms(window.jitter)}",
            f"path {timeline[-1][1] if timeline else '-'}",
            "",
        )
        self._live.update(Group(table))


def print_summary(summary: dict[str, Any], console: Console) -> None:
    probes = summary["probes"]
    rtt = summary["rtt_ms"]
    loss = summary["loss"]
    title = f"ping {summary['peer'][:16]}… {_where(summary)} ({summary['transport']})"
    table = Table(
        title=title,
        caption="RTT in ms; * = too few samples for that quantile",
        show_header=True,
        header_style="bold",
    )
    for column in ("n", "min", "mean", "p50", "p90", "p95", "p99", "max", "stddev", "jitter"):
        table.add_column(column, justify="right")
    flagged = set(rtt.get("unreliable_quantiles", []))
    table.add_row(
        *[str(rtt["n"])]
        + [
            _ms(rtt[key]) + ("*" if key in flagged else "")
            for key in ("min", "mean", "p50", "p90", "p95", "p99", "max", "stddev", "jitter")
        ]
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
            f"  loss: {loss['percent']:.2f} % (95 % interval {loss['interval_low'] * 100:.2f}–"  # noqa: RUF001 - a range
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
    path_line = _path_line(summary)
    if path_line:
        console.print(path_line)
    reconnections = summary["reconnections"]
    if reconnections["count"]:
        times = ", ".join(f"{seconds:g}" for seconds in reconnections["time_to_recover_s"][:10])
        more = " …" if reconnections["count"] > 10 else ""
        console.print(f"  reconnections: {reconnections['count']} (time to recover, s: {times}{more})")
    quic = summary["quic"]
    console.print(f"  QUIC packets: sent {quic['packets_sent']}, declared lost {quic['packets_lost']}")
    if summary.get("handshake_ms") is not None:
        console.print(f"  handshake: {summary['handshake_ms']:.1f} ms; wire size {summary['size']['wire_bytes']} B")
    check = summary["selfcheck"]
    if check["distorting"]:
        console.print(Text(f"  self-check: {check['reason']}", style="yellow"))
    if summary.get("connect_error"):
        console.print(Text(f"  not reached: {summary['connect_error']}", style="red"))
    welcome = (summary.get("hello") or {}).get("welcome")
    if welcome and welcome.get("accepted"):
        budget = welcome.get("budget")
        granted = "no budget" if budget is None else f"{budget['rate_per_s']:g} msg/s, bursts of {budget['burst']:g}"
        note = f" ({welcome['reason']})" if welcome.get("reason") else ""
        console.print(f"  responder: tom-stress {welcome['version']}, granted {granted}{note}", highlight=False)
    if summary.get("hello_error"):
        console.print(Text(f"  not measured: {summary['hello_error']}", style="red"))
    if summary.get("archive_error"):
        console.print(Text(f"  archive NOT complete: {summary['archive_error']}", style="red"))
    console.print(f"  archive: {summary['archive']}", highlight=False)


def _where(summary: dict[str, Any]) -> str:
    """Where the peer was dialled: its address, or the relay that reached it."""
    if summary.get("target_addr"):
        return f"at {summary['target_addr']}"
    if summary.get("relay"):
        return f"via relay {summary['relay']}"
    return "(no address)"


def _path_line(summary: dict[str, Any]) -> str | None:
    path = summary.get("path") or {}
    if not path.get("initial"):
        return None
    text = f"  path: {path['outcome']} (started on {path['initial']}"
    if path.get("time_to_direct_s") is not None:
        text += f", direct after {path['time_to_direct_s'] * 1000:.1f} ms"
    if path.get("path_changes"):
        text += f", {path['path_changes']} change(s)"
    shares = path.get("time_on_path_s") or {}
    if len(shares) > 1:
        text += ", time on path " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(shares.items()))
    return text + ")"


def print_brief_summary(summary: dict[str, Any], console: Console) -> None:
    """`--quiet`: the few lines ping(8) prints at the end."""
    probes, rtt, loss = summary["probes"], summary["rtt_ms"], summary["loss"]
    console.print(f"--- ping {summary['peer'][:16]}… {_where(summary)} ({summary['transport']}) ---", highlight=False)
    loss_text = "-" if loss["percent"] is None else f"{loss['percent']:.2f} %"
    console.print(
        f"{probes['sent']} probes sent, {probes['ok']} ok, {probes['late']} late, {probes['lost']} lost, "
        f"{probes['send_error']} send errors, {loss_text} loss",
        highlight=False,
    )
    if rtt["n"]:
        console.print(
            f"rtt min/p50/mean/p99/max = {'/'.join(_ms(rtt[key]) for key in ('min', 'p50', 'mean', 'p99', 'max'))} ms, "
            f"jitter {_ms(rtt['jitter'])} ms",
            highlight=False,
        )
    path_line = _path_line(summary)
    if path_line:
        console.print(path_line.strip(), highlight=False)
    if summary.get("hello_error"):
        console.print(f"not measured: {summary['hello_error']}", highlight=False)
    if summary.get("archive_error"):
        console.print(f"archive NOT complete: {summary['archive_error']}", highlight=False)
