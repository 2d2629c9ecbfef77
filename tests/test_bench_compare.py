"""The regression rule: a p50 slower than the baseline by more than max(3 x combined spread, 5 %)."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from segrt.errors import ConfigError
from segrt.runtime.stats import LatencyStats
from segrt.tools.bench import BenchResult, BenchRow, E2EResult, StageResult
from segrt.tools.bench import (MAX_TOLERANCE, MIN_TOLERANCE, compare, environment_differences, format_comparison,
                               load_json, tolerance, verdict, write_json)


def _stage(p50: float, spread: float) -> StageResult:
    return StageResult(LatencyStats(50, p50 * 0.9, p50, p50 * spread, p50, p50 * 1.1, p50 * 1.2, p50 * 1.3),
                       spread, "stable")


def _row(model="m", p50=10.0, spread=0.01, precision="fp32", shape=(1, 64, 64, 3), fps=None,
         status="ok") -> BenchRow:
    stages = {"infer": _stage(p50, spread), "pre": _stage(1.0, 0.01), "post": _stage(2.0, 0.01)} \
        if status == "ok" else {}
    e2e = None
    if fps is not None:
        ms = 1e3 / fps
        e2e = E2EResult("synthetic://", 30, fps, 30 / fps,
                        {"e2e": LatencyStats(30, ms, ms, ms * 0.02, ms, ms, ms, ms)})
    return BenchRow(model=model, bundle="/b", precision=precision, backend="onnxruntime", status=status,
                    input_shape=shape if status == "ok" else None, stages=stages, e2e=e2e,
                    throughput_fps=1e3 / p50)


def _result(*rows: BenchRow, env=None) -> BenchResult:
    return BenchResult(rows=tuple(rows), environment=env or {"cpu": {"model": "X"}}, settings={})


def _infer(comps):
    return {(c.model, c.precision): c for c in comps if c.metric == "infer"}


def test_tolerance_is_three_combined_spreads_with_a_five_percent_floor():
    assert tolerance(0.0, 0.0) == MIN_TOLERANCE == 0.05
    assert tolerance(0.01, 0.01) == 0.05  # 3 * 0.0141 = 4.2 % -> floor
    assert tolerance(0.03, 0.04) == pytest.approx(3 * 0.05)
    assert tolerance(0.1, 0.0) == pytest.approx(0.3)


def test_a_spread_too_wide_to_ever_fire_is_capped_and_said():
    # spread 0.265 each: 3 x 0.375 = ±112 %, so only a 2.1x slowdown would have counted
    assert tolerance(0.265, 0.265) == pytest.approx(1.124, abs=1e-3)
    base = _result(_row("a", 10.0, 0.265), _row("b", 10.0, 0.265))
    cur = _result(_row("a", 13.0, 0.265), _row("b", 11.0, 0.265))
    comps = compare(cur, base.to_dict())
    got = _infer(comps)
    assert got[("a", "fp32")].tolerance == MAX_TOLERANCE == 0.25 and got[("a", "fp32")].capped
    assert got[("a", "fp32")].noise_tolerance == pytest.approx(1.124, abs=1e-3)
    assert got[("a", "fp32")].verdict == "regression"  # +30 % fires under the cap
    assert got[("b", "fp32")].verdict == "within noise"
    text = format_comparison(comps)
    assert "capped at 25%" in text and "±25.0%*" in text and "REGRESSION (noisy)" in text
    assert "would allow up to ±112%" in text and "too noisy" in text
    quiet = format_comparison(compare(_result(_row("a", 10.2)), _result(_row("a", 10.0)).to_dict()))
    assert "(noisy)" not in quiet and "* capped" not in quiet


def test_two_bundles_of_one_model_are_compared_row_by_row():
    def row(label, p50):
        return dataclasses.replace(_row("m", p50), label=label)

    base = _result(row("a/m", 10.0), row("b/m", 20.0))
    cur = _result(row("a/m", 10.0), row("b/m", 30.0))
    got = _infer(compare(cur, base.to_dict()))
    assert got[("a/m", "fp32")].verdict == "within noise" and got[("b/m", "fp32")].verdict == "regression"


def test_verdict_boundaries_are_symmetric_in_ratio():
    assert verdict(1.05, 0.05) == "within noise"
    assert verdict(1.0501, 0.05) == "regression"
    assert verdict(1 / 1.05, 0.05) == "within noise"
    assert verdict(0.95, 0.05) == "improvement"  # 0.95 < 1/1.05 = 0.952


def test_quiet_runs_flag_a_six_percent_slowdown_but_not_four():
    base = _result(_row("a", 10.0, 0.01), _row("b", 10.0, 0.01), _row("c", 10.0, 0.01))
    cur = _result(_row("a", 10.4, 0.01), _row("b", 10.6, 0.01), _row("c", 9.0, 0.01))
    got = _infer(compare(cur, base.to_dict()))
    assert got[("a", "fp32")].verdict == "within noise"
    assert got[("b", "fp32")].verdict == "regression" and got[("b", "fp32")].regression
    assert got[("b", "fp32")].ratio == pytest.approx(1.06)
    assert got[("b", "fp32")].tolerance == pytest.approx(0.05)
    assert got[("c", "fp32")].verdict == "improvement"


def test_noisy_runs_widen_their_own_tolerance():
    base = _result(_row("a", 10.0, 0.05))
    cur = _result(_row("a", 11.0, 0.05))  # +10 %, but tol = 3 * sqrt(2) * 5 % = 21 %
    (c,) = _infer(compare(cur, base.to_dict())).values()
    assert c.tolerance == pytest.approx(3 * math.hypot(0.05, 0.05))
    assert c.verdict == "within noise"
    cur = _result(_row("a", 12.5, 0.05))
    (c,) = _infer(compare(cur, base.to_dict())).values()
    assert c.verdict == "regression"


def test_new_missing_incomparable_and_skipped_cells():
    base = _result(_row("gone"), _row("same", shape=(1, 64, 64, 3)), _row("was_skipped", status="skipped"))
    cur = _result(_row("fresh"), _row("same", shape=(1, 128, 128, 3)), _row("was_skipped"))
    by_model = {c.model: c for c in compare(cur, base.to_dict()) if c.metric in ("infer", "input")}
    assert by_model["fresh"].verdict == "new"
    assert by_model["gone"].verdict == "missing"
    assert by_model["same"].verdict == "incomparable"
    assert by_model["was_skipped"].verdict == "new"  # skipped in the baseline: nothing to compare with
    assert not any(c.regression for c in by_model.values())


def test_e2e_fps_drop_is_a_regression_in_time_per_frame():
    base = _result(_row("a", fps=20.0))
    cur = _result(_row("a", fps=17.0))
    (c,) = [c for c in compare(cur, base.to_dict()) if c.metric == "e2e_fps"]
    assert (c.baseline, c.current) == (20.0, 17.0)
    assert c.ratio == pytest.approx(20 / 17)
    assert c.verdict == "regression"


def test_compare_reads_a_baseline_file_and_prints_a_report(tmp_path):
    base = _result(_row("a", 10.0), env={"cpu": {"model": "X"}, "libraries": {"onnxruntime": "1.0"}})
    path = write_json(base, tmp_path / "base.json")
    cur = _result(_row("a", 20.0), env={"cpu": {"model": "X"}, "libraries": {"onnxruntime": "2.0"}})
    comps = compare(cur, path)
    text = format_comparison(comps, environment_differences(load_json(path)["environment"], cur.environment))
    assert "REGRESSION" in text and "ONNX Runtime: 1.0 -> 2.0" in text
    assert "1 regression(s) beyond noise" in text
    assert "2.000" in text  # the ratio


def test_load_json_rejects_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": []}))
    with pytest.raises(ConfigError, match="not a segrt bench result"):
        load_json(other)
    with pytest.raises(ConfigError, match="cannot read"):
        load_json(tmp_path / "absent.json")
