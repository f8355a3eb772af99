"""Registering a node with a relay core in tests, through the node's own machine
(RelayRegistration): no test carries a copy of the handshake."""

from __future__ import annotations

from collections.abc import Sequence

from tomproto.core.relay_registration import RegistrationState, RelayRegistration
from tomproto.core.relay_server import RelayCore
from tomproto.identity import Identity
from tomproto.relay.protocol import Address

RELAY_ADDRESS = ("203.0.113.1", 7478)


def register_with(
    core: RelayCore,
    identity: Identity,
    address: Address,
    now: float,
    *,
    socket: int = 0,
    candidates: Sequence[Address] = (),
) -> RelayRegistration:
    """Register `identity` from `address` on the core's socket `socket`, all at `now`, with no
    packet lost; the node's machine, registered."""
    registration = RelayRegistration(identity, RELAY_ADDRESS, candidates)
    registration.start(now)
    while datagrams := registration.datagrams_to_send():
        for datagram in datagrams:
            for answer in core.handle(datagram, address, now, socket):
                if (answer.address, answer.socket) != (address, socket):
                    raise AssertionError(f"the relay answered {answer.address} on socket {answer.socket}")
                registration.receive(answer.data, now)
    if registration.state is not RegistrationState.registered:
        raise AssertionError(f"not registered: {registration.state.value}, {registration.refusal}")
    return registration
