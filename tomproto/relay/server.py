"""tom-relay's asyncio shell: the sockets and the sweep timer around `RelayCore`
(tomproto/core/relay_server.py), which holds every rule of the relay (docs/relay-protocol.md).

Each listening address is one socket, known to the core by its index (a challenge is good on
the socket that issued it only). A datagram goes to `RelayCore.handle` with the monotonic time;
what it returns is sent at once, each on its own socket. The challenge secret is drawn here, from
the operating system, once per process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from functools import partial
from typing import Any

from tomproto.core.relay_server import NodeCounters, Outgoing, RelayCore, RelaySettings
from tomproto.identity import Identity
from tomproto.relay.protocol import Address

__all__ = ["NodeCounters", "RelayServer", "RelaySettings"]

SECRET_BYTES = 32


class _RelaySocket(asyncio.DatagramProtocol):
    def __init__(self, server: RelayServer, index: int) -> None:
        self.server = server
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, address: Address) -> None:
        self.server.send(self.server.core.handle(data, (address[0], address[1]), time.monotonic(), self.index))

    def send(self, data: bytes, address: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, address)

    @property
    def address(self) -> Address:
        if self.transport is None:
            raise RuntimeError("relay socket is not open")
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


class RelayServer:
    def __init__(
        self, identity: Identity, settings: RelaySettings | None = None, *, secret: bytes | None = None
    ) -> None:
        self.core = RelayCore(identity, settings, secret=secret or os.urandom(SECRET_BYTES), now=time.monotonic())
        self.sockets: list[_RelaySocket] = []
        self._sweep_timer: asyncio.TimerHandle | None = None

    @property
    def identity(self) -> Identity:
        return self.core.identity

    @property
    def settings(self) -> RelaySettings:
        return self.core.settings

    @property
    def events(self) -> Counter[str]:
        return self.core.events

    async def start(self, listens: list[Address]) -> None:
        """Bind one socket per address, in order (on OSError, those bound are in `sockets`)."""
        loop = asyncio.get_running_loop()
        for host, port in listens:
            _, relay_socket = await loop.create_datagram_endpoint(
                partial(_RelaySocket, self, len(self.sockets)), local_addr=(host, port)
            )
            self.sockets.append(relay_socket)
        self._arm_sweep()

    @property
    def addresses(self) -> list[Address]:
        return [relay_socket.address for relay_socket in self.sockets]

    def send(self, outgoing: list[Outgoing]) -> None:
        for datagram in outgoing:
            self.sockets[datagram.socket].send(datagram.data, datagram.address)

    def _arm_sweep(self) -> None:
        delay_s = max(0.0, self.core.next_deadline() - time.monotonic())
        self._sweep_timer = asyncio.get_running_loop().call_later(delay_s, self._sweep)

    def _sweep(self) -> None:
        self.core.sweep(time.monotonic())
        self._arm_sweep()

    def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        for relay_socket in self.sockets:
            if relay_socket.transport is not None:
                relay_socket.transport.close()

    def stats(self) -> dict[str, Any]:
        return self.core.stats()
