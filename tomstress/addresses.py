"""HOST:PORT options on the tom-stress command line."""

from __future__ import annotations

import socket

import typer

from tomproto.addresses import format_host_port, ip_version, parse_host_port
from tomstress.cli.common import EXIT_UNREACHABLE, fail

__all__ = ["parse_host_port", "host_port_option", "peer_address_option", "peer_address", "format_host_port",
           "resolve_host_port"]  # fmt: skip


def host_port_option(text: str) -> tuple[str, int]:
    """parse_host_port for typer (where we listen; port 0 is any free port): a bad value is a
    usage error (exit 2) with the accepted form."""
    try:
        return parse_host_port(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def peer_address_option(text: str) -> tuple[str, int]:
    """A relay's or responder's address for typer: as host_port_option, and port 0 is refused."""
    try:
        return parse_host_port(text, allow_port_zero=False)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def resolve_host_port(address: tuple[str, int]) -> tuple[str, int]:
    """The address with its host name looked up (once, here: not at every packet sent); an IP
    address comes back as it is. OSError (socket.gaierror) when the name does not resolve."""
    host, port = address
    if ip_version(host) is not None:
        return address
    found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    # Prefer IPv4, as most relays and responders listen there; an IPv6-only name still works.
    found.sort(key=lambda entry: entry[0] != socket.AF_INET)
    return str(found[0][4][0]), port


def peer_address(option: str, text: str) -> tuple[str, int]:
    """A peer's HOST:PORT given to `option`, checked (exit 2) and with its host name looked up
    once: packets from the peer come from an IP, and are matched against this address. A name
    that does not resolve means the peer cannot be reached (exit 3: in the field that is a DNS
    outage as often as a typo)."""
    try:
        address = parse_host_port(text, allow_port_zero=False)
    except ValueError as error:
        fail(f"{option}: {error}")
    try:
        return resolve_host_port(address)
    except OSError as error:
        fail(
            f"{option} {format_host_port(address)}: cannot resolve {address[0]!r}: {error.strerror or error}",
            EXIT_UNREACHABLE,
        )
