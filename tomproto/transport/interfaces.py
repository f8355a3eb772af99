"""This host's own addresses: the candidates a relayed peer may punch towards."""

from __future__ import annotations

import fcntl
import socket
import struct

from tomproto.core.paths import Address

__all__ = ["local_ipv4_addresses", "candidate_addresses"]

_SIOCGIFADDR = 0x8915


def local_ipv4_addresses() -> list[str]:
    """This host's IPv4 addresses, loopback excluded (Linux ioctl: works in a static binary)."""
    found = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                found.append(address)
    finally:
        probe.close()
    return found


def candidate_addresses(bound: Address) -> list[Address]:
    """Where peers may reach a socket bound at `bound`: every local address for a wildcard."""
    host, port = bound
    hosts = local_ipv4_addresses() if host in ("0.0.0.0", "::") else [host]
    return [(address, port) for address in hosts]
