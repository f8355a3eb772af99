"""The node's link to its tom-relay, sans-IO: registered, kept registered, reported.

Rules it enforces:
- registration itself is relay_registration.py's machine (HELLO, CHALLENGE, REGISTER, keep-alives,
  registering again on "not registered");
- the first registration's outcome is reported (`RelayRegistered` or `RelayRegistrationFailed`):
  the driver tells its user when the relay cannot be reached;
- once registered, the link does not give up: a registration that fails later (the relay
  restarted and stayed unreachable past the timeout) is started again after
  REREGISTER_FIRST_S, then twice as long each time up to REREGISTER_MAX_S, until it succeeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from tomproto.core.paths import Address, format_host_port
from tomproto.core.relay_registration import ObservedAddressChanged as RelayMovedUs
from tomproto.core.relay_registration import (
    Registered,
    RegistrationRefused,
    RegistrationState,
    RegistrationTimedOut,
    RelayRegistration,
)
from tomproto.core.transport_events import (
    ObservedAddressChanged,
    RelayRegistered,
    RelayRegistrationFailed,
    TransportEvent,
)
from tomproto.errors import RelayRefused, RelayUnreachable
from tomproto.identity import Identity

__all__ = ["RelayLink", "REREGISTER_FIRST_S", "REREGISTER_MAX_S"]

REREGISTER_FIRST_S = 5.0
REREGISTER_MAX_S = 60.0


class RelayLink:
    def __init__(self, identity: Identity, address: Address, candidates: Sequence[Address]) -> None:
        self.address = address
        self.registration = RelayRegistration(identity, address, candidates)
        self._was_registered = False
        self._retry_at: float | None = None
        self._retry_after_s = REREGISTER_FIRST_S

    @property
    def registered(self) -> bool:
        return self.registration.state is RegistrationState.registered

    def start(self, now: float) -> None:
        self._retry_at = None
        self.registration.start(now)

    def set_candidates(self, candidates: Sequence[Address]) -> None:
        self.registration.set_candidates(candidates)

    def receive(self, data: bytes, now: float) -> None:
        self.registration.receive(data, now)

    def next_deadline(self) -> float | None:
        deadline = self.registration.next_deadline()
        if self._retry_at is not None and (deadline is None or self._retry_at < deadline):
            return self._retry_at
        return deadline

    def handle_timer(self, now: float) -> None:
        if self._retry_at is not None and now >= self._retry_at:
            self.start(now)
        self.registration.handle_timer(now)

    def datagrams_to_send(self) -> list[bytes]:
        return self.registration.datagrams_to_send()

    def events(self, now: float) -> list[TransportEvent]:
        """What happened to the registration since the last call, as transport events."""
        found: list[TransportEvent] = []
        where = format_host_port(self.address)
        while (event := self.registration.next_event()) is not None:
            if isinstance(event, Registered):
                self._was_registered = True
                self._retry_after_s = REREGISTER_FIRST_S
                found.append(RelayRegistered(event.observed_address))
            elif isinstance(event, RelayMovedUs):
                found.append(ObservedAddressChanged(event.address))
            elif isinstance(event, RegistrationRefused | RegistrationTimedOut):
                if isinstance(event, RegistrationRefused):
                    error: RelayRefused | RelayUnreachable = RelayRefused(f"relay {where} refused us: {event.reason}")
                else:
                    error = RelayUnreachable(f"no answer from relay {where} within {event.timeout_s:g} s")
                found.append(RelayRegistrationFailed(error))
                if self._was_registered:
                    self._retry_at = now + self._retry_after_s
                    self._retry_after_s = min(REREGISTER_MAX_S, self._retry_after_s * 2)
        return found
