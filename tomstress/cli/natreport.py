"""`tom-stress nat-report`: what kind of NAT this host is behind, asked of a relay."""

from __future__ import annotations

import asyncio
import json

import typer

from tomproto.addresses import ip_version
from tomproto.durations import duration_option
from tomstress.addresses import format_host_port, peer_address
from tomstress.cli.common import EXIT_UNREACHABLE, fail
from tomstress.natreport import UNKNOWN, nat_report

__all__ = ["register"]


def nat_report_command(
    relay: list[str] = typer.Option(
        ..., "--relay", metavar="HOST:PORT",
        help="A tom-relay address; give two IPs (and a second port) of the same relay for a full verdict.",
    ),
    timeout: float = typer.Option(
        "1s", "--timeout", parser=duration_option, metavar="DURATION", help="Wait per attempt."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:  # fmt: skip
    """Report the NAT on this side: mapping behaviour, port preservation, and a plain verdict."""
    relays = [peer_address("--relay", text) for text in relay]
    if len({ip_version(host) for host, _ in relays}) > 1:
        fail("give --relay addresses of one IP family (all IPv4 or all IPv6): one socket asks them all")
    report = asyncio.run(nat_report(relays, timeout))
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"verdict: {report.verdict}")
        for relay_address, mapped in report.observations:
            seen_as = "no answer" if mapped is None else format_host_port(mapped)
            print(f"  via {format_host_port(relay_address)}: seen as {seen_as}")
        print(f"  port preserved: {report.port_preserved}; mapping varies by destination address: "
              f"{report.varies_by_address}, by port: {report.varies_by_port} (None = not tested)")  # fmt: skip
    if all(mapped is None for _, mapped in report.observations):
        fail("no relay answered", EXIT_UNREACHABLE)
    if report.verdict == UNKNOWN and not as_json:
        print("  (give the relay's second IP and a second port for a full verdict)")


def register(app: typer.Typer) -> None:
    app.command("nat-report")(nat_report_command)
