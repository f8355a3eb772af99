"""The simulated network does to datagrams exactly what its links and partitions say, accounts
for every one of them, and a seed fixes the whole run."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from tests.sim.accounting import FINAL_FATES, Fate
from tests.sim.errors import AddressInUse, StepBudgetExhausted
from tests.sim.hosts import Address
from tests.sim.links import Impairment
from tests.sim.nat import EIM_APDF
from tests.sim.network import SimNetwork
from tests.sim.recorder import Recorder, send_at

A: Address = ("198.51.100.1", 1000)
B: Address = ("198.51.100.2", 2000)
C: Address = ("198.51.100.3", 3000)


def numbered(index: int) -> bytes:
    return index.to_bytes(4, "big")


def numbers(host: Recorder) -> list[int]:
    return [int.from_bytes(data[:4], "big") for data in host.payloads]


def hosts(network: SimNetwork, *addresses: Address) -> list[Recorder]:
    recorders = [Recorder() for _ in addresses]
    for recorder, address in zip(recorders, addresses, strict=True):
        network.attach(recorder, address)
    return recorders


def stream(
    network: SimNetwork, sender: Recorder, destination: Address, count: int, interval_s: float, start_s: float = 0.0
) -> None:
    """`count` numbered datagrams, one every `interval_s` from `start_s`."""
    for index in range(count):
        send_at(network, sender, start_s + index * interval_s, numbered(index), destination)


def binomial_bounds(trials: int, probability: float, sigmas: float = 4.0) -> tuple[float, float]:
    mean = trials * probability
    spread = sigmas * math.sqrt(trials * probability * (1 - probability))
    return mean - spread, mean + spread


def test_each_datagram_takes_the_base_delay_plus_at_most_the_jitter() -> None:
    network = SimNetwork(1, default=Impairment(delay_s=0.050, jitter_s=0.020, reorder=True))
    a, b = hosts(network, A, B)
    stream(network, a, B, 2000, 0.001)
    network.run_until(5.0)
    transit_s = [arrival_s - int.from_bytes(data, "big") * 0.001 for arrival_s, data, _ in b.received]
    assert len(transit_s) == 2000
    assert min(transit_s) >= 0.050 - 1e-9
    assert max(transit_s) <= 0.070 + 1e-9
    assert max(transit_s) - min(transit_s) > 0.019  # the jitter is drawn, not ignored


def test_without_jitter_every_datagram_takes_exactly_the_delay_and_each_direction_its_own() -> None:
    network = SimNetwork(1)
    a, b = hosts(network, A, B)
    network.set_link(A[0], B[0], Impairment(delay_s=0.010), Impairment(delay_s=0.100))
    send_at(network, a, 1.0, b"there", B)
    send_at(network, b, 1.0, b"back", A)
    network.run_until(2.0)
    [(there_s, there, there_from)] = b.received
    [(back_s, back, back_from)] = a.received
    assert (there, there_from, back, back_from) == (b"there", A, b"back", B)
    assert there_s == pytest.approx(1.010)
    assert back_s == pytest.approx(1.100)


def test_the_loss_rate_over_many_datagrams_is_within_the_binomial_interval() -> None:
    trials, loss = 10_000, 0.1
    network = SimNetwork(7, default=Impairment(loss=loss))
    a, b = hosts(network, A, B)
    stream(network, a, B, trials, 0.0001)
    network.run_until(2.0)
    lost = trials - len(b.received)
    low, high = binomial_bounds(trials, loss)
    assert low <= lost <= high
    assert network.counters.lost == lost


def test_no_loss_delivers_everything_and_total_loss_nothing() -> None:
    network = SimNetwork(7)
    a, b, c = hosts(network, A, B, C)
    network.set_link(A[0], C[0], Impairment(loss=1.0))
    stream(network, a, B, 500, 0.001)
    stream(network, a, C, 500, 0.001)
    network.run_until(2.0)
    assert numbers(b) == list(range(500))
    assert c.received == []


def test_duplication_delivers_some_datagrams_twice_and_none_more() -> None:
    trials, duplicate = 4000, 0.25
    network = SimNetwork(3, default=Impairment(duplicate=duplicate, jitter_s=0.005, reorder=True))
    a, b = hosts(network, A, B)
    stream(network, a, B, trials, 0.001)
    network.run_until(10.0)
    copies = Counter(numbers(b))
    assert set(copies) == set(range(trials))
    assert max(copies.values()) == 2
    extra = len(b.received) - trials
    low, high = binomial_bounds(trials, duplicate)
    assert low <= extra <= high
    assert network.counters.duplicated == extra


def test_without_reordering_jitter_keeps_each_flow_in_order() -> None:
    network = SimNetwork(5, default=Impairment(delay_s=0.020, jitter_s=0.050, reorder=False))
    a, b = hosts(network, A, B)
    stream(network, a, B, 1000, 0.001)
    network.run_until(5.0)
    assert numbers(b) == list(range(1000))
    transit_s = [arrival_s - number * 0.001 for (arrival_s, _, _), number in zip(b.received, numbers(b), strict=True)]
    assert max(transit_s) - min(transit_s) > 0.02  # jitter still spreads the arrivals


def test_with_reordering_the_same_jitter_lets_datagrams_overtake() -> None:
    network = SimNetwork(5, default=Impairment(delay_s=0.020, jitter_s=0.050, reorder=True))
    a, b = hosts(network, A, B)
    stream(network, a, B, 1000, 0.001)
    network.run_until(5.0)
    assert sorted(numbers(b)) == list(range(1000))
    assert numbers(b) != list(range(1000))


def test_a_partition_drops_what_arrives_during_its_window_both_ways_and_nothing_else() -> None:
    network = SimNetwork(2, default=Impairment(delay_s=0.050))
    a, b, c = hosts(network, A, B, C)
    network.partition([A], [B], start_s=1.0, end_s=2.0)
    stream(network, a, B, 300, 0.010)
    stream(network, b, A, 300, 0.010)
    stream(network, a, C, 300, 0.010)
    network.run_until(4.0)
    for receiver in (a, b):
        arrivals_s = [arrival_s for arrival_s, _, _ in receiver.received]
        assert not [t for t in arrivals_s if 1.0 <= t < 2.0]
        assert len(arrivals_s) == 200  # those sent at 0.95 s up to 1.94 s arrived in the window
    assert len(c.received) == 300
    assert network.counters.partitioned == 200


def test_a_partition_lifted_by_a_call_stops_dropping_from_that_moment() -> None:
    network = SimNetwork(2, default=Impairment(delay_s=0.050))
    a, b = hosts(network, A, B)
    cut = network.partition([A[0]], [B[0]])  # whole ips, every port; no end
    network.scheduler.call_at(1.5, cut.lift)
    stream(network, a, B, 300, 0.010)
    network.run_until(4.0)
    assert min(arrival_s for arrival_s, _, _ in b.received) == pytest.approx(1.5)
    assert network.counters.partitioned == 145


def test_a_black_hole_swallows_everything_to_and_from_its_side() -> None:
    network = SimNetwork(2)
    a, b, c = hosts(network, A, B, C)
    network.partition([B[0]], start_s=0.0, end_s=None)
    stream(network, a, B, 10, 0.1)
    stream(network, b, C, 10, 0.1)
    stream(network, a, C, 10, 0.1)
    network.run_until(2.0)
    assert b.received == []
    assert len(c.received) == 10 and c.sources == {A}


def test_a_partition_can_be_any_predicate_on_the_two_ends() -> None:
    network = SimNetwork(2)
    a, b = hosts(network, A, B)
    network.partition_where(lambda source, destination: source == A and destination == B)  # one way only
    stream(network, a, B, 10, 0.1)
    stream(network, b, A, 10, 0.1)
    network.run_until(2.0)
    assert b.received == [] and len(a.received) == 10


def test_every_datagram_is_accounted_for_in_the_counters_and_in_the_trace() -> None:
    network = SimNetwork(
        11, default=Impairment(delay_s=0.030, jitter_s=0.010, loss=0.1, duplicate=0.1, reorder=True), trace=True
    )
    a, b, c = hosts(network, A, B, C)
    nat = network.add_nat("203.0.113.1", EIM_APDF)
    inside = Recorder()
    network.attach(inside, ("192.168.1.2", 5000), nat=nat)
    network.partition([A], [C], start_s=0.5, end_s=1.0)
    stream(network, a, B, 300, 0.005)
    stream(network, a, C, 300, 0.005)
    stream(network, c, ("203.0.113.1", 40000), 50, 0.01)  # no mapping there
    stream(network, b, ("192.0.2.99", 1), 50, 0.01)  # nobody there
    stream(network, inside, A, 50, 0.01)
    network.run_until(1.5)  # all sent, some still in flight
    counters = network.counters
    assert counters.in_flight > 0
    finished = sum(getattr(counters, fate.value) for fate in FINAL_FATES)
    assert counters.sent + counters.duplicated == finished + counters.in_flight
    assert counters.sent == 750
    assert min(counters.lost, counters.duplicated, counters.partitioned, counters.nat_unmapped, counters.unroutable) > 0
    assert network.trace is not None
    by_fate = Counter(entry.fate for entry in network.trace)
    assert {fate.value: by_fate[fate] for fate in Fate} == {
        fate.value: getattr(counters, fate.value) for fate in Fate
    }


def run_traced(seed: int) -> list[tuple[float, Address, Address, int, str]]:
    network = SimNetwork(
        seed, default=Impairment(delay_s=0.020, jitter_s=0.030, loss=0.2, duplicate=0.1, reorder=True), trace=True
    )
    a, b, c = hosts(network, A, B, C)
    stream(network, a, B, 200, 0.002)
    stream(network, b, C, 200, 0.003)
    stream(network, c, A, 200, 0.001)
    network.run_until(2.0)
    assert network.trace is not None
    return [tuple(entry) for entry in network.trace]  # type: ignore[misc]


def test_the_same_seed_gives_the_same_trace_and_another_seed_another() -> None:
    first, again, other = run_traced(42), run_traced(42), run_traced(43)
    assert len(first) > 600
    assert first == again
    assert first != other


def test_a_host_timer_is_replaced_by_its_latest_deadline_and_a_past_one_fires_now() -> None:
    class Alarm(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.deadline: float | None = 5.0
            self.fired: list[float] = []

        def handle_timer(self, now: float) -> None:
            self.fired.append(now)
            self.deadline = None

        def next_deadline(self) -> float | None:
            return self.deadline

    network = SimNetwork(1)
    alarm = Alarm()
    network.attach(alarm, A)

    def move(deadline: float) -> None:
        alarm.deadline = deadline
        network.poll(alarm)

    network.scheduler.call_at(1.0, lambda: move(3.0))
    network.scheduler.call_at(2.0, lambda: move(1.5))  # already past
    network.run_until(10.0)
    assert alarm.fired == [2.0]


def test_a_timer_rearmed_for_the_instant_it_fired_fires_one_resolution_later() -> None:
    class Stubborn(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.fired: list[float] = []

        def handle_timer(self, now: float) -> None:
            self.fired.append(now)

        def next_deadline(self) -> float | None:
            return 1.0 if len(self.fired) < 3 else None

    network = SimNetwork(1, timer_resolution_s=0.001)
    stubborn = Stubborn()
    network.attach(stubborn, A)
    network.run_until(2.0)
    assert stubborn.fired == pytest.approx([1.0, 1.001, 1.002])


def test_a_host_that_never_lets_time_move_exhausts_the_step_budget() -> None:
    class Spinning(Recorder):
        def next_deadline(self) -> float | None:
            return 0.0

    network = SimNetwork(1, max_steps=5000, timer_resolution_s=0.0)
    network.attach(Spinning(), A)
    with pytest.raises(StepBudgetExhausted, match="5000 calls"):
        network.run_until(1.0)


def test_an_address_holds_one_host_and_a_host_one_address() -> None:
    network = SimNetwork(1)
    recorder = Recorder()
    network.attach(recorder, A)
    with pytest.raises(AddressInUse):
        network.attach(Recorder(), A)
    with pytest.raises(AddressInUse):
        network.attach(recorder, B)
    with pytest.raises(AddressInUse):
        network.add_nat(A[0])


def test_a_detached_host_receives_nothing_more() -> None:
    network = SimNetwork(1)
    a, b = hosts(network, A, B)
    stream(network, a, B, 10, 0.1)
    network.scheduler.call_at(0.55, lambda: network.detach(b))
    network.run_until(2.0)
    assert len(b.received) == 6  # the sixth, sent at 0.5 s, arrived at 0.51 s
    assert network.counters.unroutable == 4
