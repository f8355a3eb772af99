"""The node's side of tom-relay, for the asyncio endpoint: a thin driver of the sans-IO
`RelayRegistration` (tomproto/core/relay_registration.py, where the rules are), plus FORWARD and
CALL. It sends what the machine says, hands it the relay's packets and fires its timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from tomproto.addresses import format_host_port
from tomproto.core.relay_registration import (
    REGISTER_TIMEOUT_S,
    Registered,
    RegistrationRefused,
    RegistrationState,
    RegistrationTimedOut,
    RelayRegistration,
)
from tomproto.relay import protocol as wire
from tomproto.relay.protocol import Address
from tomproto.transport.errors import TransportError
from tomproto.transport.interfaces import local_ipv4_addresses

if TYPE_CHECKING:
    from tomproto.transport.endpoint import Endpoint

__all__ = ["RelayClient", "local_ipv4_addresses"]


class RelayClient:
    def __init__(self, endpoint: Endpoint, relay_address: Address, send: Callable[[bytes, Address], None]) -> None:
        self.endpoint = endpoint
        self.relay_address = relay_address
        self._send = send
        self.machine = RelayRegistration(endpoint.identity, relay_address, [], timeout_s=REGISTER_TIMEOUT_S)
        self.registered = asyncio.Event()  # set while the machine is registered
        self._settled = asyncio.Event()  # registered, refused or timed out: register() may return
        self._awaited = False  # a register() call waits: it reports failures, not the counters
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def relay_id(self) -> bytes | None:
        return self.machine.relay_id

    @property
    def observed_address(self) -> Address | None:
        return self.machine.observed_address

    @property
    def refusal(self) -> str | None:
        return self.machine.refusal

    @property
    def keepalive_s(self) -> int:
        return self.machine.keepalive_s

    def candidates(self) -> list[Address]:
        host, port = self.endpoint.local_address
        hosts = local_ipv4_addresses() if host in ("0.0.0.0", "::") else [host]
        return [(address, port) for address in hosts]

    async def register(self) -> Address:
        """Register (or register again) and return the address the relay sees us from."""
        self._settled.clear()
        self.machine.set_candidates(self.candidates())
        self.machine.start(asyncio.get_running_loop().time())
        self._awaited = True
        try:
            self._pump()
            await self._settled.wait()  # the machine times out by itself
        finally:
            self._awaited = False
        where = format_host_port(self.relay_address)
        if self.machine.state is RegistrationState.refused:
            raise TransportError(f"relay {where} refused us: {self.machine.refusal}")
        if self.machine.state is not RegistrationState.registered or self.observed_address is None:
            raise TransportError(f"no answer from relay {where} within {self.machine.timeout_s:g} s")
        return self.observed_address

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()

    def forward(self, destination: bytes, payload: bytes) -> None:
        self._send(wire.forward(destination, payload), self.relay_address)

    def call(self, target: bytes) -> None:
        self._send(wire.call(target), self.relay_address)

    def handle(self, data: bytes) -> None:
        """A packet from the relay's address (RELAYED and CALL_FROM are the endpoint's business)."""
        self.machine.receive(data, asyncio.get_running_loop().time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.machine.handle_timer(asyncio.get_running_loop().time())
        self._pump()

    def _pump(self) -> None:
        if self._closed:
            return
        for datagram in self.machine.datagrams_to_send():
            self._send(datagram, self.relay_address)
        while (event := self.machine.next_event()) is not None:
            if isinstance(event, Registered | RegistrationRefused | RegistrationTimedOut):
                self._settled.set()
            if isinstance(event, RegistrationRefused | RegistrationTimedOut) and not self._awaited:
                self.endpoint.counters.relay_errors += 1  # a registration again, on its own, failed
        if self.machine.state is RegistrationState.registered:
            self.registered.set()
        else:
            self.registered.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)
