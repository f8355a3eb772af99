"""PLACEHOLDER until the relaycore branch lands (same API)."""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from tomproto.identity import Identity
from tomproto.relay import protocol as wire

Address = tuple[str, int]
REGISTER_TIMEOUT_S = 5.0


class RegistrationState(Enum):
    idle = "idle"
    registering = "registering"
    registered = "registered"
    refused = "refused"
    timed_out = "timed_out"


@dataclass(frozen=True, slots=True)
class Registered:
    observed_address: Address
    at_s: float


@dataclass(frozen=True, slots=True)
class RegistrationRefused:
    reason: str


@dataclass(frozen=True, slots=True)
class RegistrationTimedOut:
    timeout_s: float


@dataclass(frozen=True, slots=True)
class ObservedAddressChanged:
    address: Address


class RelayRegistration:
    def __init__(self, identity: Identity, relay_address: Address, candidates: Sequence[Address], *,
                 timeout_s: float = REGISTER_TIMEOUT_S, hello_interval_s: float = 1.0) -> None:
        self.identity = identity
        self.relay_address = relay_address
        self.candidates = list(candidates)
        self.timeout_s = timeout_s
        self.hello_interval_s = hello_interval_s
        self.state = RegistrationState.idle
        self.relay_id: bytes | None = None
        self.observed_address: Address | None = None
        self.keepalive_s = 15
        self.refusal: str | None = None
        self._out: list[bytes] = []
        self._events: deque[object] = deque()
        self._hello_at: float | None = None
        self._give_up_at: float | None = None
        self._keepalive_at: float | None = None

    def set_candidates(self, candidates: Sequence[Address]) -> None:
        self.candidates = list(candidates)

    def start(self, now: float) -> None:
        self.state = RegistrationState.registering
        self._give_up_at = now + self.timeout_s
        self._hello(now)

    def _hello(self, now: float) -> None:
        self._out.append(wire.hello(self.identity.node_id.raw))
        self._hello_at = now + self.hello_interval_s

    def receive(self, data: bytes, now: float) -> None:
        if not data:
            return
        kind = data[0]
        if kind == wire.CHALLENGE and len(data) == wire.CHALLENGE_BYTES and self.state is RegistrationState.registering:
            self.relay_id = data[1:33]
            self._out.append(wire.register(self.identity, self.relay_id, data[33:], self.candidates))
        elif kind == wire.REGISTERED and len(data) == 1 + wire.ADDRESS_BYTES + 4:
            self.observed_address = wire.unpack_address(data[1 : 1 + wire.ADDRESS_BYTES])
            keepalive_s, _ = struct.unpack(">HH", data[1 + wire.ADDRESS_BYTES :])
            self.keepalive_s = max(1, min(15, keepalive_s))
            self.state = RegistrationState.registered
            self._hello_at = self._give_up_at = None
            self._keepalive_at = now + self.keepalive_s
            self._events.append(Registered(self.observed_address, now))
        elif kind == wire.KEEPALIVE_ACK and len(data) == 1 + wire.ADDRESS_BYTES:
            self.observed_address = wire.unpack_address(data[1:])
        elif kind == wire.REFUSED and len(data) >= 2:
            if data[1] == wire.Refusal.not_registered:
                if self.state is RegistrationState.registered:
                    self.start(now)
                return
            if data[1] == wire.Refusal.rate_limited:
                return
            self.refusal = data[2:].decode(errors="replace") or f"code {data[1]}"
            self.state = RegistrationState.refused
            self._hello_at = self._give_up_at = None
            self._events.append(RegistrationRefused(self.refusal))

    def handle_timer(self, now: float) -> None:
        if self._give_up_at is not None and now >= self._give_up_at:
            self.state = RegistrationState.timed_out
            self._hello_at = self._give_up_at = None
            self._events.append(RegistrationTimedOut(self.timeout_s))
        if self._hello_at is not None and now >= self._hello_at:
            self._hello(now)
        if self._keepalive_at is not None and now >= self._keepalive_at and self.state is RegistrationState.registered:
            self._out.append(wire.keepalive(self.identity.node_id.raw))
            self._keepalive_at = now + self.keepalive_s

    def next_deadline(self) -> float | None:
        due = [d for d in (self._hello_at, self._give_up_at, self._keepalive_at) if d is not None]
        return min(due) if due else None

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> object | None:
        return self._events.popleft() if self._events else None
