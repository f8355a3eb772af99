"""Measuring the measuring device: how late the event loop runs (spec/measurement.md §2).

A small ARM board under load runs its callbacks late; a reply opened late inflates the RTT. The
sampler asks the loop to wake it every SAMPLE_INTERVAL_S and records by how much it overslept.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["LoopLagSampler", "SAMPLE_INTERVAL_S", "MAX_SAMPLES"]

SAMPLE_INTERVAL_S = 0.05
MAX_SAMPLES = 200_000  # 2.7 hours at 20/s; beyond it the oldest half is thinned out


class LoopLagSampler:
    def __init__(self) -> None:
        self.samples_ms: list[float] = []
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0

    def start(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._expected = time.monotonic() + SAMPLE_INTERVAL_S
        self._handle = loop.call_later(SAMPLE_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        self.samples_ms.append(max(0.0, (time.monotonic() - self._expected) * 1000))
        if len(self.samples_ms) > MAX_SAMPLES:
            # Keep memory bounded on endless runs: halve the resolution of the older half.
            half = len(self.samples_ms) // 2
            self.samples_ms[:half] = self.samples_ms[:half:2]
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
