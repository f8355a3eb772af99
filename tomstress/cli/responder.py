"""`tom-stress responder`: answer probes until stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from pathlib import Path

import typer

from tomproto.errors import IdentityError
from tomproto.identity import load_or_create_identity
from tomproto.transport import PathChanged, TransportError, TransportSettings
from tomproto.transport.relay_client import local_ipv4_addresses
from tomstress.addresses import format_host_port, host_port_option
from tomstress.cli.common import EXIT_UNREACHABLE, fail
from tomstress.responder import Responder

__all__ = ["register"]

DEFAULT_LISTEN = "0.0.0.0:7400"


def _addresses(host: str, port: int) -> list[str]:
    """What peers may dial: the bound address, or this host's interface addresses for a wildcard."""
    if host not in ("0.0.0.0", "::"):
        return [format_host_port((host, port))]
    return [format_host_port((address, port)) for address in local_ipv4_addresses()] or [format_host_port((host, port))]


def _print_event(event: object) -> None:
    """Path changes as JSON lines on stdout: the responder side of the path telemetry."""
    if isinstance(event, PathChanged):
        print(
            json.dumps(
                {
                    "event": "path_change",
                    "peer": event.peer.hex if event.peer else None,
                    "from": event.previous,
                    "to": event.current,
                    "path_rtt_ms": None if event.path_rtt_s is None else round(event.path_rtt_s * 1000, 3),
                    "time_to_direct_s": event.time_to_direct_s,
                }
            ),
            flush=True,
        )


def _admission_counters(endpoint: object) -> dict[str, object]:
    counters = endpoint.counters  # type: ignore[attr-defined]
    return {
        "decisions": dict(counters.admission),
        "retries_sent": counters.retries_sent,
        "tokens_refused": counters.tokens_refused,
        "half_open_timeouts": counters.half_open_timeouts,
        "connections_refused": counters.connections_refused,
        "refused_per_source": dict(counters.refused_per_source.most_common(10)),
    }


async def _serve(
    identity_file: Path | None,
    listen: tuple[str, int],
    quiet: bool,
    low_memory: bool,
    relay: tuple[str, int] | None,
    address_validation: str = "auto",
) -> None:
    identity = load_or_create_identity(identity_file)
    host, port = listen
    settings = TransportSettings.low_memory() if low_memory else TransportSettings()
    admission = dataclasses.replace(settings.admission, address_validation=address_validation)
    settings = dataclasses.replace(settings, admission=admission)
    try:
        responder = await Responder.start(identity, host, port, settings, relay)
    except OSError as error:
        fail(f"cannot listen on {format_host_port(listen)}: {error.strerror or error}")
    except TransportError as error:
        fail(str(error), EXIT_UNREACHABLE)
    responder.node.endpoint.on_event = _print_event  # type: ignore[union-attr]
    bound_host, bound_port = responder.node.endpoint.local_address  # type: ignore[union-attr]
    addresses = _addresses(bound_host, bound_port)
    relay_client = responder.node.endpoint.relay  # type: ignore[union-attr]
    print(
        json.dumps(
            {
                "event": "listening",
                "node_id": identity.node_id.hex,
                "listen": format_host_port((bound_host, bound_port)),
                "port": bound_port,
                "addresses": addresses,
                "relay": format_host_port(relay) if relay else None,
                "observed_address": format_host_port(relay_client.observed_address) if relay_client else None,
            }
        ),
        flush=True,
    )
    if not quiet:
        print(f"responder {identity.node_id.hex}", file=sys.stderr)
        print(f"listening on {format_host_port((bound_host, bound_port))} (udp)", file=sys.stderr)
        how = f"--relay {format_host_port(relay)}" if relay else f"--target-addr {addresses[0]}"
        print(f"ping it with: tom-stress ping --connect {identity.node_id.hex} {how}", file=sys.stderr)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    endpoint = responder.node.endpoint  # type: ignore[union-attr]
    print(json.dumps({"event": "stopped", "admission": _admission_counters(endpoint)}), flush=True)
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
    relay: str | None = typer.Option(None, "--relay", metavar="HOST:PORT", help="Register with this tom-relay (reachable behind NAT)."),
    address_validation: str = typer.Option(
        "auto", "--address-validation", metavar="auto|always",
        help="QUIC Retry for new connections: `auto` past a threshold of half-open handshakes, `always` for every one (one more round trip).",
    ),
) -> None:
    """Answer probes: print the NodeId and addresses (and one JSON line on stdout), run until stopped."""
    try:
        relay_address = None if relay is None else host_port_option(relay)
        if address_validation not in ("auto", "always"):
            fail("--address-validation must be auto or always")
        asyncio.run(_serve(identity_file, host_port_option(listen), quiet, low_memory, relay_address, address_validation))
    except IdentityError as error:
        fail(str(error))


def register(app: typer.Typer) -> None:
    app.command("responder")(responder)
