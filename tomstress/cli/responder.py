"""`tom-stress responder`: answer probes until stopped."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import typer

from tomproto.errors import IdentityError
from tomproto.identity import load_or_create_identity
from tomproto.transport import TransportSettings
from tomstress.addresses import format_host_port, host_port_option
from tomstress.cli.common import fail
from tomstress.responder import Responder

__all__ = ["register"]

DEFAULT_LISTEN = "0.0.0.0:7400"


def _addresses(host: str, port: int) -> list[str]:
    """What peers may dial: the bound address, or this host's addresses for a wildcard bind."""
    if host not in ("0.0.0.0", "::"):
        return [format_host_port((host, port))]
    found: list[str] = []
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_DGRAM)
    except OSError:
        infos = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (host == "::" or family == socket.AF_INET):
            address = format_host_port((sockaddr[0], port))
            if address not in found:
                found.append(address)
    return found or [format_host_port((host, port))]


async def _serve(identity_file: Path | None, listen: tuple[str, int], quiet: bool, low_memory: bool) -> None:
    identity = load_or_create_identity(identity_file)
    host, port = listen
    settings = TransportSettings.low_memory() if low_memory else TransportSettings()
    try:
        responder = await Responder.start(identity, host, port, settings)
    except OSError as error:
        fail(f"cannot listen on {format_host_port(listen)}: {error.strerror or error}")
    bound_host, bound_port = responder.node.endpoint.local_address  # type: ignore[union-attr]
    addresses = _addresses(bound_host, bound_port)
    print(
        json.dumps(
            {
                "event": "listening",
                "node_id": identity.node_id.hex,
                "listen": format_host_port((bound_host, bound_port)),
                "port": bound_port,
                "addresses": addresses,
            }
        ),
        flush=True,
    )
    if not quiet:
        print(f"responder {identity.node_id.hex}", file=sys.stderr)
        print(f"listening on {format_host_port((bound_host, bound_port))} (udp)", file=sys.stderr)
        print(f"ping it with: tom-stress ping --connect {identity.node_id.hex} --target-addr {addresses[0]}", file=sys.stderr)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await responder.close()
    if not quiet:
        counts = dict(responder.counts)
        rejected = dict(responder.node.rejected)  # type: ignore[union-attr]
        print(f"stopped: {json.dumps(counts)}; rejected envelopes: {json.dumps(rejected)}", file=sys.stderr)


def responder(
    listen: str = typer.Option(DEFAULT_LISTEN, "--listen", metavar="HOST:PORT", help="UDP address to listen on."),
    identity_file: Path | None = typer.Option(
        None, "--identity", help="Identity file (created if missing); an ephemeral identity without it."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the JSON line on stdout."),
    low_memory: bool = typer.Option(
        False, "--low-memory", help="Small flow-control windows and stream/connection caps, for small devices."
    ),
) -> None:
    """Answer probes: print the NodeId and addresses (and one JSON line on stdout), run until stopped."""
    try:
        asyncio.run(_serve(identity_file, host_port_option(listen), quiet, low_memory))
    except IdentityError as error:
        fail(str(error))


def register(app: typer.Typer) -> None:
    app.command("responder")(responder)
