"""The `tom-relay` command: run the relay server (docs/relay-protocol.md)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import typer

from tomproto.addresses import format_host_port, parse_host_port
from tomproto.buildinfo import version_line
from tomproto.errors import IdentityError
from tomproto.identity import load_or_create_identity
from tomproto.relay.server import RelayServer

__all__ = ["main", "app"]

DEFAULT_LISTEN = "0.0.0.0:7478"

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _parse_listen(text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as error:
        _fail(f"--listen: {error}")
        raise  # unreachable: _fail exits


async def _serve(listens: list[tuple[str, int]], identity_file: Path | None, stats_interval_s: float) -> None:
    server = RelayServer(load_or_create_identity(identity_file))
    try:
        await server.start(listens)
    except OSError as error:
        _fail(f"cannot listen: {error.strerror or error}")
    addresses = [format_host_port(address) for address in server.addresses]
    print(json.dumps({"event": "listening", "relay_id": server.identity.node_id.hex, "addresses": addresses}), flush=True)
    print(f"tom-relay {server.identity.node_id.hex} on {', '.join(addresses)} (udp)", file=sys.stderr)
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def print_stats() -> None:
        print(json.dumps({"event": "stats", **server.stats()}), flush=True)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    loop.add_signal_handler(signal.SIGUSR1, print_stats)
    while not stopped.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), stats_interval_s)
        except asyncio.TimeoutError:
            print_stats()
    print_stats()
    server.close()


@app.command()
def relay(
    listen: list[str] = typer.Option([DEFAULT_LISTEN], "--listen", metavar="HOST:PORT", help="UDP address; repeat to serve several."),
    identity_file: Path | None = typer.Option(None, "--identity", help="Identity file (created if missing); ephemeral without it."),
    stats_interval: float = typer.Option(60.0, "--stats-interval", min=0.1, help="Seconds between JSON stats lines (also on SIGUSR1)."),
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
