"""One event-loop timer at the earliest deadline its owner asks for.

A timer already set for earlier stays: deadlines move later with almost every packet (QUIC's)
or message (the runtime's), and one early wake-up, which finds nothing due and asks again, costs
less than cancelling and re-arming a timer each time. The handle has one owner, who cancels it
on close: no `call_later` handle is left to no one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Wakeup"]


class Wakeup:
    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._deadline: float | None = None

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def at(self, deadline: float | None) -> None:
        """Wake at `deadline` (time.monotonic(); None: not at all), unless already set earlier."""
        current = self._deadline
        if deadline == current or (deadline is not None and current is not None and current <= deadline):
            return
        self.cancel()
        self._deadline = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(max(0.0, deadline - time.monotonic()), self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._deadline = None

    def _fire(self) -> None:
        self._handle = None
        self._deadline = None
        self._callback()
