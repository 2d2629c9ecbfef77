"""Benchmark statistics: percentiles on known samples, the robust spread, and when a timing loop stops."""
from __future__ import annotations

import math

import numpy as np
import pytest

from segrt.errors import ConfigError
from segrt.runtime.stats import summarize
from segrt.tools.bench import (MIN_SAMPLES, BenchSettings, StageResult, parse_size, robust_cv, stop_reason,
                               time_loop)


def test_percentiles_of_1_to_100_match_linear_interpolation():
    s = summarize(list(range(1, 101)))
    assert s.count == 100 and s.min == 1 and s.max == 100
    assert s.mean == pytest.approx(50.5)
    # linear interpolation at rank q*(n-1): 0.5*99 = 49.5 -> 50.5; 0.9*99 = 89.1 -> 90.1; 0.99*99 -> 99.01
    assert s.p50 == pytest.approx(50.5)
    assert s.p90 == pytest.approx(90.1)
    assert s.p99 == pytest.approx(99.01)
    assert s.std == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std of a discrete uniform


def test_percentiles_of_a_skewed_sample():
    # nine fast calls and one 10x outlier: the median ignores it, p99 and max see it
    s = summarize([2.0] * 9 + [20.0])
    assert s.p50 == 2.0
    assert s.p90 == pytest.approx(2.0 + 0.1 * 18.0)  # rank 8.1 -> between 2 and 20
    assert s.p99 == pytest.approx(2.0 + 0.91 * 18.0)
    assert s.mean == pytest.approx(3.8)


def test_empty_and_single_samples():
    assert summarize([]).count == 0
    one = summarize([4.2])
    assert (one.min, one.p50, one.p99, one.max, one.std) == (4.2, 4.2, 4.2, 4.2, 0.0)


def test_robust_cv_values():
    assert robust_cv([9.0, 10.0, 11.0]) == pytest.approx((10.5 - 9.5) / (1.349 * 10.0))
    assert robust_cv([5.0, 5.0, 5.0, 5.0]) == 0.0
    assert robust_cv([7.0]) == 0.0
    # a normal sample: the robust CV estimates sigma/mu
    rng = np.random.default_rng(0)
    sample = rng.normal(100.0, 5.0, 20000)
    assert robust_cv(sample) == pytest.approx(0.05, rel=0.05)


def test_robust_cv_sees_an_alternating_fast_slow_series():
    # 60 % fast, 40 % slow: the median alone would look steady, the quartiles do not
    assert robust_cv([1.0, 3.0, 1.0, 3.0, 1.0] * 4) > 0.5


def test_robust_cv_ignores_a_scheduler_hiccup_that_inflates_the_plain_cv():
    sample = [10.0, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0, 10.1, 9.9, 80.0]
    assert robust_cv(sample) < 0.02
    assert summarize(sample).cv > 0.6


def test_stage_result_round_trips_through_dict():
    st = StageResult.from_samples([1.0, 2.0, 3.0], "stable")
    back = StageResult.from_dict(st.to_dict())
    assert back == st
    assert st.to_dict()["spread"] == pytest.approx((2.5 - 1.5) / (1.349 * 2.0))


def test_stop_reason_needs_min_samples_even_after_the_time_bound():
    assert stop_reason([5.0] * (MIN_SAMPLES - 1), 100.0, iters=1, max_time_s=1.0, cv_target=0.5, window=10) is None
    assert stop_reason([5.0] * MIN_SAMPLES, 100.0, iters=50, max_time_s=1.0, cv_target=0.05, window=10) == "time"


def test_stop_reason_stable_only_after_iters_and_a_quiet_window():
    quiet = [10.0] * 20
    assert stop_reason(quiet[:19], 0.1, iters=20, max_time_s=10, cv_target=0.05, window=10) is None
    assert stop_reason(quiet, 0.1, iters=20, max_time_s=10, cv_target=0.05, window=10) == "stable"
    # noisy early samples do not matter once the last window is quiet
    settling = [30.0, 5.0, 25.0, 8.0] * 5 + [10.0] * 10
    assert stop_reason(settling, 0.1, iters=20, max_time_s=10, cv_target=0.05, window=10) == "stable"
    noisy = [10.0, 14.0] * 15
    assert stop_reason(noisy, 0.1, iters=20, max_time_s=10, cv_target=0.05, window=10) is None


def test_time_loop_stops_when_stable_after_warmup_and_iters():
    calls = []

    def fn():
        calls.append(1)
        return (2.0, 0.5)

    settings = BenchSettings(iters=12, warmup=3, max_time_s=30.0)
    (a, b), stop = time_loop(fn, settings, series=2)
    assert stop == "stable"
    assert len(a) == len(b) == 12
    assert len(calls) == 3 + 12  # warm-up calls are not recorded
    assert set(b) == {0.5}


def test_time_loop_on_a_never_stable_series_stops_at_the_time_bound():
    values = iter(np.tile([1.0, 3.0], 10**6))
    settings = BenchSettings(iters=5, warmup=0, max_time_s=0.05)
    (a,), stop = time_loop(lambda: (next(values),), settings)
    assert stop == "time"
    assert len(a) > 5


def test_time_loop_bounds_slow_calls_by_time_but_keeps_min_samples():
    import time

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.03)  # every call alone exceeds the 0.02 s bound
        return (30.0,)

    settings = BenchSettings(iters=100, warmup=10, max_time_s=0.02)
    (a,), stop = time_loop(slow, settings)
    assert stop == "time" and len(a) == MIN_SAMPLES
    # one warm-up call (the bound cut the other nine) + MIN_SAMPLES timed calls
    assert len(calls) == 1 + MIN_SAMPLES


def test_parse_size_and_settings_validation():
    assert parse_size("256x512") == (256, 512)
    assert parse_size("64X96") == (64, 96)
    for bad in ("256", "x512", "0x5", "axb", "-1x4"):
        with pytest.raises(ConfigError):
            parse_size(bad)
    with pytest.raises(ConfigError):
        BenchSettings(iters=0)
    with pytest.raises(ConfigError):
        BenchSettings(max_time_s=0)
    with pytest.raises(ConfigError):
        BenchSettings(threads=0)


def test_progress_reports_on_its_stream():
    import io

    from segrt.tools.bench import Progress

    stream = io.StringIO()
    bar = Progress(True, stream=stream)
    bar.message("segrt bench: tiny fp32 onnxruntime")
    (a,), stop = time_loop(lambda: (1.0,), BenchSettings(iters=5, warmup=0), label="tiny: infer", progress=bar)
    assert stop == "stable" and len(a) == 5
    text = stream.getvalue()
    assert "segrt bench: tiny fp32 onnxruntime" in text and "tiny: infer" in text
    assert "\r" not in text  # not a terminal: plain lines, no bar redrawn in place
    silent = io.StringIO()
    time_loop(lambda: (1.0,), BenchSettings(iters=5, warmup=0), label="x", progress=Progress(False, stream=silent))
    assert silent.getvalue() == ""
