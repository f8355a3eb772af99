"""The names of a connection's paths and of the two ways an envelope travels on one.

Both are string enums so that they print, compare and serialise (JSON archives, metrics labels)
as their plain values: `Path.direct == "direct"`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Path", "Transport", "Address", "format_host_port"]

Address = tuple[str, int]


class Path(StrEnum):
    """Where a connection's packets go: straight to the peer's address, or through tom-relay."""

    direct = "direct"
    relay = "relay"


class Transport(StrEnum):
    """How one envelope travels: on its own QUIC stream (reliable) or in one QUIC datagram."""

    stream = "stream"
    datagram = "datagram"


def format_host_port(address: tuple[str, int]) -> str:
    """`host:port`, with an IPv6 host in brackets as people write it: `[::1]:4433`."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
