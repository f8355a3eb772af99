"""nat-report: what kind of NAT is in front of this host, asked of a relay on several addresses.

The node registers with the relay (docs/relay-protocol.md) from one UDP socket at each address
and compares the public address the relay saw each time:
- the mapping equals our own address and port: no NAT;
- the same mapping towards two relay IPs: endpoint-independent mapping (hole punching works);
- another mapping towards another IP, but the same towards another port of the same IP:
  address-dependent;
- another mapping even towards another port of the same IP: address-and-port-dependent
  (symmetric: punching fails, traffic stays on the relay).
Two ports on one IP cannot tell endpoint-independent from address-dependent mapping, so what the
probes cannot decide stays `unknown`, never a guess. It describes the side it runs on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tomproto.addresses import format_host_port, wildcard_for
from tomproto.core.relay_registration import RegistrationState, RelayRegistration
from tomproto.identity import Identity
from tomproto.relay.protocol import Address
from tomproto.transport.interfaces import local_ipv4_addresses

__all__ = ["NatReport", "probe_mappings", "verdict", "NO_NAT", "ENDPOINT_INDEPENDENT", "ADDRESS_DEPENDENT",
           "ADDRESS_AND_PORT_DEPENDENT", "UNKNOWN", "nat_report"]  # fmt: skip

NO_NAT = "no NAT"
ENDPOINT_INDEPENDENT = "endpoint-independent"
ADDRESS_DEPENDENT = "address-dependent"
ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent (symmetric)"
UNKNOWN = "unknown"
ATTEMPTS = 3


class _Prober(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, address: Address) -> None:
        self.replies.put_nowait((data, (address[0], address[1])))


async def _mapping(transport: asyncio.DatagramTransport, prober: _Prober, identity: Identity, relay: Address,
                   timeout_s: float) -> Address | None:  # fmt: skip
    """Register with the relay at `relay` (a HELLO every `timeout_s`, ATTEMPTS of them); the
    address it saw us from, or None if it never answered or refused us."""
    loop = asyncio.get_running_loop()
    registration = RelayRegistration(identity, relay, [], timeout_s=ATTEMPTS * timeout_s, hello_interval_s=timeout_s)
    registration.start(loop.time())
    while registration.state is RegistrationState.registering:
        for datagram in registration.datagrams_to_send():
            transport.sendto(datagram, relay)
        deadline = registration.next_deadline()
        remaining_s = 0.0 if deadline is None else deadline - loop.time()
        try:
            data, source = await asyncio.wait_for(prober.replies.get(), max(0.0, remaining_s))
        except TimeoutError:
            registration.handle_timer(loop.time())
            continue
        if source == relay:
            registration.receive(data, loop.time())
    return registration.observed_address if registration.state is RegistrationState.registered else None


async def probe_mappings(relays: list[Address], timeout_s: float = 1.0) -> tuple[Address, list[Address | None]]:
    """The local socket address and, per relay address, the mapping the relay observed."""
    loop = asyncio.get_running_loop()
    # One socket for every relay address: they must share an IP family (the command checks).
    wildcard = wildcard_for(relays[0] if relays else None)
    transport, prober = await loop.create_datagram_endpoint(_Prober, local_addr=(wildcard, 0))
    try:
        identity = Identity.generate()
        mappings = [await _mapping(transport, prober, identity, relay, timeout_s) for relay in relays]
        local = transport.get_extra_info("sockname")[:2]
    finally:
        transport.close()
    return (local[0], local[1]), mappings


@dataclass(frozen=True)
class NatReport:
    verdict: str
    local_port: int
    local_addresses: list[str]
    observations: list[tuple[Address, Address | None]]
    port_preserved: bool | None
    varies_by_address: bool | None
    varies_by_port: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "local_port": self.local_port,
            "local_addresses": self.local_addresses,
            "observed": [
                {"relay": format_host_port(relay), "mapped": None if mapped is None else format_host_port(mapped)}
                for relay, mapped in self.observations
            ],
            "port_preserved": self.port_preserved,
            "mapping_varies_by_destination_address": self.varies_by_address,
            "mapping_varies_by_destination_port": self.varies_by_port,
            "hairpinning": None,  # not tested: reported as unknown, not as absent
        }


def verdict(
    local: Address, local_addresses: list[str], observations: list[tuple[Address, Address | None]]
) -> NatReport:
    answered = [(relay, mapped) for relay, mapped in observations if mapped is not None]
    port_preserved = None
    varies_by_address = varies_by_port = None
    result = UNKNOWN
    if answered:
        first_relay, first = answered[0]
        port_preserved = first[1] == local[1]
        other_ip = [m for r, m in answered[1:] if r[0] != first_relay[0]]
        other_port = [m for r, m in answered[1:] if r[0] == first_relay[0] and r[1] != first_relay[1]]
        if other_ip:
            varies_by_address = any(m != first for m in other_ip)
        if other_port:
            varies_by_port = any(m != first for m in other_port)
        unvarying = varies_by_address is not True and varies_by_port is not True
        if first[0] in local_addresses and port_preserved and unvarying:
            result = NO_NAT
        elif varies_by_port:
            result = ADDRESS_AND_PORT_DEPENDENT
        elif varies_by_address is False:
            result = ENDPOINT_INDEPENDENT
        elif varies_by_address and varies_by_port is False:
            result = ADDRESS_DEPENDENT
    return NatReport(result, local[1], local_addresses, observations, port_preserved, varies_by_address, varies_by_port)


async def nat_report(relays: list[Address], timeout_s: float = 1.0) -> NatReport:
    local, mappings = await probe_mappings(relays, timeout_s)
    addresses = local_ipv4_addresses() or [local[0]]
    return verdict(local, addresses, list(zip(relays, mappings, strict=True)))

