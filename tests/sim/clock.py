"""A virtual clock and its scheduler: a heap of (time, sequence, call).

Rules:
- Time only moves when the scheduler runs a call: `now` is the time of the call being run, and
  nothing ever runs at a time earlier than `now`. A call asked for in the past runs at `now`.
- Calls due at the same time run in the order they were scheduled (the sequence number breaks
  ties), so a run depends on nothing but what was scheduled.
- Every run is bounded twice: in virtual time by its caller, and in steps (calls run) by the
  scheduler's budgets: `max_steps` in its whole life, and `max_steps_at_one_time` in a row
  without time moving on. A simulation that stops advancing (a host asking for a timer at `now`
  forever) raises StepBudgetExhausted instead of hanging the test suite, and soon: a stalled
  clock is caught after `max_steps_at_one_time` calls, not after the whole budget.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from tests.sim.errors import StepBudgetExhausted, VirtualTimeLimitReached

__all__ = ["DEFAULT_MAX_STEPS", "DEFAULT_MAX_STEPS_AT_ONE_TIME", "ScheduledCall", "Scheduler"]

DEFAULT_MAX_STEPS = 1_000_000
DEFAULT_MAX_STEPS_AT_ONE_TIME = 100_000


class ScheduledCall:
    """A call waiting in the scheduler; `cancel()` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "when_s")

    def __init__(self, when_s: float, callback: Callable[[], None]) -> None:
        self.when_s = when_s
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<ScheduledCall at {self.when_s:.6f}s {self.callback!r}{state}>"


class Scheduler:
    """Runs calls in virtual time order: at most `max_steps` of them in its whole life, and at
    most `max_steps_at_one_time` in a row at one virtual time."""

    def __init__(
        self,
        *,
        start_s: float = 0.0,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_steps_at_one_time: int = DEFAULT_MAX_STEPS_AT_ONE_TIME,
    ) -> None:
        if max_steps <= 0 or max_steps_at_one_time <= 0:
            raise ValueError("step budgets must be positive")
        self.max_steps_at_one_time = max_steps_at_one_time
        self._steps_at_this_time = 0
        self._now = start_s
        self._heap: list[tuple[float, int, ScheduledCall]] = []
        self._sequence = 0
        self.max_steps = max_steps
        self.steps = 0

    @property
    def now(self) -> float:
        return self._now

    def call_at(self, when_s: float, callback: Callable[[], None]) -> ScheduledCall:
        """Run `callback` at `when_s` (at `now` if that is in the past)."""
        when_s = max(when_s, self._now)
        call = ScheduledCall(when_s, callback)
        self._sequence += 1
        heapq.heappush(self._heap, (when_s, self._sequence, call))
        return call

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> ScheduledCall:
        return self.call_at(self._now + delay_s, callback)

    def next_time(self) -> float | None:
        """When the next live call is due, or None when nothing is scheduled."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pending(self) -> int:
        """Calls still scheduled (cancelled ones included until they reach the top)."""
        return len(self._heap)

    def run_until(self, until_s: float) -> None:
        """Run every call due at or before `until_s`, then leave the clock at `until_s`."""
        if until_s < self._now:
            raise ValueError(f"cannot run back in time: now is {self._now}, asked for {until_s}")
        heap = self._heap
        while heap and heap[0][0] <= until_s:
            self._step(heapq.heappop(heap)[2])
        self._now = until_s

    def run_while(self, predicate: Callable[[], bool], limit_s: float) -> None:
        """Run calls while `predicate()` holds, for at most `limit_s` virtual seconds from now.

        The predicate is checked before every call. Returns as soon as it is false (the clock
        stays at the time of the last call run); raises VirtualTimeLimitReached if it is still
        true once every call due within the limit has run (the clock is then at the limit).
        """
        if limit_s < 0:
            raise ValueError("limit_s must not be negative")
        deadline_s = self._now + limit_s
        heap = self._heap
        while predicate():
            if not heap or heap[0][0] > deadline_s:
                self._now = deadline_s
                raise VirtualTimeLimitReached(
                    f"still waiting after {limit_s} virtual s (now {deadline_s:.6f} s, {self.steps} steps run)"
                )
            self._step(heapq.heappop(heap)[2])

    def _step(self, call: ScheduledCall) -> None:
        if call.cancelled:
            return
        if self.steps >= self.max_steps:
            raise StepBudgetExhausted(
                f"step budget of {self.max_steps} calls exhausted at virtual time {self._now:.6f} s; "
                f"next call: {call!r}"
            )
        if call.when_s != self._now:
            self._now = call.when_s
            self._steps_at_this_time = 0
        elif self._steps_at_this_time >= self.max_steps_at_one_time:
            raise StepBudgetExhausted(
                f"{self._steps_at_this_time} calls in a row at virtual time {self._now:.6f} s without time moving on "
                f"(a livelock?); next call: {call!r}"
            )
        self.steps += 1
        self._steps_at_this_time += 1
        call.callback()
