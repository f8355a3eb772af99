"""Every figure the statistics module reports matches a value worked out by hand for a known series."""

from __future__ import annotations

import math
import random

import pytest

from tomstress.stats import (
    Outage,
    availability,
    min_samples_for,
    nearest_rank,
    self_check,
    summarize,
    summarize_loss,
    wilson_interval,
)

# Arrival order matters for jitter and IPDV, so this series is deliberately unsorted.
TEN = [12.0, 7.0, 15.0, 9.0, 30.0, 11.0, 8.0, 20.0, 10.0, 18.0]
# sorted: 7, 8, 9, 10, 11, 12, 15, 18, 20, 30   (rank 1 .. 10)

# 1, 51, 2, 52, ..., 50, 100: a permutation of 1..100 whose consecutive differences are
# +50, -49, +50, -49, ..., +50, i.e. 50 differences of 50 (pairs 1, 3, ..., 99) and 49 of 49.
HUNDRED = [v for k in range(1, 51) for v in (k, k + 50)]


def test_ten_unsorted_values_every_figure() -> None:
    s = summarize(TEN)
    assert s.n == 10
    assert s.min == 7.0
    assert s.max == 30.0
    # sum = 12+7+15+9+30+11+8+20+10+18 = 140; 140 / 10 = 14
    assert s.mean == pytest.approx(14.0)
    assert s.p50 == 11.0  # rank ceil(0.50*10) = 5  -> 11
    assert s.p90 == 20.0  # rank ceil(0.90*10) = 9  -> 20
    assert s.p95 == 30.0  # rank ceil(0.95*10) = ceil(9.5) = 10 -> 30
    assert s.p99 == 30.0  # rank ceil(0.99*10) = ceil(9.9) = 10 -> 30
    # deviations from 14: -2 -7 1 -5 16 -3 -6 6 -4 4; squares 4 49 1 25 256 9 36 36 16 16 = 448
    # sample variance 448 / 9 = 49.777..., stddev = 7.055337
    assert s.stddev == pytest.approx(7.055337, abs=1e-6)
    # |differences| in arrival order: |7-12|=5, |15-7|=8, |9-15|=6, |30-9|=21, |11-30|=19,
    # |8-11|=3, |20-8|=12, |10-20|=10, |18-10|=8.  Jitter J += (d - J)/16 from J = 0:
    #   d=5 : 0        + (5  - 0       )/16 = 0.3125
    #   d=8 : 0.3125   + (8  - 0.3125  )/16 = 0.79296875
    #   d=6 : 0.792969 + (6  - 0.792969)/16 = 1.118408203
    #   d=21: 1.118408 + (21 - 1.118408)/16 = 2.361007690
    #   d=19: 2.361008 + (19 - 2.361008)/16 = 3.400944710
    #   d=3 : 3.400945 + (3  - 3.400945)/16 = 3.375885665
    #   d=12: 3.375886 + (12 - 3.375886)/16 = 3.914892811
    #   d=10: 3.914893 + (10 - 3.914893)/16 = 4.295212011
    #   d=8 : 4.295212 + (8  - 4.295212)/16 = 4.526761260
    assert s.jitter == pytest.approx(4.526761260, abs=1e-9)
    # IPDV sorted: 3 5 6 8 8 10 12 19 21 (9 values)
    assert s.ipdv_p50 == 8.0  # rank ceil(0.50*9) = ceil(4.5) = 5 -> 8
    assert s.ipdv_p99 == 21.0  # rank ceil(0.99*9) = ceil(8.91) = 9 -> 21
    # p90 needs 10 samples (have 10), p95 needs 20, p99 needs 100
    assert s.unreliable_quantiles == ("p95", "p99")


def test_jitter_and_ipdv_follow_arrival_order_but_quantiles_do_not() -> None:
    given, ascending = summarize(TEN), summarize(sorted(TEN))
    assert (ascending.p50, ascending.p90, ascending.mean) == (given.p50, given.p90, given.mean)
    # ascending differences: 1 1 1 1 1 3 3 2 10 -> a far smaller jitter than the arrival order's 4.53
    assert ascending.jitter is not None and ascending.jitter < 2.0
    assert ascending.ipdv_p50 == 1.0  # sorted: 1 1 1 1 1 2 3 3 10, rank 5 -> 1


def test_hundred_values_every_figure() -> None:
    s = summarize(HUNDRED)
    assert s.n == 100
    assert (s.min, s.max) == (1.0, 100.0)
    assert s.mean == pytest.approx(50.5)  # 100*101/2 / 100
    assert s.p50 == 50.0  # rank ceil(0.50*100) = 50
    assert s.p90 == 90.0  # rank 90
    assert s.p95 == 95.0  # rank 95
    assert s.p99 == 99.0  # rank 99 (not the max: with n=100 the p99 finally means something)
    # sample variance of 1..n is n(n+1)/12 = 100*101/12 = 841.667; sqrt = 29.011492
    assert s.stddev == pytest.approx(29.011492, abs=1e-6)
    # IPDV sorted: 49 x 49 (ranks 1..49), then 50 x 50 (ranks 50..99)
    assert s.ipdv_p50 == 50.0  # rank ceil(0.50*99) = ceil(49.5) = 50 -> 50 (rank 49 would be 49)
    assert s.ipdv_p99 == 50.0  # rank ceil(0.99*99) = ceil(98.01) = 99 -> 50
    # Unrolled, J_99 = sum_j d_j/16 * r^(99-j) with r = 15/16. Split d_j = 49 + [j odd]:
    #   49 * sum_{j=1..99} r^(99-j)/16 = 49 * (1 - r^99)
    #   sum_{j odd} r^(99-j)/16 = (1/16) * sum_{t=0..49} r^(2t) = (1/16)(1 - r^100)/(1 - r^2)
    #                           = (16/31)(1 - r^100)        since 1 - r^2 = 31/256
    # r^99 = 0.0016794086, r^100 = 0.0015744455
    # J = 49 * 0.9983205914 + 0.5161290323 * 0.9984255545 = 48.9177089807 + 0.5153164152 = 49.43302540
    assert s.jitter == pytest.approx(49.43302540, abs=1e-8)
    assert s.unreliable_quantiles == ()


def test_ipdv_quantiles_are_taken_on_the_differences() -> None:
    # triangular numbers 0, 1, 3, 6, ..., 210: consecutive differences are exactly 1, 2, ..., 20
    s = summarize([k * (k + 1) / 2 for k in range(21)])
    assert s.ipdv_p50 == 10.0  # rank ceil(0.50*20) = 10 -> 10
    assert s.ipdv_p99 == 20.0  # rank ceil(0.99*20) = ceil(19.8) = 20 -> 20 (the p95, rank 19, is 19)


def test_hundred_values_shuffled_keep_their_order_free_figures() -> None:
    values = list(range(1, 101))
    random.Random(20240601).shuffle(values)
    s = summarize(values)
    # Same multiset as HUNDRED, so the same order-free figures.
    assert (s.min, s.p50, s.p90, s.p95, s.p99, s.max) == (1.0, 50.0, 90.0, 95.0, 99.0, 100.0)
    assert s.mean == pytest.approx(50.5)
    assert s.stddev == pytest.approx(29.011492, abs=1e-6)


def test_empty_series_reports_nothing_but_n() -> None:
    s = summarize([])
    assert s.n == 0
    figures = (s.min, s.mean, s.p50, s.p90, s.p95, s.p99, s.max, s.stddev, s.jitter, s.ipdv_p50, s.ipdv_p99)
    assert figures == (None,) * 11
    assert s.unreliable_quantiles == ("p90", "p95", "p99")


def test_single_sample_has_no_spread() -> None:
    s = summarize([4.25])
    assert s.n == 1
    # one value: every quantile is rank ceil(q*1) = 1 -> 4.25
    assert (s.min, s.mean, s.p50, s.p90, s.p95, s.p99, s.max) == (4.25,) * 7
    # no pair, so no sample stddev (n-1 = 0), no jitter, no IPDV
    assert (s.stddev, s.jitter, s.ipdv_p50, s.ipdv_p99) == (None, None, None, None)
    assert s.unreliable_quantiles == ("p90", "p95", "p99")


def test_as_dict_is_json_ready_and_rounded() -> None:
    d = summarize(TEN).as_dict()
    assert list(d) == [
        "n", "min", "mean", "p50", "p90", "p95", "p99", "max",
        "stddev", "jitter", "ipdv_p50", "ipdv_p99", "unreliable_quantiles",
    ]  # fmt: skip
    assert d["stddev"] == 7.055337  # 7.0553368295... rounded to 6 decimals
    assert d["jitter"] == 4.526761  # 4.5267612599... rounded to 6 decimals
    assert d["unreliable_quantiles"] == ["p95", "p99"]
    assert summarize([]).as_dict()["p99"] is None


def test_summarize_refuses_non_finite_samples() -> None:
    with pytest.raises(ValueError, match="samples must be finite"):
        summarize([1.0, math.nan])
    with pytest.raises(ValueError, match="samples must be finite"):
        summarize([math.inf])


def test_nearest_rank_edges() -> None:
    one_to_hundred = [float(v) for v in range(1, 101)]
    assert nearest_rank(one_to_hundred, 1.0) == 100.0  # rank 100
    assert nearest_rank(one_to_hundred, 0.001) == 1.0  # ceil(0.1) = 1
    # 0.07 * 100 is 7.000000000000001 in binary floats; the rank is still 7, not 8
    assert nearest_rank(one_to_hundred, 0.07) == 7.0
    assert nearest_rank([3.0], 0.5) == 3.0  # rank is at least 1
    assert nearest_rank([10.0, 20.0, 30.0, 40.0], 0.3) == 20.0  # rank ceil(1.2) = 2, rounding would give 1
    for bad_q in (0.0, -0.5, 1.5, math.nan):
        with pytest.raises(ValueError, match="quantile must be in"):
            nearest_rank(one_to_hundred, bad_q)
    with pytest.raises(ValueError, match="at least one value"):
        nearest_rank([], 0.5)


def test_minimum_samples_per_quantile() -> None:
    # ceil(1/(1-q)) exactly: 1/(1-0.9) is 10.000000000000002 in floats, which must not become 11
    assert (min_samples_for(0.9), min_samples_for(0.95), min_samples_for(0.99)) == (10, 20, 100)
    assert summarize([1.0] * 9).unreliable_quantiles == ("p90", "p95", "p99")
    assert summarize([1.0] * 20).unreliable_quantiles == ("p99",)
    assert summarize([1.0] * 99).unreliable_quantiles == ("p99",)


# Wilson: centre = (p + z^2/2n) / (1 + z^2/n), half = z*sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
# 95 %: z = 1.959964, z^2 = 3.841459, for n = 100: z^2/n = 0.0384146, 1 + z^2/n = 1.0384146


def test_wilson_zero_of_hundred() -> None:
    # p = 0: centre = half = 0.0192073 / 1.0384146, so low = 0 and high = z^2/(n + z^2)
    # = 3.841459 / 103.841459 = 0.036994
    low, high = wilson_interval(0, 100)
    assert low == 0.0
    assert high == pytest.approx(0.0370, abs=5e-5)


def test_wilson_five_of_hundred() -> None:
    # p = 0.05: centre = (0.05 + 0.0192073)/1.0384146 = 0.066647
    # half = 1.959964*sqrt(0.000475 + 0.0000960)/1.0384146 = 1.959964*0.0238964/1.0384146 = 0.045103
    # low = 0.021544, high = 0.111750
    low, high = wilson_interval(5, 100)
    assert low == pytest.approx(0.0215, abs=5e-5)
    assert high == pytest.approx(0.1118, abs=5e-5)


def test_wilson_half_of_hundred() -> None:
    # p = 0.5: centre = 0.5; half = 1.959964*sqrt(0.0025 + 0.0000960)/1.0384146
    # = 1.959964*0.0509513/1.0384146 = 0.096169 -> 0.403831 .. 0.596169
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=5e-5)
    assert high == pytest.approx(0.5962, abs=5e-5)


def test_wilson_ninety_nine_percent() -> None:
    # 99 %: z = 2.575829, z^2 = 6.634897, z^2/n = 0.0663490, 1 + z^2/n = 1.0663490
    # p = 0.05: centre = (0.05 + 0.0331745)/1.0663490 = 0.078000
    # half = 2.575829*sqrt(0.000475 + 0.0001659)/1.0663490 = 2.575829*0.0253155/1.0663490 = 0.061151
    # low = 0.016849, high = 0.139151 (wider than the 95 % interval 0.0215 .. 0.1118)
    low, high = wilson_interval(5, 100, confidence=0.99)
    assert low == pytest.approx(0.0168, abs=5e-5)
    assert high == pytest.approx(0.1392, abs=5e-5)


def test_wilson_bounds_are_exact_at_none_and_all() -> None:
    # In theory low = 0 when nothing failed and high = 1 when everything did; in floats the formula
    # leaves residue for these cases (e.g. 0 of 5 at 95 % gives low ~1e-17, 6 of 6 at 90 % gives
    # high = 0.9999999999999999), which would read as "some loss is certain".
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(0, 7, confidence=0.99)[0] == 0.0
    assert wilson_interval(6, 6, confidence=0.90)[1] == 1.0


def test_wilson_refuses_bad_arguments() -> None:
    for successes, trials, refused in ((0, 0, "trials"), (-1, 10, "successes"), (11, 10, "successes")):
        with pytest.raises(ValueError, match=f"{refused} must be"):
            wilson_interval(successes, trials)
    with pytest.raises(ValueError, match="confidence must be in"):
        wilson_interval(1, 10, confidence=1.0)


def test_loss_summary() -> None:
    loss = summarize_loss(sent=100, lost=5)
    assert (loss.sent, loss.lost, loss.confidence) == (100, 5, 0.95)
    assert loss.ratio == pytest.approx(0.05)  # 5 / 100
    assert loss.percent == pytest.approx(5.0)  # 0.05 * 100
    assert loss.interval_low == pytest.approx(0.0215, abs=5e-5)  # as test_wilson_five_of_hundred
    assert loss.interval_high == pytest.approx(0.1118, abs=5e-5)
    d = loss.as_dict()
    assert d["ratio"] == 0.05 and d["interval_low"] == pytest.approx(0.021544, abs=1e-6)
    nothing_sent = summarize_loss(sent=0, lost=0)
    assert (nothing_sent.ratio, nothing_sent.percent, nothing_sent.interval_low, nothing_sent.interval_high) == (
        None, None, None, None,
    )  # fmt: skip
    with pytest.raises(ValueError, match="lost <= sent"):
        summarize_loss(sent=10, lost=11)


def test_availability_with_a_recovered_and_a_running_outage() -> None:
    # slot:     0  1  2  3  4  5  6  7  8  9  10 11
    slot_ok = [True, True, False, False, False, True, True, True, True, True, False, False]
    a = availability(slot_ok, slot_s=0.1, start_s=5.0)
    assert (a.slots, a.failed_slots, a.slot_s) == (12, 5, 0.1)
    assert a.downtime_s == pytest.approx(0.5)  # 5 failed slots x 0.1 s
    assert a.availability_percent == pytest.approx(58.333333, abs=1e-6)  # 7 ok / 12 = 58.33 %
    assert len(a.outages) == 2
    first, second = a.outages
    # slots 2-4: starts at 5.0 + 2*0.1 = 5.2 s, lasts 3*0.1 = 0.3 s, slot 5 was ok
    assert first.start_s == pytest.approx(5.2)
    assert first.duration_s == pytest.approx(0.3)
    assert first.recovered is True
    # slots 10-11: starts at 5.0 + 10*0.1 = 6.0 s, lasts 0.2 s, the run ended inside it
    assert second.start_s == pytest.approx(6.0)
    assert second.duration_s == pytest.approx(0.2)
    assert second.recovered is False
    assert a.longest_outage_s == pytest.approx(0.3)
    assert a.mean_time_to_recover_s == pytest.approx(0.3)  # only the first one recovered
    d = a.as_dict()
    assert d["outage_count"] == 2
    assert d["outages"][1] == {"start_s": 6.0, "duration_s": 0.2, "recovered": False}
    assert d["availability_percent"] == 58.333333


def test_availability_edges() -> None:
    # an outage in the very first slot starts at start_s
    a = availability([False, True], slot_s=1.0, start_s=3.0)
    assert a.outages == (Outage(start_s=3.0, duration_s=1.0, recovered=True),)
    assert a.availability_percent == pytest.approx(50.0)
    clean = availability([True] * 4, slot_s=1.0)
    assert (clean.availability_percent, clean.outages, clean.longest_outage_s) == (100.0, (), 0.0)
    assert clean.mean_time_to_recover_s is None
    empty = availability([], slot_s=1.0)
    assert (empty.slots, empty.availability_percent, empty.downtime_s) == (0, None, 0.0)
    with pytest.raises(ValueError, match="slot_s must be a positive"):
        availability([True], slot_s=0.0)


def test_self_check_flags_loop_lag_above_ten_percent_of_rtt() -> None:
    # RTT p50 20 ms -> limit max(2, 0.1*20) = 2 ms; loop lag p99 = 3 ms (rank 10 of 10) > 2
    check = self_check(timer_errors=[0.1] * 10, loop_lags=[0.5] * 9 + [3.0], rtt_p50=20.0)
    assert check.distorting is True
    assert check.reason is not None and "loop lag" in check.reason and "timer" not in check.reason
    assert check.loop_lag.p99 == 3.0
    assert check.timer_error.p99 == 0.1
    assert check.as_dict()["distorting"] is True


def test_self_check_flags_timer_error_without_rtt() -> None:
    # no RTT p50 -> limit 2 ms (the floor); timer error p99 = 2.5 ms > 2
    check = self_check(timer_errors=[2.5], loop_lags=[0.2], rtt_p50=None)
    assert check.distorting is True
    assert check.reason is not None and "timer error" in check.reason


def test_self_check_does_not_flag_small_delays() -> None:
    # p99 1.5 ms is under the 2 ms floor, which is also 10 % of a 20 ms RTT
    assert self_check([1.5] * 10, [1.5] * 10, rtt_p50=20.0).distorting is False
    # on a 5 ms LAN, 10 % is 0.5 ms; 1.9 ms stays under the 2 ms floor (timer granularity)
    quiet = self_check([1.9] * 10, [1.9] * 10, rtt_p50=5.0)
    assert quiet.distorting is False and quiet.reason is None
    # exactly at the limit is not above it; empty series flag nothing
    assert self_check([2.0], [2.0], rtt_p50=20.0).distorting is False
    # on a 100 ms path the limit is 10 ms: 9 ms of lag passes, 11 ms does not
    assert self_check([9.0], [9.0], rtt_p50=100.0).distorting is False
    assert self_check([0.5], [11.0], rtt_p50=100.0).distorting is True
    assert self_check([], [], rtt_p50=None).distorting is False
