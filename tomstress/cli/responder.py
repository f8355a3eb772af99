"""`tom-stress responder`: answer probes until stopped (SIGINT, SIGTERM, SIGHUP unless ignored), then
print the final counters as a `stopped` JSON line on stdout."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from tomproto.addresses import ip_version
from tomproto.errors import IdentityError
from tomproto.identity import load_or_create_identity
from tomproto.lifeline import watch_eof, watch_outermost
from tomproto.sealing import RejectReason
from tomproto.stopsignals import install_stop_handlers
from tomproto.terminal import GuardedStream, guarded_stderr, guarded_stdout
from tomproto.transport import Endpoint, PathChanged, TransportError, TransportSettings
from tomproto.transport.interfaces import local_ipv4_addresses
from tomstress.addresses import format_host_port, host_port_option, peer_address
from tomstress.archive import to_json
from tomstress.cli.common import EXIT_UNREACHABLE, SERVER_EXIT_CODES_HELP, fail, warn
from tomstress.probe import Budget
from tomstress.responder import (
    COUNTERS,
    DEFAULT_CAMPAIGN_RATE_PER_S,
    DEFAULT_MAX_CAMPAIGNS,
    DEFAULT_MAX_GRANT_S,
    CampaignPolicy,
    Responder,
)

__all__ = ["register"]

DEFAULT_LISTEN = "0.0.0.0:7400"
DEFAULT_CAMPAIGN_BUDGET = f"{DEFAULT_CAMPAIGN_RATE_PER_S:g}/{2 * DEFAULT_CAMPAIGN_RATE_PER_S:g}"
MAX_CAMPAIGN_RATE_PER_S = 1_000_000.0


def campaign_budget(text: str) -> Budget:
    """`RATE[/BURST]` (messages a second, messages at once; BURST is 2 x RATE by default), or
    ValueError saying what is wrong."""
    rate_text, _, burst_text = text.partition("/")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else 2 * rate
    except ValueError:
        raise ValueError(f"--campaign-budget {text!r}: give RATE[/BURST] in messages, e.g. 2500/5000") from None
    if not (0 < rate <= MAX_CAMPAIGN_RATE_PER_S):
        raise ValueError(
            f"--campaign-budget {text!r}: the rate must be above 0 and at most {MAX_CAMPAIGN_RATE_PER_S:g}/s"
        )
    if not (1 <= burst <= 2 * MAX_CAMPAIGN_RATE_PER_S):
        raise ValueError(f"--campaign-budget {text!r}: the burst must be at least 1 and at most "
                         f"{2 * MAX_CAMPAIGN_RATE_PER_S:g}")  # fmt: skip
    return Budget(rate, burst, DEFAULT_MAX_GRANT_S)


def _addresses(host: str, port: int) -> list[str]:
    """What peers may dial: the bound address, or this host's interface addresses for a wildcard."""
    if host not in ("0.0.0.0", "::"):
        return [format_host_port((host, port))]
    return [format_host_port((address, port)) for address in local_ipv4_addresses()] or [format_host_port((host, port))]


def _print_event(event: object, out: GuardedStream) -> None:
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
            file=out,
            flush=True,
        )


def _final_counters(responder: Responder, stopped_by: str, uptime_s: float) -> dict[str, Any]:
    """What was answered, what was refused and why, and the transport's own counts (zeros included)."""
    node = responder.node
    assert node is not None and node.endpoint is not None  # noqa: S101 - started before any stop
    return {
        "event": "stopped",
        "stopped_by": stopped_by,
        "uptime_s": round(uptime_s, 3),
        "counts": {key: responder.counts[key] for key in (*COUNTERS, *responder.counts)},
        "rejected": {reason.value: node.rejected[reason.value] for reason in RejectReason},
        "transport": to_json(node.endpoint.counters, "transport"),
        "admission": _admission_counters(node.endpoint),
        "campaigns": {**responder.policy.as_dict(), "active": responder.active_campaigns(time.monotonic())},
        "refused": dict(node.counters.refused),
    }


def _admission_counters(endpoint: Endpoint) -> dict[str, object]:
    counters = endpoint.counters
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
    stop_on_stdin_eof: bool,
    address_validation: str = "auto",
    policy: CampaignPolicy | None = None,
) -> None:
    identity = load_or_create_identity(identity_file, warn=warn)
    host, port = listen
    settings = TransportSettings.low_memory() if low_memory else TransportSettings()
    admission = dataclasses.replace(settings.admission, address_validation=address_validation)
    settings = dataclasses.replace(settings, admission=admission)
    try:
        responder = await Responder.start(identity, host, port, settings, relay, policy)
    except OSError as error:
        fail(f"cannot listen on {format_host_port(listen)}: {error.strerror or error}")
    except TransportError as error:
        fail(str(error), EXIT_UNREACHABLE)
    started_s = time.monotonic()
    # Before the `listening` line: whoever reads it may stop us at once, and must find us stoppable.
    stopped = asyncio.Event()
    stopped_by: list[str] = []

    def stop(reason: str) -> None:
        stopped_by.append(reason)
        stopped.set()

    loop = asyncio.get_running_loop()
    install_stop_handlers(loop, lambda signum: stop(signum.name))
    watch_outermost(loop, lambda: stop("outermost_gone"))
    if stop_on_stdin_eof:
        try:
            watch_eof(loop, sys.stdin.fileno(), lambda: stop("stdin_eof"))
        except (OSError, ValueError):
            await responder.close()
            fail("--stop-on-stdin-eof needs a pipe on stdin")
    out, err = guarded_stdout(), guarded_stderr()  # a terminal that goes away must not stop us
    node = responder.node
    assert node is not None  # noqa: S101 - started above
    node.events.subscribe(lambda event: _print_event(event, out), PathChanged)
    bound_host, bound_port = node.endpoint.local_address
    addresses = _addresses(bound_host, bound_port)
    observed = node.endpoint.observed_address
    print(
        json.dumps(
            {
                "event": "listening",
                "node_id": identity.node_id.hex,
                "listen": format_host_port((bound_host, bound_port)),
                "port": bound_port,
                "addresses": addresses,
                "relay": format_host_port(relay) if relay else None,
                "observed_address": format_host_port(observed) if observed else None,
                "campaigns": responder.policy.as_dict(),
            }
        ),
        file=out,
        flush=True,
    )
    if not quiet:
        print(f"responder {identity.node_id.hex}", file=err)
        print(f"listening on {format_host_port((bound_host, bound_port))} (udp)", file=err)
        budget = responder.policy.budget
        grants = (
            "no budget (--no-budget)" if budget is None else f"{budget.rate_per_s:g} msg/s, bursts of {budget.burst:g}"
        )
        print(f"campaigns: at most {responder.policy.max_campaigns} at once, each granted {grants}", file=err)
        how = f"--relay {format_host_port(relay)}" if relay else f"--target-addr {addresses[0]}"
        print(f"ping it with: tom-stress ping --connect {identity.node_id.hex} {how}", file=err, flush=True)

    await stopped.wait()
    await responder.close()
    final = _final_counters(responder, stopped_by[0], time.monotonic() - started_s)
    print(json.dumps(final), file=out, flush=True)
    if not quiet:
        print(
            f"stopped by {final['stopped_by']} after {final['uptime_s']:.1f} s: {json.dumps(final['counts'])}; "
            f"rejected envelopes: {json.dumps(final['rejected'])}",
            file=err,
            flush=True,
        )


def responder(
    listen: str = typer.Option(DEFAULT_LISTEN, "--listen", metavar="HOST:PORT", help="UDP address to listen on."),
    identity_file: Path | None = typer.Option(
        None, "--identity", help="Identity file (created if missing); an ephemeral identity without it."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the JSON line on stdout."),
    low_memory: bool = typer.Option(
        False, "--low-memory", help="Small flow-control windows and stream/connection caps, for small devices."
    ),
    relay: str | None = typer.Option(
        None, "--relay", metavar="HOST:PORT", help="Register with this tom-relay (reachable behind NAT)."
    ),
    stop_on_stdin_eof: bool = typer.Option(
        False,
        "--stop-on-stdin-eof",
        hidden=True,
        help="Stop when stdin (a pipe from the parent) ends: ping --local's lifeline.",
    ),
    address_validation: str = typer.Option(
        "auto",
        "--address-validation",
        metavar="auto|always",
        help="QUIC Retry for new connections: `auto` past a threshold of half-open handshakes, "
        "`always` for every one (one more round trip).",
    ),
    campaign_budget_text: str = typer.Option(
        DEFAULT_CAMPAIGN_BUDGET,
        "--campaign-budget",
        metavar="RATE[/BURST]",
        help="The most a campaign that says hello is granted, in messages a second and at once (BURST: 2 x RATE "
        "by default); it then escapes the anonymous anti-spam limit (10/s, bursts of 20). The default covers "
        "ping's fastest --interval (1ms).",
    ),
    max_campaigns: int = typer.Option(
        DEFAULT_MAX_CAMPAIGNS,
        "--max-campaigns",
        metavar="N",
        help="Campaigns served at once; one more is refused, with the reason, until one ends.",
    ),
    no_budget: bool = typer.Option(
        False,
        "--no-budget",
        help="Grant no budget: every campaign is held to the anonymous anti-spam limit (10/s, bursts of 20).",
    ),
) -> None:
    """Answer probes: print the NodeId and addresses (and one JSON line on stdout), run until stopped."""
    try:
        listen_address = host_port_option(listen)
        relay_address = None if relay is None else peer_address("--relay", relay)
        if relay_address is not None and ip_version(relay_address[0]) != (ip_version(listen_address[0]) or 4):
            fail("--listen and --relay must be of the same IP family (both IPv4 or both IPv6): one socket serves both")
        if address_validation not in ("auto", "always"):
            fail("--address-validation must be auto or always")
        if max_campaigns < 1:
            fail(f"--max-campaigns {max_campaigns}: give 1 or more")
        try:
            budget = campaign_budget(campaign_budget_text)
        except ValueError as error:
            fail(str(error))
        policy = CampaignPolicy(None if no_budget else budget, max_campaigns)
        asyncio.run(
            _serve(
                identity_file,
                listen_address,
                quiet,
                low_memory,
                relay_address,
                stop_on_stdin_eof,
                address_validation,
                policy,
            )
        )
    except IdentityError as error:
        fail(str(error))


def register(app: typer.Typer) -> None:
    app.command("responder", epilog=SERVER_EXIT_CODES_HELP)(responder)
