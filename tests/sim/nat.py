"""A NAT in front of a private network: mapping, filtering and expiry as RFC 4787 names them.

Rules:
- Mapping: an outbound datagram from a private endpoint (ip, port) leaves from the NAT's public
  ip and a public port chosen by the mapping behaviour:
  - ENDPOINT_INDEPENDENT: one public port per private endpoint, whatever the destination;
  - ADDRESS_DEPENDENT: one public port per private endpoint and destination ip;
  - ADDRESS_AND_PORT_DEPENDENT ("symmetric"): one per private endpoint and destination (ip, port).
- Filtering: an inbound datagram to a public port with no live mapping is dropped (UNMAPPED).
  To a mapped port it passes when the private endpoint has sent, through that mapping, to:
  - ENDPOINT_INDEPENDENT: anyone (any source passes);
  - ADDRESS_DEPENDENT: the source's ip (any port of it);
  - ADDRESS_AND_PORT_DEPENDENT: the source's exact (ip, port);
  and is dropped otherwise (FILTERED).
- Expiry: a mapping lives `mapping_timeout_s` after the last outbound datagram through it, and the
  permission to receive from a remote lives as long after the last datagram sent to that remote.
  Only outbound traffic refreshes (inbound never does). An expired mapping is gone: the next
  outbound datagram gets a new public port.
- Ports: allocated in sequence from `first_port` (the network draws it from its seeded Random when
  not given), wrapping within [PORT_MIN, PORT_MAX] and skipping ports still in use.
- Hairpinning (a private host reaching another through the NAT's public address) is the
  network's decision, read from `hairpinning` (off by default).
The NAT is a state machine: it is told `now` and does no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tests.sim.errors import PortsExhausted

__all__ = [
    "DEFAULT_MAPPING_TIMEOUT_S",
    "EIM_ADF",
    "EIM_APDF",
    "EIM_EIF",
    "PORT_MAX",
    "PORT_MIN",
    "SYMMETRIC",
    "Filtering",
    "Inbound",
    "Mapping",
    "Nat",
    "NatBehaviour",
]

Address = tuple[str, int]

PORT_MIN = 1024
PORT_MAX = 65535
DEFAULT_MAPPING_TIMEOUT_S = 30.0


class Mapping(enum.Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Filtering(enum.Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Inbound(enum.Enum):
    """The NAT's verdict on a datagram arriving at its public address."""

    PASSED = "passed"
    UNMAPPED = "unmapped"
    FILTERED = "filtered"


@dataclass(frozen=True, slots=True)
class NatBehaviour:
    mapping: Mapping = Mapping.ENDPOINT_INDEPENDENT
    filtering: Filtering = Filtering.ENDPOINT_INDEPENDENT
    mapping_timeout_s: float = DEFAULT_MAPPING_TIMEOUT_S
    hairpinning: bool = False

    def __post_init__(self) -> None:
        if self.mapping_timeout_s <= 0:
            raise ValueError("mapping_timeout_s must be positive")


# The usual suspects: a "full cone", a "restricted cone", a "port-restricted cone", and the
# symmetric NAT of carrier-grade and corporate networks.
EIM_EIF = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ENDPOINT_INDEPENDENT)
EIM_ADF = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_DEPENDENT)
EIM_APDF = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT)
SYMMETRIC = NatBehaviour(Mapping.ADDRESS_AND_PORT_DEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT)


@dataclass(slots=True)
class _Binding:
    private: Address
    public_port: int
    key: tuple[Address, str | None, int | None]
    last_outbound_s: float
    # When the private endpoint last sent to each remote through this binding (filtering).
    remotes: dict[Address, float] = field(default_factory=dict)


class Nat:
    """One NAT: a public ip, a behaviour, and its table of mappings."""

    def __init__(self, public_ip: str, behaviour: NatBehaviour, first_port: int, *, site: str | None = None) -> None:
        if not PORT_MIN <= first_port <= PORT_MAX:
            raise ValueError(f"first_port must be in [{PORT_MIN}, {PORT_MAX}]")
        self.public_ip = public_ip
        self.behaviour = behaviour
        self.site = public_ip if site is None else site
        self._next_port = first_port
        self._by_key: dict[tuple[Address, str | None, int | None], _Binding] = {}
        self._by_port: dict[int, _Binding] = {}

    def outbound(self, private: Address, remote: Address, now: float) -> Address:
        """The public source of a datagram from `private` to `remote`; creates or refreshes
        the mapping."""
        key = self._key(private, remote)
        binding = self._by_key.get(key)
        if binding is not None and not self._alive(binding, now):
            self._remove(binding)
            binding = None
        if binding is None:
            binding = _Binding(private, self._allocate_port(now), key, now)
            self._by_key[key] = binding
            self._by_port[binding.public_port] = binding
        binding.last_outbound_s = now
        binding.remotes[remote] = now
        return (self.public_ip, binding.public_port)

    def inbound(self, public_port: int, remote: Address, now: float) -> tuple[Inbound, Address | None]:
        """The verdict on a datagram from `remote` to our public port, and the private endpoint
        it is for when it passes."""
        binding = self._by_port.get(public_port)
        if binding is None or not self._alive(binding, now):
            return Inbound.UNMAPPED, None
        filtering = self.behaviour.filtering
        timeout_s = self.behaviour.mapping_timeout_s
        if filtering is Filtering.ADDRESS_AND_PORT_DEPENDENT:
            sent_s = binding.remotes.get(remote)
            allowed = sent_s is not None and now - sent_s < timeout_s
        elif filtering is Filtering.ADDRESS_DEPENDENT:
            allowed = any(
                address[0] == remote[0] and now - sent_s < timeout_s for address, sent_s in binding.remotes.items()
            )
        else:
            allowed = True
        return (Inbound.PASSED, binding.private) if allowed else (Inbound.FILTERED, None)

    def public_port_of(self, private: Address, remote: Address, now: float) -> int | None:
        """The public port `private` would leave from towards `remote`, if mapped now (no change)."""
        binding = self._by_key.get(self._key(private, remote))
        return binding.public_port if binding is not None and self._alive(binding, now) else None

    def live_mappings(self, now: float) -> int:
        return sum(1 for binding in self._by_port.values() if self._alive(binding, now))

    def _key(self, private: Address, remote: Address) -> tuple[Address, str | None, int | None]:
        mapping = self.behaviour.mapping
        if mapping is Mapping.ENDPOINT_INDEPENDENT:
            return (private, None, None)
        if mapping is Mapping.ADDRESS_DEPENDENT:
            return (private, remote[0], None)
        return (private, remote[0], remote[1])

    def _alive(self, binding: _Binding, now: float) -> bool:
        return now - binding.last_outbound_s < self.behaviour.mapping_timeout_s

    def _remove(self, binding: _Binding) -> None:
        del self._by_key[binding.key]
        del self._by_port[binding.public_port]

    def _allocate_port(self, now: float) -> int:
        span = PORT_MAX - PORT_MIN + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = PORT_MIN + (port - PORT_MIN + 1) % span
            held = self._by_port.get(port)
            if held is None:
                return port
            if not self._alive(held, now):  # an expired mapping frees its port for reuse
                self._remove(held)
                return port
        raise PortsExhausted(f"NAT {self.public_ip} has no free public port")
