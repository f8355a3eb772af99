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

from tomproto.addresses import ip_version, wildcard_for
from tomproto.buildinfo import build_info
from tomproto.durations import duration_option
from tomproto.errors import IdentityError
from tomproto.identity import Identity, NodeId, load_or_create_identity
from tomproto.lifeline import watch_outermost
from tomproto.node import Node
from tomproto.stopsignals import EXIT_SIGNAL, install_stop_handlers
from tomproto.terminal import guarded_stderr, guarded_stdout
from tomproto.transport import Transport, TransportError, TransportSettings
from tomstress import __version__
from tomstress.addresses import peer_address
from tomstress.archive import SCHEMA_VERSION, Archive, check_archive_name, host_facts
from tomstress.cli.common import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_OUTPUT_FAILED,
    EXIT_UNREACHABLE,
    fail,
    warn,
)
from tomstress.local import local_responder
from tomstress.ping import PHASE, PingConfig, PingRun, probes_for_duration
from tomstress.probe import MEASUREMENT_RUNTIME
from tomstress.probe_sizes import size_problem
from tomstress.render import LiveView, print_brief_summary, print_summary

__all__ = ["register"]


def _node_id_option(text: str) -> NodeId:
    try:
        return NodeId.parse(text)
    except IdentityError as error:
        raise typer.BadParameter(str(error)) from None


RUN_ID_HEX_CHARS = 16  # secrets.token_hex(8): the probe size limits depend on its length
DEFAULT_COUNT = 20
MIN_INTERVAL_S = 0.001  # the responder's default --campaign-budget covers the rate this asks for


def _lab_description() -> dict[str, Any]:
    """When `tom-stress lab run` started us: the topology and impairments, for the archive."""
    text = os.environ.get("TOM_LAB")
    if not text:
        return {}
    try:
        return {"lab": json.loads(text)}
    except ValueError:
        return {"lab": {"unparsed": text[:1000]}}


def _loss_over_limit(summary: dict[str, Any], config: PingConfig) -> bool:
    percent = summary["loss"]["percent"]
    return config.max_loss_percent is not None and percent is not None and percent > config.max_loss_percent


def _exit_code(
    summary: dict[str, Any], stopped_by: signal.Signals | None, config: PingConfig, output_failed: bool
) -> int:
    if stopped_by is not None:
        return EXIT_SIGNAL[stopped_by]
    if output_failed:  # the measurement is only on stdout now: that outranks any verdict (not a stop signal)
        return EXIT_OUTPUT_FAILED
    if not summary["reached"]:
        return EXIT_UNREACHABLE
    if _loss_over_limit(summary, config):
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
    quiet: bool
    low_memory: bool


async def _ping(invocation: Invocation, peer: NodeId | None, address: tuple[str, int] | None) -> int:
    stop = asyncio.Event()
    stopped_by: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        stopped_by.append(signum)
        stop.set()

    install_stop_handlers(loop, on_signal)  # SIGHUP stays ignored under nohup
    # In the static binary, a SIGKILL of the process the user started reaches neither us nor
    # our responder: stop as if SIGTERM'd when it goes (tomproto/lifeline.py).
    watch_outermost(loop, lambda: on_signal(signal.SIGTERM))

    if peer is None:  # --local
        # The local responder runs on the same small device: it gets the same profile.
        extra = ("--low-memory",) if invocation.low_memory else ()
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
    run_id = secrets.token_hex(RUN_ID_HEX_CHARS // 2)
    # Never wrap paths and ids; a terminal gone (EIO, EPIPE) drops output, never the run.
    stderr = Console(file=guarded_stderr(), soft_wrap=True)  # type: ignore[arg-type]
    # The node first: a bind or a relay that refuses us must not leave an empty archive behind.
    node = await Node.start(
        identity, wildcard_for(config.address or config.relay), 0, settings=invocation.transport, relay=config.relay,
        runtime=MEASUREMENT_RUNTIME,  # no backups: a late probe is not a measurement
    )
    try:
        try:
            archive = Archive.create(invocation.output_dir, invocation.name, "ping")
        except OSError as error:
            fail(f"cannot create the archive in {invocation.output_dir}: {error.strerror or error}", EXIT_OUTPUT_FAILED)
        # A full disk or an I/O error stops the probing: what was measured goes to stdout instead.
        archive.on_failure = lambda _: stop.set()
        if not invocation.quiet:
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
            summary["archive_error"] = None
            summary["exit_code"] = _exit_code(summary, stopped_by[0] if stopped_by else None, config, archive.failed)
            archive.write("summary", **summary)
    finally:
        await node.close()
    if archive.failure is not None:  # also when the final fsync failed
        failure = archive.failure
        summary["archive_error"] = f"{failure.strerror or failure} (errno {failure.errno})"
        summary["exit_code"] = _exit_code(summary, stopped_by[0] if stopped_by else None, config, True)
        stderr.print(
            f"error: cannot write the archive {archive.path}: {summary['archive_error']}; probing stopped, it holds "
            "the events up to its last complete line, and the summary follows on stdout",
            highlight=False,
        )
    if summary.get("connect_error"):
        stderr.print(f"error: cannot reach the responder: {summary['connect_error']}", highlight=False)
    if summary.get("hello_error"):
        stderr.print(f"error: {summary['hello_error']}", highlight=False)
    elif (summary.get("hello") or {}).get("warning"):
        stderr.print(f"warning: {summary['hello']['warning']}", highlight=False)
    if summary["exit_code"] == EXIT_FAILED:
        stderr.print(
            f"error: probe loss {summary['loss']['percent']:.2f} % is over --max-loss {config.max_loss_percent:g} %",
            highlight=False,
        )
    # The archive is closed by now: a terminal gone (EIO, EPIPE) loses this output, not the run's exit code.
    stdout = guarded_stdout()
    if invocation.as_json:
        print(json.dumps(summary), file=stdout, flush=True)
    elif invocation.quiet:
        print_brief_summary(summary, Console(file=stdout, soft_wrap=True))  # type: ignore[arg-type]
    else:
        # A pipe gets 120 columns rather than rich's default 80: the table must not be cut.
        print_summary(summary, Console(file=stdout, soft_wrap=True, width=None if sys.stdout.isatty() else 120))  # type: ignore[arg-type]
    return int(summary["exit_code"])


def ping(
    connect: NodeId | None = typer.Option(
        None, "--connect", parser=_node_id_option, metavar="NODEID",
        help="NodeId of the responder.",
    ),
    target_addr: str | None = typer.Option(
        None, "--target-addr", metavar="HOST:PORT",
        help="UDP address of the responder, e.g. 203.0.113.7:7400 or [2001:db8::7]:7400.",
    ),
    local: bool = typer.Option(False, "--local", help="Start a responder on loopback and ping it (no setup)."),
    count: int | None = typer.Option(
        None, "--count", "-c", metavar="N",
        help=f"Probes to send, 1 or more ({DEFAULT_COUNT} without --duration or --continuous).",
    ),
    duration: float | None = typer.Option(
        None, "--duration", "-d", parser=duration_option, metavar="DURATION",
        help="Probe for this long instead of --count, e.g. 30s or 2h.",
    ),
    continuous: bool = typer.Option(
        False, "--continuous",
        help="Probe until interrupted (Ctrl-C); the summary still comes out.",
    ),
    interval: float = typer.Option(
        "500ms", "--interval", "-i", parser=duration_option, metavar="DURATION",
        help="Time between probe slots, e.g. 100ms (1ms at least).",
    ),
    timeout: float = typer.Option(
        "10s", "--timeout", parser=duration_option, metavar="DURATION",
        help="A reply later than this is `late`.",
    ),
    size: int = typer.Option(
        64, "--size", "-s", metavar="BYTES",
        help="Probe plaintext bytes: 56 to 103503 on streams, 56 to 259 with --datagram"
        " (the wire size, about 2.5x, is reported).",
    ),
    datagram: bool = typer.Option(
        False, "--datagram",
        help="Send probes as QUIC DATAGRAM frames (unreliable: measures path loss).",
    ),
    max_loss: float | None = typer.Option(
        None, "--max-loss", min=0.0, max=100.0, metavar="PERCENT",
        help="Exit 1 when probe loss exceeds this (0 to 100).",
    ),
    identity_file: Path | None = typer.Option(
        None, "--identity",
        help="Identity file (created if missing); ephemeral without it.",
    ),
    output_dir: Path = typer.Option(Path("results"), "--output-dir", help="Where the JSON Lines archive goes."),
    name: str = typer.Option("tomstress", "--name", help="Archive name prefix (a file name part: no /)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    no_live: bool = typer.Option(False, "--no-live", help="No live progress view."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q",
        help="No live view, no archive line: only a short summary at the end.",
    ),
    low_memory: bool = typer.Option(False, "--low-memory", help="Small transport buffers, for small devices."),
    relay: str | None = typer.Option(
        None, "--relay", metavar="HOST:PORT",
        help="tom-relay to register with; without --target-addr the peer is reached through it"
        " (then punched to direct).",
    ),
    relay_only: bool = typer.Option(
        False, "--relay-only",
        help="Through the relay, stay on the relay path (no hole punching): measures the relay itself.",
    ),
) -> None:  # fmt: skip
    """Ping a responder with encrypted, signed probes; report RTT, jitter, loss and availability."""
    if local == (connect is not None or target_addr is not None):
        fail("give either --local, or --connect NODEID with --target-addr HOST:PORT and/or --relay HOST:PORT")
    if not local and (connect is None or (target_addr is None and relay is None)):
        fail("--connect needs --target-addr HOST:PORT, --relay HOST:PORT, or both")
    if interval <= 0 or timeout <= 0:
        fail("--interval and --timeout must be positive durations, e.g. 100ms")
    if interval < MIN_INTERVAL_S:
        fail(f"--interval must be at least {MIN_INTERVAL_S * 1000:g}ms (a responder's default campaign budget "
             "covers that rate)")  # fmt: skip
    if relay_only and (relay is None or target_addr is not None):
        fail("--relay-only needs --relay HOST:PORT and no --target-addr: it keeps a relayed connection on the relay")
    if sum((count is not None, duration is not None, continuous)) > 1:
        fail("give one of --count, --duration and --continuous")
    if count is not None and count < 1:
        fail(f"--count {count}: give 1 or more probes")
    if duration is not None and duration <= 0:
        fail("--duration must be a positive duration, e.g. 30s")
    transport = Transport.datagram if datagram else Transport.stream
    problem = size_problem(size, transport, RUN_ID_HEX_CHARS, PHASE)
    if problem is not None:
        fail(problem)
    try:
        check_archive_name(name)
    except ValueError as error:
        fail(f"--name: {error}")
    address = None if target_addr is None else peer_address("--target-addr", target_addr)
    relay_address = None if relay is None else peer_address("--relay", relay)
    if address is not None and relay_address is not None and ip_version(address[0]) != ip_version(relay_address[0]):
        fail("--target-addr and --relay must be of the same IP family (both IPv4 or both IPv6): one socket serves both")
    if continuous:
        probes = None
    elif duration is not None:
        probes = probes_for_duration(duration, interval)
    else:
        probes = DEFAULT_COUNT if count is None else count
    settings = {
        "count": probes,
        "interval_s": interval,
        "timeout_s": timeout,
        "size": size,
        "transport": transport,
        "max_loss_percent": max_loss,
        "relay": relay_address,
        "duration_s": duration,
    }

    try:
        invocation = Invocation(
            identity=load_or_create_identity(identity_file, warn=warn),
            settings=settings,
            transport=replace(
                TransportSettings.low_memory() if low_memory else TransportSettings(), punch=not relay_only
            ),
            output_dir=output_dir,
            name=name,
            as_json=as_json,
            live=not (no_live or quiet),
            quiet=quiet,
            low_memory=low_memory,
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
    app.command("ping", epilog=EXIT_CODES_HELP)(ping)


