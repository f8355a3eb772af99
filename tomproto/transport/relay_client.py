"""The node's side of tom-relay: register, keep the registration alive, forward, call.

Rules (docs/relay-protocol.md): the registration answers the relay's challenge with a signature
(our HELLO is padded to the challenge's size: the relay answers nothing smaller);
keep-alives every `keepalive_s` (at most 15 s) hold the NAT mapping to the relay open and report
the address the relay sees; a refusal "not registered" triggers a new registration.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from tomproto.addresses import format_host_port
from tomproto.relay import protocol as wire
from tomproto.relay.protocol import Address
from tomproto.transport.errors import TransportError

if TYPE_CHECKING:
    from tomproto.transport.endpoint import Endpoint

__all__ = ["RelayClient", "local_ipv4_addresses"]

REGISTER_TIMEOUT_S = 5.0
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


class RelayClient:
    def __init__(self, endpoint: Endpoint, relay_address: Address, send: Callable[[bytes, Address], None]) -> None:
        self.endpoint = endpoint
        self.relay_address = relay_address
        self._send = send
        self.relay_id: bytes | None = None
        self.observed_address: Address | None = None
        self.registered = asyncio.Event()
        self._answered = asyncio.Event()
        self.refusal: str | None = None
        self.keepalive_s = 15
        self._keepalive_task: asyncio.Task[None] | None = None

    def candidates(self) -> list[Address]:
        host, port = self.endpoint.local_address
        hosts = local_ipv4_addresses() if host in ("0.0.0.0", "::") else [host]
        return [(address, port) for address in hosts]

    async def register(self, timeout_s: float = REGISTER_TIMEOUT_S) -> Address:
        """Register (or register again) and return the address the relay sees us from."""
        loop = asyncio.get_running_loop()
        self.registered.clear()
        self._answered.clear()
        self.refusal = None
        deadline = loop.time() + timeout_s
        while not self._answered.is_set() and loop.time() < deadline:
            self._send(wire.hello(self.endpoint.identity.node_id.raw), self.relay_address)
            try:
                await asyncio.wait_for(self._answered.wait(), max(0.01, min(1.0, deadline - loop.time())))
            except asyncio.TimeoutError:
                continue  # the HELLO or its answer was lost: ask again
        where = format_host_port(self.relay_address)
        if self.refusal is not None:
            raise TransportError(f"relay {where} refused us: {self.refusal}")
        if not self.registered.is_set() or self.observed_address is None:
            raise TransportError(f"no answer from relay {where} within {timeout_s:g} s")
        if self._keepalive_task is None:
            self._keepalive_task = asyncio.ensure_future(self._keep_alive())
        return self.observed_address

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            self._send(wire.keepalive(self.endpoint.identity.node_id.raw), self.relay_address)

    def close(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()

    def forward(self, destination: bytes, payload: bytes) -> None:
        self._send(wire.forward(destination, payload), self.relay_address)

    def call(self, target: bytes) -> None:
        self._send(wire.call(target), self.relay_address)

    def handle(self, data: bytes) -> None:
        """A packet from the relay's address (RELAYED and CALL_FROM are the endpoint's business)."""
        kind = data[0]
        if kind == wire.CHALLENGE and len(data) == wire.CHALLENGE_BYTES:
            self.relay_id = data[1:33]
            self._send(wire.register(self.endpoint.identity, self.relay_id, data[33:], self.candidates()), self.relay_address)
        elif kind == wire.REGISTERED and len(data) == 1 + wire.ADDRESS_BYTES + 4:
            self.observed_address = wire.unpack_address(data[1 : 1 + wire.ADDRESS_BYTES])
            keepalive_s, _ = struct.unpack(">HH", data[1 + wire.ADDRESS_BYTES :])
            self.keepalive_s = max(1, min(15, keepalive_s))
            self.registered.set()
            self._answered.set()
        elif kind == wire.KEEPALIVE_ACK and len(data) == 1 + wire.ADDRESS_BYTES:
            self.observed_address = wire.unpack_address(data[1:])
        elif kind == wire.REFUSED and len(data) >= 2:
            if data[1] == wire.Refusal.not_registered:
                if self.registered.is_set():
                    asyncio.ensure_future(self._register_again())
                return
            if data[1] == wire.Refusal.rate_limited:
                return  # the relay is busy (or someone floods from our address): register() asks again
            self.refusal = data[2:].decode(errors="replace") or f"code {data[1]}"
            self._answered.set()  # wake register(), which reports the refusal

    async def _register_again(self) -> None:
        try:
            await self.register()
        except TransportError:
            self.endpoint.counters.relay_errors += 1
