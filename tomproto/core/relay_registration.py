"""A node's registration with tom-relay, sans-IO (docs/relay-protocol.md): the time and the
relay's packets in, datagrams for the relay and events out. The caller sends every datagram to
`relay_address`, hands over every packet that came from there, and calls `handle_timer` at
`next_deadline()`.

Rules it enforces:
- `start` sends a HELLO padded to the size of the CHALLENGE it asks for (the relay answers
  nothing smaller), again every `hello_interval_s` until the relay registers or refuses us, and
  gives up `timeout_s` after `start` (`RegistrationTimedOut`);
- a CHALLENGE is answered with a REGISTER signed over the relay's id, the challenge and our
  candidate addresses, once per challenge (a duplicated CHALLENGE would be a spent one);
- only the answer to a REGISTER we sent counts: a REGISTERED before that is ignored;
- "rate limited" is transient: we keep sending HELLO until the deadline; any other refusal while
  registering is final (`RegistrationRefused`); while registered, a refusal "not registered" (the
  relay restarted, or our registration expired) starts a new registration at once, and refusals
  of REGISTERs we sent twice are ignored;
- while registered, a KEEPALIVE every `keepalive_s` (the relay's value, clamped to 1 to 15 s)
  holds our NAT mapping to the relay open; the address the relay sees in its answer, when it
  changes, is an `ObservedAddressChanged` (our NAT mapping moved);
- a relay that answers none of SILENT_KEEPALIVES keep-alives in a row is gone (it crashed, or the
  way to it broke): a new registration starts, whose outcome is reported like the first;
- garbage never raises: packets of other kinds or of the wrong length are ignored.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from tomproto.identity import Identity
from tomproto.relay import protocol as wire
from tomproto.relay.protocol import Address

__all__ = [
    "HELLO_INTERVAL_S",
    "MAX_KEEPALIVE_S",
    "MIN_KEEPALIVE_S",
    "REGISTER_TIMEOUT_S",
    "SILENT_KEEPALIVES",
    "ObservedAddressChanged",
    "Registered",
    "RegistrationEvent",
    "RegistrationRefused",
    "RegistrationState",
    "RegistrationTimedOut",
    "RelayRegistration",
]

REGISTER_TIMEOUT_S = 5.0
HELLO_INTERVAL_S = 1.0
MIN_KEEPALIVE_S = 1
MAX_KEEPALIVE_S = 15  # common NAT UDP timeouts are 30 s
SILENT_KEEPALIVES = 3

_REGISTERED_BYTES = 1 + wire.ADDRESS_BYTES + 4
_KEEPALIVE_ACK_BYTES = 1 + wire.ADDRESS_BYTES
_INTERVALS = struct.Struct(">HH")


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


RegistrationEvent = Registered | RegistrationRefused | RegistrationTimedOut | ObservedAddressChanged


class RelayRegistration:
    def __init__(
        self,
        identity: Identity,
        relay_address: Address,
        candidates: Sequence[Address],
        *,
        timeout_s: float = REGISTER_TIMEOUT_S,
        hello_interval_s: float = HELLO_INTERVAL_S,
    ) -> None:
        self.identity = identity
        self.relay_address = relay_address
        self.timeout_s = timeout_s
        self.hello_interval_s = hello_interval_s
        self.state = RegistrationState.idle
        self.relay_id: bytes | None = None
        self.observed_address: Address | None = None
        self.keepalive_s = MAX_KEEPALIVE_S
        self.refusal: str | None = None
        self._candidates = tuple(candidates)
        self._datagrams: list[bytes] = []
        self._events: deque[RegistrationEvent] = deque()
        self._answered: set[bytes] = set()  # challenges of this attempt we sent a REGISTER for
        self._hello_due_s = 0.0
        self._give_up_s = 0.0
        self._keepalive_due_s = 0.0
        self._heard_s = 0.0  # the relay's last answer while registered

    def set_candidates(self, candidates: Sequence[Address]) -> None:
        """Our own local addresses, sent with the next REGISTER (for peers in the same LAN)."""
        self._candidates = tuple(candidates)

    # -- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register, or register again: a HELLO now, and again until answered or `timeout_s`."""
        self.state = RegistrationState.registering
        self.refusal = None
        self._answered.clear()
        self._give_up_s = now + self.timeout_s
        self._send_hello(now)

    def receive(self, data: bytes, now: float) -> None:
        """A packet that came from `relay_address`."""
        if not data:
            return
        kind = data[0]
        if kind == wire.CHALLENGE and len(data) == wire.CHALLENGE_BYTES:
            self._challenge(data)
        elif kind == wire.REGISTERED and len(data) == _REGISTERED_BYTES:
            self._registered(data, now)
        elif kind == wire.KEEPALIVE_ACK and len(data) == _KEEPALIVE_ACK_BYTES:
            if self.state is RegistrationState.registered:
                self._heard_s = now
                self._observe(wire.unpack_address(data[1:]))
        elif kind == wire.REFUSED and len(data) >= 2:
            self._refused(data[1], data[2:].decode(errors="replace"), now)

    def handle_timer(self, now: float) -> None:
        if self.state is RegistrationState.registering:
            if now >= self._give_up_s:
                self.state = RegistrationState.timed_out
                self._events.append(RegistrationTimedOut(self.timeout_s))
            elif now >= self._hello_due_s:
                self._send_hello(now)
        elif self.state is RegistrationState.registered:
            if now >= self._silent_after_s:
                self.start(now)
            elif now >= self._keepalive_due_s:
                self._datagrams.append(wire.keepalive(self.identity.node_id.raw))
                self._keepalive_due_s = now + self.keepalive_s

    @property
    def _silent_after_s(self) -> float:
        """When the relay, silent since its last answer, counts as gone (a little after the
        last of SILENT_KEEPALIVES unanswered keep-alives had time to be answered)."""
        return self._heard_s + SILENT_KEEPALIVES * self.keepalive_s + min(1.0, self.keepalive_s / 2)

    # -- outputs ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if self.state is RegistrationState.registering:
            return min(self._hello_due_s, self._give_up_s)
        if self.state is RegistrationState.registered:
            return min(self._keepalive_due_s, self._silent_after_s)
        return None

    def datagrams_to_send(self) -> list[bytes]:
        """Everything to send to `relay_address` since the last call."""
        datagrams, self._datagrams = self._datagrams, []
        return datagrams

    def next_event(self) -> RegistrationEvent | None:
        return self._events.popleft() if self._events else None

    # -- packets ------------------------------------------------------------------------------

    def _send_hello(self, now: float) -> None:
        self._datagrams.append(wire.hello(self.identity.node_id.raw))
        self._hello_due_s = now + self.hello_interval_s

    def _challenge(self, data: bytes) -> None:
        nonce = data[1 + wire.ID_BYTES :]
        if self.state is not RegistrationState.registering or nonce in self._answered:
            return
        self._answered.add(nonce)
        self.relay_id = data[1 : 1 + wire.ID_BYTES]
        self._datagrams.append(wire.register(self.identity, self.relay_id, nonce, list(self._candidates)))

    def _registered(self, data: bytes, now: float) -> None:
        if self.state is RegistrationState.registered:
            self._heard_s = now
            self._observe(wire.unpack_address(data[1 : 1 + wire.ADDRESS_BYTES]))  # a duplicate
            return
        if self.state is not RegistrationState.registering or not self._answered:
            return  # not the answer to a REGISTER of ours
        observed = wire.unpack_address(data[1 : 1 + wire.ADDRESS_BYTES])
        keepalive_s, _ = _INTERVALS.unpack(data[1 + wire.ADDRESS_BYTES :])
        self.keepalive_s = max(MIN_KEEPALIVE_S, min(MAX_KEEPALIVE_S, keepalive_s))
        self.state = RegistrationState.registered
        self._keepalive_due_s = now + self.keepalive_s
        self._heard_s = now
        self._events.append(Registered(observed, now))
        self._observe(observed)

    def _observe(self, address: Address) -> None:
        previous, self.observed_address = self.observed_address, address
        if previous is not None and previous != address:
            self._events.append(ObservedAddressChanged(address))

    def _refused(self, code: int, message: str, now: float) -> None:
        if self.state is RegistrationState.registered:
            if code == wire.Refusal.not_registered:
                self.start(now)
            return  # other refusals answer a REGISTER we sent twice: we are registered
        transient = code in (wire.Refusal.rate_limited, wire.Refusal.not_registered)
        if self.state is not RegistrationState.registering or transient:
            return  # rate limited: the HELLOs go on until the deadline
        self.state = RegistrationState.refused
        self.refusal = message or f"code {code}"
        self._events.append(RegistrationRefused(self.refusal))
