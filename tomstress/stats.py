"""Summary statistics for probe results: pure functions over exact samples, no I/O, no clock.

Definitions (the names used in the output, see `DEFINITIONS`):

- Quantiles use the nearest-rank method: pq of n sorted samples is the value at 1-based rank
  ceil(q * n), at least 1. No interpolation, so every reported quantile is a value that was observed.
- A quantile pq needs n >= ceil(1 / (1 - q)) samples to say anything about the tail (p90 needs 10,
  p95 needs 20, p99 needs 100). With fewer it keeps its number but its name is listed in
  `unreliable_quantiles`; with n = 0 or 1 all of p90, p95 and p99 are listed.
- `stddev` is the sample standard deviation (divisor n - 1); None when n < 2.
- `jitter` is RFC 3550-style smoothed jitter computed on the series in arrival order:
  J = 0, then for each consecutive pair J += (|x_i - x_(i-1)| - J) / 16. RFC 3550 applies it to
  one-way transit times; here it runs on whatever series is given (the RTTs). None when n < 2.
- IPDV is the distribution of |x_i - x_(i-1)| over consecutive pairs, reported as its nearest-rank
  p50 and p99. None when n < 2.
- Loss is lost / sent with a Wilson score interval (z from the normal distribution), which unlike
  the normal approximation stays inside [0, 1] and is usable at 0 lost and at small n.
- Availability is time-based: slot i covers [start_s + i * slot_s, start_s + (i + 1) * slot_s) and
  fails when its probe was not ok (a late reply counts as failed). An outage is a maximal run of
  consecutive failed slots; time to recover is the duration of an outage that an ok slot ended.
- Self-check: see `self_check`.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "DEFINITIONS", "SELF_CHECK_FLOOR_MS", "SELF_CHECK_RTT_SHARE",
    "SampleSummary", "nearest_rank", "min_samples_for", "summarize",
    "LossSummary", "wilson_interval", "summarize_loss",
    "Outage", "Availability", "availability",
    "SelfCheck", "self_check",
]  # fmt: skip

# Written beside the figures so a reader of a result file knows what each one means.
DEFINITIONS: dict[str, str] = {
    "quantiles": "nearest rank over exact samples: value at 1-based rank ceil(q*n)",
    "unreliable_quantiles": "pq listed when n < ceil(1/(1-q))",
    "stddev": "sample standard deviation (n-1)",
    "jitter": "RFC 3550-style smoothed jitter on the RTT series in arrival order: J += (|dRTT| - J)/16",
    "ipdv": "nearest-rank quantiles of |dRTT| between consecutive probes",
    "loss_interval": "Wilson score interval of lost/sent",
    "availability": "time-based: a slot fails when its probe was not ok; an outage is a run of failed slots",
    "network_rtt": "RTT less our send (clock start to packet out) and receive (packet in to reply opened) "
    "and the responder's hold (packet in to reply out, told by its next reply): the network's part",
}

# epoll waits in whole milliseconds, so asyncio timers fire up to 1 ms late on an idle machine:
# lateness under 2 ms says nothing about load.
SELF_CHECK_FLOOR_MS = 2.0
SELF_CHECK_RTT_SHARE = 0.1

_ROUND_DIGITS = 6
_TAIL_QUANTILES: tuple[tuple[str, float], ...] = (("p90", 0.90), ("p95", 0.95), ("p99", 0.99))


def _exact(q: float) -> Fraction:
    # Binary floats make 0.07 * 100 == 7.000000000000001 (rank 8 instead of 7) and
    # 1 / (1 - 0.9) == 10.000000000000002 (11 samples instead of 10). Reading q as the decimal it
    # was written as keeps ranks and sample thresholds exact for any n.
    return Fraction(str(q))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, _ROUND_DIGITS)


def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of `sorted_values` (ascending, not checked) by nearest rank: rank ceil(q*n), >= 1."""
    if not sorted_values:
        raise ValueError("nearest_rank needs at least one value")
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {q!r}")
    rank = max(1, math.ceil(_exact(q) * len(sorted_values)))
    return float(sorted_values[rank - 1])


def min_samples_for(q: float) -> int:
    """The smallest n for which the nearest-rank q-quantile is not simply the maximum: ceil(1/(1-q))."""
    if not 0 < q < 1:
        raise ValueError(f"quantile must be in (0, 1), got {q!r}")
    return math.ceil(1 / (1 - _exact(q)))


@dataclass(frozen=True, slots=True)
class SampleSummary:
    n: int
    min: float | None
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None
    stddev: float | None
    jitter: float | None
    ipdv_p50: float | None
    ipdv_p99: float | None
    unreliable_quantiles: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        numbers = ("min", "mean", "p50", "p90", "p95", "p99", "max", "stddev", "jitter", "ipdv_p50", "ipdv_p99")
        out: dict[str, Any] = {"n": self.n}
        out.update({name: _rounded(getattr(self, name)) for name in numbers})
        out["unreliable_quantiles"] = list(self.unreliable_quantiles)
        return out


def summarize(samples: Sequence[float]) -> SampleSummary:
    """Summarise a series given in the order observed (jitter and IPDV depend on that order).

    Raises ValueError on a NaN or infinite sample: it can only come from a bug upstream, and it
    would silently corrupt the sort and every figure derived from it.
    """
    values = [float(x) for x in samples]
    if not all(math.isfinite(x) for x in values):
        raise ValueError("samples must be finite numbers")
    n = len(values)
    unreliable = tuple(name for name, q in _TAIL_QUANTILES if n < min_samples_for(q))
    if n == 0:
        return SampleSummary(0, None, None, None, None, None, None, None, None, None, None, None, unreliable)
    ordered = sorted(values)
    stddev = jitter = ipdv_p50 = ipdv_p99 = None
    if n >= 2:
        stddev = statistics.stdev(values)
        deltas = [abs(b - a) for a, b in itertools.pairwise(values)]
        jitter = 0.0
        for delta in deltas:
            jitter += (delta - jitter) / 16
        deltas.sort()
        ipdv_p50 = nearest_rank(deltas, 0.50)
        ipdv_p99 = nearest_rank(deltas, 0.99)
    return SampleSummary(
        n=n,
        min=ordered[0],
        mean=math.fsum(values) / n,  # fsum: long runs of similar values lose no precision
        p50=nearest_rank(ordered, 0.50),
        p90=nearest_rank(ordered, 0.90),
        p95=nearest_rank(ordered, 0.95),
        p99=nearest_rank(ordered, 0.99),
        max=ordered[-1],
        stddev=stddev,
        jitter=jitter,
        ipdv_p50=ipdv_p50,
        ipdv_p99=ipdv_p99,
        unreliable_quantiles=unreliable,
    )


@dataclass(frozen=True, slots=True)
class LossSummary:
    sent: int
    lost: int
    ratio: float | None
    percent: float | None
    interval_low: float | None
    interval_high: float | None
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": self.sent, "lost": self.lost}
        for name in ("ratio", "percent", "interval_low", "interval_high"):
            out[name] = _rounded(getattr(self, name))
        out["confidence"] = self.confidence
        return out


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (low, high) of successes/trials, as ratios in [0, 1]."""
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / trials
    z2_n = z * z / trials
    denominator = 1 + z2_n
    centre = (p + z2_n / 2) / denominator
    half_width = z * math.sqrt(p * (1 - p) / trials + z2_n / (4 * trials)) / denominator
    # At 0 or all successes the bound is 0 or 1 exactly in theory; rounding would leave a 1e-18
    # that reads as "some loss is certain", so pin the ends.
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)
    high = 1.0 if successes == trials else min(1.0, centre + half_width)
    return low, high


def summarize_loss(sent: int, lost: int, confidence: float = 0.95) -> LossSummary:
    """lost/sent as a ratio and a percentage with its Wilson interval; figures are None when sent == 0."""
    if sent < 0 or not 0 <= lost <= sent:
        raise ValueError(f"need 0 <= lost <= sent, got lost={lost}, sent={sent}")
    if sent == 0:
        return LossSummary(sent, lost, None, None, None, None, confidence)
    low, high = wilson_interval(lost, sent, confidence)
    ratio = lost / sent
    return LossSummary(sent, lost, ratio, ratio * 100, low, high, confidence)


@dataclass(frozen=True, slots=True)
class Outage:
    start_s: float
    duration_s: float
    recovered: bool

    def as_dict(self) -> dict[str, Any]:
        return {"start_s": _rounded(self.start_s), "duration_s": _rounded(self.duration_s), "recovered": self.recovered}


@dataclass(frozen=True, slots=True)
class Availability:
    slots: int
    failed_slots: int
    slot_s: float
    downtime_s: float
    availability_percent: float | None
    outages: tuple[Outage, ...]
    longest_outage_s: float
    mean_time_to_recover_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "slots": self.slots,
            "failed_slots": self.failed_slots,
            "slot_s": self.slot_s,
            "downtime_s": _rounded(self.downtime_s),
            "availability_percent": _rounded(self.availability_percent),
            "outage_count": len(self.outages),
            "outages": [outage.as_dict() for outage in self.outages],
            "longest_outage_s": _rounded(self.longest_outage_s),
            "mean_time_to_recover_s": _rounded(self.mean_time_to_recover_s),
        }


def availability(slot_ok: Sequence[bool], slot_s: float, start_s: float = 0.0) -> Availability:
    """Time-based availability of slots of `slot_s` seconds, slot i starting at start_s + i*slot_s."""
    if not (math.isfinite(slot_s) and slot_s > 0):
        raise ValueError(f"slot_s must be a positive number of seconds, got {slot_s!r}")
    outages: list[Outage] = []
    run_start: int | None = None
    # A sentinel ok slot closes an outage still running at the end; it is not counted as recovered.
    for i, ok in enumerate([*slot_ok, True]):
        if not ok and run_start is None:
            run_start = i
        elif ok and run_start is not None:
            outages.append(
                Outage(
                    # Multiply rather than accumulate, so slot 36 000 starts where it should.
                    start_s=start_s + run_start * slot_s,
                    duration_s=(i - run_start) * slot_s,
                    recovered=i < len(slot_ok),
                )
            )
            run_start = None
    slots = len(slot_ok)
    failed = sum(1 for ok in slot_ok if not ok)
    recovered = [outage.duration_s for outage in outages if outage.recovered]
    return Availability(
        slots=slots,
        failed_slots=failed,
        slot_s=slot_s,
        downtime_s=failed * slot_s,
        availability_percent=None if slots == 0 else 100 * (slots - failed) / slots,
        outages=tuple(outages),
        longest_outage_s=max((outage.duration_s for outage in outages), default=0.0),
        mean_time_to_recover_s=math.fsum(recovered) / len(recovered) if recovered else None,
    )


@dataclass(frozen=True, slots=True)
class SelfCheck:
    timer_error: SampleSummary
    loop_lag: SampleSummary
    distorting: bool
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "timer_error": self.timer_error.as_dict(),
            "loop_lag": self.loop_lag.as_dict(),
            "distorting": self.distorting,
            "reason": self.reason,
        }


def self_check(timer_errors: Sequence[float], loop_lags: Sequence[float], rtt_p50: float | None) -> SelfCheck:
    """Whether the measuring device's own delays are large enough to distort the RTT quantiles.

    All three arguments are in milliseconds. Rule: the run is distorting when the p99 of the loop
    lag or of the timer error exceeds both 1 ms and 10 % of the RTT p50 (only 1 ms when there is
    no RTT p50). Loop lag delays the moment a reply is opened, so it inflates RTTs directly; timer
    error delays sends, which breaks the open-loop schedule. The 1 ms floor keeps sub-millisecond
    LAN runs from being flagged for scheduler noise that no network measurement can avoid; the
    10 % share lets a slow path tolerate proportionally more. An empty series flags nothing.
    """
    limit = SELF_CHECK_FLOOR_MS
    if rtt_p50 is not None:
        limit = max(limit, SELF_CHECK_RTT_SHARE * rtt_p50)
    timer_error = summarize(timer_errors)
    loop_lag = summarize(loop_lags)
    problems = [
        f"{label} p99 was {summary.p99:g} ms (n={summary.n})"
        for label, summary in (("event loop lag", loop_lag), ("timer error", timer_error))
        if summary.p99 is not None and summary.p99 > limit
    ]
    if not problems:
        return SelfCheck(timer_error, loop_lag, False, None)
    basis = "the floor" if limit == SELF_CHECK_FLOOR_MS else f"10 % of the RTT p50 of {rtt_p50:g} ms"
    reason = (
        f"The measuring device was too slow to trust the RTT quantiles: {' and '.join(problems)}, "
        f"above the limit of {limit:g} ms ({basis})."
    )
    return SelfCheck(timer_error, loop_lag, True, reason)
