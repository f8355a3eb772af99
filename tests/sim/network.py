"""The simulated network: hosts at addresses, NATs in front of private ones, impaired links,
partitions, all on one virtual clock and one seeded Random.

Order of things for one datagram:
1. A host's call returns (receive, timer, or a test's `poll`); the network takes the host's
   `datagrams_to_send()` in order, then reschedules the host's one timer at `next_deadline()`
   (replacing the previous one; a deadline in the past fires at `now`; None cancels it). The
   clock has a resolution, as a real one does: a timer never fires twice at one instant; asked
   for at or before the time it last fired, it fires `timer_resolution_s` after it. (aioquic
   needs this: at `now == loss_at` its float arithmetic can find nothing lost and ask for the
   same `loss_at` again, which only a clock that moves on gets out of.)
2. Sending, at `now`: counted SENT (and handed to `tap`). A host behind a NAT sending outside its
   private network goes through the NAT's `outbound` (creating or refreshing the mapping) and
   leaves from the public address it returns; to an address of its own private network it goes
   straight there. The impairment of (sender's site, destination's site) then decides loss,
   duplication and each copy's delay (links.py).
3. Arrival, at `now` + delay: the receiver is found (a public host; through a NAT's `inbound`
   verdict for a NAT's public address; or on the sender's private network). A partition in force
   between the two ends drops it; else a NAT verdict or a missing host drops it; else the host's
   `receive_datagram` is called with the source it would see (the sender's public address when
   it came through a NAT), then step 1 for that host.
Sites: a public host's site is its ip unless named; hosts behind a NAT are in the NAT's site (its
public ip unless named). A destination that is neither a host nor a NAT has no site and gets the
default impairment, as does every pair of sites with no link set.
Nothing here reads the wall clock or the global random module: the seed fixes the whole run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

from tests.sim.accounting import Counters, Fate, TraceEntry
from tests.sim.clock import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_STEPS_AT_ONE_TIME,
    ScheduledCall,
    Scheduler,
)
from tests.sim.errors import AddressInUse, SimulationError
from tests.sim.hosts import Address, Host
from tests.sim.links import (
    DEFAULT_IMPAIRMENT,
    Impairment,
    LinkTable,
    draw_copies,
    draw_delay_s,
)
from tests.sim.nat import EIM_EIF, PORT_MAX, PORT_MIN, Inbound, Nat, NatBehaviour
from tests.sim.partitions import Partition, Side, between

__all__ = ["DEFAULT_TIMER_RESOLUTION_S", "SimNetwork", "Tap"]

# (time_s, sender's address, destination, bytes) for every datagram a host sends.
Tap = Callable[[float, Address, Address, bytes], None]

DEFAULT_TIMER_RESOLUTION_S = 1e-6

_NAT_FATES = {Inbound.UNMAPPED: Fate.NAT_UNMAPPED, Inbound.FILTERED: Fate.NAT_FILTERED}


class _Endpoint:
    """A host as attached: its address, NAT, site and pending timer."""

    __slots__ = ("address", "fire", "fired_s", "host", "nat", "site", "timer")

    def __init__(self, host: Host, address: Address, nat: Nat | None, site: str) -> None:
        self.host = host
        self.address = address
        self.nat = nat
        self.site = site
        self.timer: ScheduledCall | None = None
        self.fire: Callable[[], None] = lambda: None
        self.fired_s: float | None = None  # when its timer last fired


class _Datagram:
    __slots__ = ("data", "destination", "private_network", "sender", "wire_source")

    def __init__(
        self,
        sender: _Endpoint,
        destination: Address,
        wire_source: Address,
        private_network: Nat | None,
        data: bytes,
    ) -> None:
        self.sender = sender
        self.destination = destination
        self.wire_source = wire_source  # the source on the wire: public when it crossed a NAT
        self.private_network = private_network  # the NAT whose private network carries it, if so
        self.data = data


class SimNetwork:
    """Hosts, NATs, links and partitions in virtual time; `seed` fixes every random draw."""

    def __init__(
        self,
        seed: int,
        *,
        default: Impairment = DEFAULT_IMPAIRMENT,
        trace: bool = False,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_steps_at_one_time: int = DEFAULT_MAX_STEPS_AT_ONE_TIME,
        start_s: float = 0.0,
        timer_resolution_s: float = DEFAULT_TIMER_RESOLUTION_S,
    ) -> None:
        if timer_resolution_s < 0:
            raise ValueError("timer_resolution_s must not be negative")
        self.timer_resolution_s = timer_resolution_s
        self.rng = random.Random(seed)
        self.scheduler = Scheduler(start_s=start_s, max_steps=max_steps, max_steps_at_one_time=max_steps_at_one_time)
        self.links = LinkTable(default)
        self.counters = Counters()
        self.trace: list[TraceEntry] | None = [] if trace else None
        self.tap: Tap | None = None
        self._public: dict[Address, _Endpoint] = {}
        self._nats: dict[str, Nat] = {}
        self._private: dict[str, dict[Address, _Endpoint]] = {}  # NAT public ip -> its hosts
        self._by_host: dict[int, _Endpoint] = {}
        self._flow_last_arrival_s: dict[tuple[_Endpoint, Address], float] = {}
        self._partitions: list[Partition] = []

    # The clock.

    @property
    def now(self) -> float:
        return self.scheduler.now

    def run_until(self, until_s: float) -> None:
        self.scheduler.run_until(until_s)

    def run_for(self, duration_s: float) -> None:
        self.scheduler.run_until(self.scheduler.now + duration_s)

    def run_while(self, predicate: Callable[[], bool], limit_s: float) -> None:
        self.scheduler.run_while(predicate, limit_s)

    # The world.

    def add_nat(
        self,
        public_ip: str,
        behaviour: NatBehaviour = EIM_EIF,
        *,
        site: str | None = None,
        first_port: int | None = None,
    ) -> Nat:
        """A NAT at `public_ip`; its first public port is drawn from the seed unless given."""
        if public_ip in self._nats or any(address[0] == public_ip for address in self._public):
            raise AddressInUse(f"{public_ip} is already in use on the public network")
        if first_port is None:
            first_port = self.rng.randint(PORT_MIN, PORT_MAX)
        nat = Nat(public_ip, behaviour, first_port, site=site)
        self._nats[public_ip] = nat
        self._private[public_ip] = {}
        return nat

    def attach(self, host: Host, address: Address, *, nat: Nat | None = None, site: str | None = None) -> None:
        """Put `host` at `address`, behind `nat` when given (then `address` is private and the
        host is in the NAT's site), and take what it already has to send."""
        address = (address[0], address[1])
        if id(host) in self._by_host:
            raise AddressInUse(f"{host!r} is already attached (a host holds one address)")
        if nat is not None:
            if site is not None:
                raise ValueError("a host behind a NAT is in the NAT's site")
            if self._nats.get(nat.public_ip) is not nat:
                raise SimulationError(f"the NAT at {nat.public_ip} was not added to this network")
            table = self._private[nat.public_ip]
            site = nat.site
        else:
            if address[0] in self._nats:
                raise AddressInUse(f"{address[0]} is a NAT's public address")
            table = self._public
            site = address[0] if site is None else site
        if address in table:
            raise AddressInUse(f"{address} is already attached")
        endpoint = _Endpoint(host, address, nat, site)
        endpoint.fire = partial(self._fire_timer, endpoint)
        table[address] = endpoint
        self._by_host[id(host)] = endpoint
        self._service(endpoint)

    def detach(self, host: Host) -> None:
        """Take `host` off the network (a crash): its timer is cancelled, datagrams arriving for
        it are UNROUTABLE, and those it already sent still travel."""
        endpoint = self._by_host.pop(id(host))
        table = self._public if endpoint.nat is None else self._private[endpoint.nat.public_ip]
        del table[endpoint.address]
        if endpoint.timer is not None:
            endpoint.timer.cancel()
            endpoint.timer = None

    def poll(self, host: Host) -> None:
        """After a test called into `host` itself: send what it queued and reschedule its timer."""
        self._service(self._by_host[id(host)])

    def set_link(
        self, source_site: str, destination_site: str, forward: Impairment, backward: Impairment | None = None
    ) -> None:
        """Impair source → destination with `forward` and the way back with `backward` (the same
        when not given); other pairs keep the default."""
        self.links.set(source_site, destination_site, forward, backward)

    def partition(
        self, side_a: Side, side_b: Side | None = None, *, start_s: float | None = None, end_s: float | None = None
    ) -> Partition:
        """Drop datagrams between the two sides (either way; with `side_b` None, every datagram
        to or from side A) arriving from `start_s` (now) until `end_s` or `lift()`."""
        return self.partition_where(between(side_a, side_b), start_s=start_s, end_s=end_s)

    def partition_where(
        self, matches: Callable[[Address, Address], bool], *, start_s: float | None = None, end_s: float | None = None
    ) -> Partition:
        """Drop datagrams for which `matches(sender's address, receiver's address)` holds."""
        partition = Partition(matches, self.now if start_s is None else start_s, end_s)
        self._partitions.append(partition)
        return partition

    # Datagrams.

    def _service(self, endpoint: _Endpoint) -> None:
        host = endpoint.host
        for data, destination in host.datagrams_to_send():
            self._send(endpoint, data, (destination[0], destination[1]))
        deadline = host.next_deadline()
        timer = endpoint.timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                endpoint.timer = None
            return
        when_s = max(deadline, self.scheduler.now)
        if endpoint.fired_s is not None and when_s <= endpoint.fired_s:
            when_s = endpoint.fired_s + self.timer_resolution_s
        if timer is not None:
            if timer.when_s == when_s:
                return
            timer.cancel()
        endpoint.timer = self.scheduler.call_at(when_s, endpoint.fire)

    def _fire_timer(self, endpoint: _Endpoint) -> None:
        endpoint.timer = None
        endpoint.fired_s = self.scheduler.now
        endpoint.host.handle_timer(self.scheduler.now)
        self._service(endpoint)

    def _send(self, sender: _Endpoint, data: bytes, destination: Address) -> None:
        now = self.scheduler.now
        counters = self.counters
        counters.sent += 1
        if self.tap is not None:
            self.tap(now, sender.address, destination, data)
        nat = sender.nat
        private_network: Nat | None = None
        if nat is None:
            wire_source = sender.address
        elif destination in self._private[nat.public_ip]:
            wire_source, private_network = sender.address, nat
        else:
            wire_source = nat.outbound(sender.address, destination, now)
        impairment = self.links.between(sender.site, self._site_of(destination, private_network))
        copies = draw_copies(impairment, self.rng)
        if self.trace is not None:
            self.trace.append(TraceEntry(now, sender.address, destination, len(data), Fate.SENT))
        if copies == 0:
            counters.lost += 1
            if self.trace is not None:
                self.trace.append(TraceEntry(now, sender.address, destination, len(data), Fate.LOST))
            return
        if copies == 2:
            counters.duplicated += 1
            if self.trace is not None:
                self.trace.append(TraceEntry(now, sender.address, destination, len(data), Fate.DUPLICATED))
        datagram = _Datagram(sender, destination, wire_source, private_network, data)
        flow = (sender, destination)
        for _ in range(copies):
            arrival_s = now + draw_delay_s(impairment, self.rng)
            if not impairment.reorder:
                previous_s = self._flow_last_arrival_s.get(flow)
                if previous_s is not None and arrival_s < previous_s:
                    arrival_s = previous_s  # same time, later sequence: still after it
                self._flow_last_arrival_s[flow] = arrival_s
            counters.in_flight += 1
            self.scheduler.call_at(arrival_s, partial(self._arrive, datagram))

    def _site_of(self, destination: Address, private_network: Nat | None) -> str | None:
        if private_network is not None:
            return private_network.site
        endpoint = self._public.get(destination)
        if endpoint is not None:
            return endpoint.site
        nat = self._nats.get(destination[0])
        return nat.site if nat is not None else None

    def _arrive(self, datagram: _Datagram) -> None:
        now = self.scheduler.now
        receiver, fate = self._route(datagram, now)
        if self._partitions:
            far_end = datagram.destination if receiver is None else receiver.address
            if self._partitioned(datagram.sender.address, far_end, now):
                fate = Fate.PARTITIONED
        if fate is not None or receiver is None:
            self._finish(datagram, fate or Fate.UNROUTABLE, now)
            return
        self._finish(datagram, Fate.DELIVERED, now)
        receiver.host.receive_datagram(datagram.data, datagram.wire_source, now)
        self._service(receiver)

    def _route(self, datagram: _Datagram, now: float) -> tuple[_Endpoint | None, Fate | None]:
        """The receiving host, or why there is none (no side effect: NATs only look)."""
        destination = datagram.destination
        if datagram.private_network is not None:
            return self._private[datagram.private_network.public_ip].get(destination), None
        receiver = self._public.get(destination)
        if receiver is not None:
            return receiver, None
        nat = self._nats.get(destination[0])
        if nat is None:
            return None, Fate.UNROUTABLE
        if nat is datagram.sender.nat and not nat.behaviour.hairpinning:
            return None, Fate.NO_HAIRPIN
        verdict, private = nat.inbound(destination[1], datagram.wire_source, now)
        if private is None:
            return None, _NAT_FATES[verdict]
        return self._private[nat.public_ip].get(private), None

    def _partitioned(self, source: Address, destination: Address, now: float) -> bool:
        live = [p for p in self._partitions if not p.lifted and (p.end_s is None or now < p.end_s)]
        self._partitions = live
        return any(partition.cuts(source, destination, now) for partition in live)

    def _finish(self, datagram: _Datagram, fate: Fate, now: float) -> None:
        counters = self.counters
        counters.in_flight -= 1
        setattr(counters, fate, getattr(counters, fate) + 1)  # a Fate is its counter's name
        if self.trace is not None:
            self.trace.append(TraceEntry(now, datagram.sender.address, datagram.destination, len(datagram.data), fate))
