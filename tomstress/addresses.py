"""HOST:PORT options on the tom-stress command line."""

from __future__ import annotations

import typer

from tomproto.addresses import format_host_port, parse_host_port

__all__ = ["parse_host_port", "host_port_option", "peer_address_option", "format_host_port"]


def host_port_option(text: str) -> tuple[str, int]:
    """parse_host_port for typer (where we listen; port 0 is any free port): a bad value is a
    usage error (exit 2) with the accepted form."""
    try:
        return parse_host_port(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None



def peer_address_option(text: str) -> tuple[str, int]:
    """A relay's or responder's address: as host_port_option, and port 0 is refused."""
    try:
        return parse_host_port(text, allow_port_zero=False)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
