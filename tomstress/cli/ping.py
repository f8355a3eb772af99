"""`tom-stress ping`: probe one responder (or an embedded local one) and report."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tomproto.buildinfo import build_info
from tomproto.errors import IdentityError
from tomproto.identity import Identity, NodeId, load_or_create_identity
from tomproto.node import MAX_DATAGRAM_ENVELOPE_BYTES, TRANSPORT_DATAGRAM, TRANSPORT_STREAM, Node
from tomproto.transport import TransportError, TransportSettings
from tomproto.wire.envelope import MAX_ENVELOPE_BYTES, MessageType
from tomstress import __version__
from tomstress.addresses import host_port_option
from tomstress.archive import SCHEMA_VERSION, Archive, host_facts
from tomstress.cli.common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, fail
from tomstress.durations import duration_option
from tomstress.local import local_responder
from tomstress.ping import PHASE, PingConfig, PingRun, datagram_size_limit
from tomstress.probe import Probe, encode_probe, minimum_probe_size
from tomstress.render import LiveView, print_summary

__all__ = ["register"]

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _node_id_option(text: str) -> NodeId:
    try:
        return NodeId.parse(text)
    except IdentityError as error:
        raise typer.BadParameter(str(error)) from None


def _check_size(node: Node, config: PingConfig, run_id: str) -> None:
    smallest = minimum_probe_size(run_id, PHASE)
    if config.size < smallest:
        fail(f"--size {config.size} is too small: a probe carries at least {smallest} bytes")
    if config.transport == TRANSPORT_DATAGRAM:
        limit = datagram_size_limit(node, config.peer, run_id)
        if config.size > limit:
            fail(
                f"--size {config.size} does not fit a datagram probe: its envelope must fit one QUIC "
                f"packet ({MAX_DATAGRAM_ENVELOPE_BYTES} bytes on the wire); use --size {limit} or less"
            )
        return
    plaintext = encode_probe(Probe(run_id, PHASE, 0, 0, 0, config.size))
    wire = len(node.seal(config.peer, MessageType.Chat, plaintext).wire)
    if wire > MAX_ENVELOPE_BYTES * 0.95:  # leave room: the wire size varies with the ciphertext
        fail(f"--size {config.size} makes a {wire}-byte envelope; the protocol caps envelopes at {MAX_ENVELOPE_BYTES} bytes")


def _lab_description() -> dict[str, Any]:
    """When `tom-stress lab run` started us: the topology and impairments, for the archive."""
    text = os.environ.get("TOM_LAB")
    if not text:
        return {}
    try:
        return {"lab": json.loads(text)}
    except ValueError:
        return {"lab": {"unparsed": text[:1000]}}


def _exit_code(summary: dict[str, Any], stopped_by: signal.Signals | None, config: PingConfig) -> int:
    if stopped_by is not None:
        return EXIT_SIGNAL[stopped_by]
    if not summary["reached"]:
        return EXIT_UNREACHABLE
    percent = summary["loss"]["percent"]
    if config.max_loss_percent is not None and percent is not None and percent > config.max_loss_percent:
        return EXIT_FAILED
    return EXIT_OK


@dataclass(frozen=True)
class Invocation:
    """What the command line asked for, beyond the target."""

    identity: Identity
    settings: dict[str, Any]  # the PingConfig fields other than peer and address
    transport: TransportSettings
    output_dir: Path
    name: str
    as_json: bool
    live: bool


async def _ping(invocation: Invocation, peer: NodeId | None, address: tuple[str, int] | None) -> int:
    stop = asyncio.Event()
    stopped_by: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        stopped_by.append(signum)
        stop.set()

    for signum in EXIT_SIGNAL:
        loop.add_signal_handler(signum, on_signal, signum)

    if peer is None:  # --local
        # The local responder runs on the same small device: it gets the same profile.
        extra = ("--low-memory",) if invocation.transport == TransportSettings.low_memory() else ()
        async with local_responder(*extra) as (local_peer, local_address, _):
            return await _run(invocation, local_peer, local_address, stop, stopped_by)
    return await _run(invocation, peer, address, stop, stopped_by)


async def _run(
    invocation: Invocation,
    peer: NodeId,
    address: tuple[str, int] | None,
    stop: asyncio.Event,
    stopped_by: list[signal.Signals],
) -> int:
    identity = invocation.identity
    config = PingConfig(peer=peer, address=address, **invocation.settings)
    run_id = secrets.token_hex(8)
    node = await Node.start(identity, "0.0.0.0", 0, settings=invocation.transport, relay=config.relay)
    try:
        _check_size(node, config, run_id)
        archive = Archive.create(invocation.output_dir, invocation.name, "ping")
        stderr = Console(stderr=True, soft_wrap=True)  # never wrap paths and ids
        stderr.print(f"archive: {archive.path}", highlight=False)
        with archive:
            archive.write(
                "run_start",
                schema_version=SCHEMA_VERSION,
                run_id=run_id,
                tool={"name": "tom-stress", "version": __version__, "build": build_info()},
                mode="ping",
                config={**config.as_dict(), **_lab_description()},
                campaign_sha256=None,
                host=host_facts(),
                node_ids={"local": identity.node_id.hex, "peer": peer.hex},
            )
            with LiveView(stderr, enabled=invocation.live and sys.stderr.isatty()) as view:
                run = PingRun(config, node, archive, stop, on_progress=view.update, run_id=run_id)
                summary = await run.run()
            if stopped_by:
                archive.write("interrupted", signal=stopped_by[0].name)
            summary["archive"] = str(archive.path)
            summary["exit_code"] = _exit_code(summary, stopped_by[0] if stopped_by else None, config)
            archive.write("summary", **summary)
    finally:
        await node.close()
    if summary.get("connect_error"):
        stderr.print(f"error: cannot reach the responder: {summary['connect_error']}", highlight=False)
    if invocation.as_json:
        print(json.dumps(summary))
    else:
        # A pipe gets 120 columns rather than rich's default 80: the table must not be cut.
        print_summary(summary, Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120))
    return summary["exit_code"]


def ping(
    connect: NodeId | None = typer.Option(None, "--connect", parser=_node_id_option, metavar="NODEID", help="NodeId of the responder."),
    target_addr: str | None = typer.Option(None, "--target-addr", metavar="HOST:PORT", help="UDP address of the responder."),
    local: bool = typer.Option(False, "--local", help="Start a responder on loopback and ping it (no setup)."),
    count: int = typer.Option(20, "--count", min=1, help="Probes to send."),
    continuous: bool = typer.Option(False, "--continuous", help="Probe until interrupted (Ctrl-C); the summary still comes out."),
    interval: float = typer.Option("500ms", "--interval", parser=duration_option, metavar="DURATION", help="Time between probe slots, e.g. 100ms."),
    timeout: float = typer.Option("10s", "--timeout", parser=duration_option, metavar="DURATION", help="A reply later than this is `late`."),
    size: int = typer.Option(64, "--size", min=1, help="Probe plaintext size in bytes (the wire size is reported beside it)."),
    datagram: bool = typer.Option(False, "--datagram", help="Send probes as QUIC DATAGRAM frames (unreliable: measures path loss)."),
    max_loss: float | None = typer.Option(None, "--max-loss", min=0.0, max=100.0, metavar="PERCENT", help="Exit 1 when probe loss exceeds this."),
    identity_file: Path | None = typer.Option(None, "--identity", help="Identity file (created if missing); ephemeral without it."),
    output_dir: Path = typer.Option(Path("results"), "--output-dir", help="Where the JSON Lines archive goes."),
    name: str = typer.Option("tomstress", "--name", help="Archive name prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    no_live: bool = typer.Option(False, "--no-live", help="No live progress view."),
    low_memory: bool = typer.Option(False, "--low-memory", help="Small transport buffers, for small devices."),
    relay: str | None = typer.Option(
        None, "--relay", metavar="HOST:PORT", help="tom-relay to register with; without --target-addr the peer is reached through it (then punched to direct)."
    ),
    relay_only: bool = typer.Option(False, "--relay-only", help="Through the relay, stay on the relay path (no hole punching): measures the relay itself."),
) -> None:
    """Ping a responder with encrypted, signed probes; report RTT, jitter, loss and availability."""
    if local == (connect is not None or target_addr is not None):
        fail("give either --local, or --connect NODEID with --target-addr HOST:PORT and/or --relay HOST:PORT")
    if not local and (connect is None or (target_addr is None and relay is None)):
        fail("--connect needs --target-addr HOST:PORT, --relay HOST:PORT, or both")
    if interval <= 0 or timeout <= 0:
        fail("--interval and --timeout must be positive durations, e.g. 100ms")
    address = None if target_addr is None else host_port_option(target_addr)
    settings = {
        "count": None if continuous else count,
        "interval_s": interval,
        "timeout_s": timeout,
        "size": size,
        "transport": TRANSPORT_DATAGRAM if datagram else TRANSPORT_STREAM,
        "max_loss_percent": max_loss,
        "relay": None if relay is None else host_port_option(relay),
    }

    try:
        invocation = Invocation(
            identity=load_or_create_identity(identity_file),
            settings=settings,
            transport=replace(
                TransportSettings.low_memory() if low_memory else TransportSettings(), punch=not relay_only
            ),
            output_dir=output_dir,
            name=name,
            as_json=as_json,
            live=not no_live,
        )
        code = asyncio.run(_ping(invocation, connect, address))
    except IdentityError as error:
        fail(str(error))
    except TransportError as error:
        fail(str(error), EXIT_UNREACHABLE)
    except OSError as error:
        fail(f"{error.strerror or error}: {getattr(error, 'filename', '') or ''}".rstrip(": "))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("ping")(ping)


