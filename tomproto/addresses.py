"""HOST:PORT as people write it ("203.0.113.7:7400", "[2001:db8::1]:7400", "localhost:7400").

A host that looks like an IP address must be one: `256.1.1.1` or `1.2.3` is a typo, not a host
name to look up. IP addresses come back in their canonical spelling (`[0:0::1]` is `::1`), so
that an address compares equal to the one the socket reports for the same peer. Nothing here
touches the network (sans-IO code formats addresses with it); host names are looked up by
`tomstress.addresses.resolve_host_port`, where the command line needs it.
"""

from __future__ import annotations

import ipaddress
import re

from tomproto.core.paths import format_host_port

__all__ = ["parse_host_port", "format_host_port", "ip_version", "wildcard_for", "HOST_PORT_FORM"]

HOST_PORT_FORM = "HOST:PORT, e.g. 127.0.0.1:7400 or [::1]:7400"

_IPV4_LOOKING = re.compile(r"[0-9.]+")
# RFC 1123 labels; underscores too, which some local networks use.
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?")


def _checked_host(host: str, text: str, bracketed: bool) -> str:
    if bracketed:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"invalid address {text!r}: {host!r} in brackets is not an IPv6 address") from None
    if _IPV4_LOOKING.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(
                f"invalid address {text!r}: {host!r} is not an IPv4 address (four numbers 0 to 255)"
            ) from None
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"invalid address {text!r}: {host!r} is neither an IP address nor a host name")
    return host


def parse_host_port(text: str, *, allow_port_zero: bool = True) -> tuple[str, int]:
    """(host, port), or ValueError with a message that shows the accepted form.

    Port 0 ("any free port") makes sense where we listen, never where we send: pass
    `allow_port_zero=False` for a peer's address."""
    text = text.strip()
    bracketed = text.startswith("[")
    if bracketed:
        host, separator, port_text = text[1:].partition("]:")
    else:
        host, separator, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"invalid address {text!r}: put an IPv6 host in brackets ({HOST_PORT_FORM})")
    if not separator or not host or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"invalid address {text!r}: expected {HOST_PORT_FORM}")
    host = _checked_host(host, text, bracketed)
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port {port} in {text!r}: ports are 0 to 65535")
    if port == 0 and not allow_port_zero:
        raise ValueError(f"invalid port 0 in {text!r}: give the port the peer listens on, 1 to 65535")
    return host, port


def ip_version(host: str) -> int | None:
    """4 or 6 for an IP address, None for a host name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def wildcard_for(peer: tuple[str, int] | None) -> str:
    """The wildcard to bind a socket that talks to `peer`: one of the peer's IP family, since a
    socket of one family cannot reach the other (IPv4 when there is no peer yet)."""
    return "::" if peer is not None and ip_version(peer[0]) == 6 else "0.0.0.0"
