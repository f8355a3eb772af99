"""The `tom-relay` command: run the relay server (docs/relay-protocol.md).

Stdout carries JSON lines: `listening`, then `stats` every `--stats-interval` and on SIGUSR1, and a
last `stopped` line (the same counters, and what stopped it) on SIGINT, SIGTERM or SIGHUP (unless
SIGHUP was ignored at start, as under nohup). A terminal that goes away does not stop the relay.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any, NoReturn

import typer

from tomproto.addresses import format_host_port, parse_host_port
from tomproto.buildinfo import version_line
from tomproto.durations import duration_option
from tomproto.errors import IdentityError
from tomproto.identity import load_or_create_identity
from tomproto.lifeline import watch_outermost
from tomproto.relay.server import RelayServer
from tomproto.stopsignals import install_stop_handlers
from tomproto.terminal import guarded_stderr, guarded_stdout

__all__ = ["main", "app", "EXIT_CODES_HELP"]

DEFAULT_LISTEN = "0.0.0.0:7478"
EXIT_USAGE = 2
EXIT_CODES_HELP = (
    "\b\nExit codes: 0 stopped (SIGINT, SIGTERM or SIGHUP; the final stats are printed); 2 usage or "
    "configuration error (an address in use is named)."
)
MIN_STATS_INTERVAL_S = 0.1  # a stats line lists every node: more often would flood stdout

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=guarded_stderr(), flush=True)
    raise SystemExit(EXIT_USAGE)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=guarded_stderr(), flush=True)


def _parse_listen(text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as error:
        _fail(f"--listen: {error}")


async def _serve(listens: list[tuple[str, int]], identity_file: Path | None, stats_interval_s: float) -> None:
    server = RelayServer(load_or_create_identity(identity_file, warn=_warn))
    try:
        await server.start(listens)
    except OSError as error:
        # start() binds in order: the address that failed is the first one without a socket.
        server.close()
        _fail(f"cannot listen on {format_host_port(listens[len(server.sockets)])}: {error.strerror or error}")
    started_s = time.monotonic()
    out, err = guarded_stdout(), guarded_stderr()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    stopped_by: list[str] = []

    def stop(reason: str) -> None:
        stopped_by.append(reason)
        stopped.set()

    def print_line(event: str, **extra: Any) -> None:
        print(json.dumps({"event": event, **extra, **server.stats()}), file=out, flush=True)

    # Before the `listening` line: whoever reads it may signal us at once, and must find us ready.
    install_stop_handlers(loop, lambda signum: stop(signum.name))
    watch_outermost(loop, lambda: stop("outermost_gone"))  # the static binary's bootloader was killed
    loop.add_signal_handler(signal.SIGUSR1, print_line, "stats")
    addresses = [format_host_port(address) for address in server.addresses]
    print(
        json.dumps({"event": "listening", "relay_id": server.identity.node_id.hex, "addresses": addresses}),
        file=out,
        flush=True,
    )
    print(f"tom-relay {server.identity.node_id.hex} on {', '.join(addresses)} (udp)", file=err, flush=True)
    while not stopped.is_set():  # one pass per stats interval, until stopped
        try:
            await asyncio.wait_for(stopped.wait(), stats_interval_s)
        except TimeoutError:
            print_line("stats")
    server.close()
    uptime_s = round(time.monotonic() - started_s, 3)
    print_line("stopped", stopped_by=stopped_by[0], uptime_s=uptime_s)
    print(f"tom-relay stopped by {stopped_by[0]} after {uptime_s:.1f} s", file=err, flush=True)


def _stats_interval_option(text: str) -> float:
    seconds = duration_option(text)
    if seconds < MIN_STATS_INTERVAL_S:
        raise typer.BadParameter(f"{text!r} is too short: at least 100ms between stats lines, e.g. 60s")
    return seconds


@app.command(epilog=EXIT_CODES_HELP)
def relay(
    listen: list[str] = typer.Option(
        [DEFAULT_LISTEN],
        "--listen",
        metavar="HOST:PORT",
        help="UDP address ([::1]:7478 for IPv6); repeat to serve several.",
    ),
    identity_file: Path | None = typer.Option(
        None, "--identity", help="Identity file (created if missing); ephemeral without it."
    ),
    stats_interval: float = typer.Option(
        "60s",
        "--stats-interval",
        parser=_stats_interval_option,
        metavar="DURATION",
        help="Time between JSON stats lines, e.g. 60s (also on SIGUSR1).",
    ),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """The ToM relay: registers nodes by signed challenge, relays their packets, helps them punch."""
    if version:
        print(version_line("tom-relay"))
        return
    try:
        asyncio.run(_serve([_parse_listen(text) for text in listen], identity_file, stats_interval))
    except IdentityError as error:
        _fail(str(error))


def main() -> None:
    app()
