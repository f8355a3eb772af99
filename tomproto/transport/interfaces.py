"""This host's own addresses, for the candidates a node registers with tom-relay."""

from __future__ import annotations

import fcntl
import socket
import struct

__all__ = ["local_ipv4_addresses"]

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
