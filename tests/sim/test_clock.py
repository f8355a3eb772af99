"""The scheduler runs calls in time order, ties in the order they were made, and never hangs:
a run is bounded in virtual time by its caller and in steps by its budget."""

from __future__ import annotations

import pytest

from tests.sim.clock import Scheduler
from tests.sim.errors import StepBudgetExhausted, VirtualTimeLimitReached


def test_calls_run_in_time_order_and_ties_in_the_order_they_were_scheduled() -> None:
    scheduler = Scheduler()
    ran: list[str] = []
    for name, when_s in [("c", 2.0), ("a", 1.0), ("b1", 1.5), ("b2", 1.5), ("b3", 1.5)]:
        scheduler.call_at(when_s, lambda name=name: ran.append(name))  # type: ignore[misc]
    scheduler.run_until(5.0)
    assert ran == ["a", "b1", "b2", "b3", "c"]
    assert scheduler.now == 5.0


def test_run_until_stops_at_its_time_and_leaves_later_calls_waiting() -> None:
    scheduler = Scheduler()
    ran: list[float] = []
    for when_s in (0.5, 1.0, 1.000001):
        scheduler.call_at(when_s, lambda: ran.append(scheduler.now))
    scheduler.run_until(1.0)
    assert ran == [0.5, 1.0]
    assert scheduler.next_time() == 1.000001
    with pytest.raises(ValueError, match="cannot run back in time"):
        scheduler.run_until(0.9)


def test_a_call_asked_for_in_the_past_runs_now_and_a_cancelled_one_never() -> None:
    scheduler = Scheduler(start_s=10.0)
    ran: list[float] = []
    scheduler.call_at(3.0, lambda: ran.append(scheduler.now))
    scheduler.call_at(11.0, lambda: ran.append(-1.0)).cancel()
    scheduler.run_until(12.0)
    assert ran == [10.0]


def test_run_while_returns_as_soon_as_the_predicate_turns_false() -> None:
    scheduler = Scheduler()
    count = [0]

    def tick() -> None:
        count[0] += 1
        scheduler.call_later(0.1, tick)

    scheduler.call_at(0.0, tick)
    scheduler.run_while(lambda: count[0] < 5, limit_s=10.0)
    assert count[0] == 5
    assert scheduler.now == pytest.approx(0.4)


def test_run_while_raises_at_its_virtual_time_limit() -> None:
    scheduler = Scheduler()
    scheduler.call_at(100.0, lambda: None)
    with pytest.raises(VirtualTimeLimitReached, match=r"after 2\.0 virtual s"):
        scheduler.run_while(lambda: True, limit_s=2.0)
    assert scheduler.now == 2.0


def test_a_livelock_exhausts_the_step_budget_with_a_clear_error_instead_of_hanging() -> None:
    scheduler = Scheduler(max_steps=1000)

    def again() -> None:
        scheduler.call_at(scheduler.now, again)  # never lets time move

    scheduler.call_at(1.0, again)
    with pytest.raises(StepBudgetExhausted, match=r"1000 calls exhausted at virtual time 1\.000000"):
        scheduler.run_until(2.0)
    assert scheduler.steps == 1000


def test_a_clock_that_stops_moving_is_caught_long_before_the_whole_budget_is_spent() -> None:
    scheduler = Scheduler(max_steps=1_000_000, max_steps_at_one_time=500)
    ran: list[float] = []

    def again() -> None:
        ran.append(scheduler.now)
        scheduler.call_at(scheduler.now, again)

    for when_s in (0.5, 0.5, 0.5):  # a few calls at one time are fine
        scheduler.call_at(when_s, lambda: ran.append(scheduler.now))
    scheduler.call_at(1.0, again)
    with pytest.raises(StepBudgetExhausted, match=r"500 calls in a row at virtual time 1\.000000"):
        scheduler.run_until(2.0)
    assert len(ran) == 3 + 500
