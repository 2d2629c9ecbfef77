"""Comparison of a bench result with a baseline bench JSON: ratios, noise tolerances, regressions.

The regression rule (``compare``): for a metric with median ``b`` and robust relative
spread ``s_b`` in the baseline, and ``c``, ``s_c`` now, the two medians differ beyond
the noise when the ratio ``c / b`` leaves ``[1 / (1 + tol), 1 + tol]`` with

    tol = min(max(NOISE_SIGMAS × sqrt(s_b² + s_c²), MIN_TOLERANCE), MAX_TOLERANCE)
                                              (3 × combined spread, at least 5 %, at most 25 %)

Slower beyond that is a regression, faster beyond it an improvement, anything
between is "within noise". The spread is each run's own robust CV
(``IQR / (1.349 × median)``) of the stage's samples (for pipeline FPS: of the intervals
between finished frames), so a noisy machine widens its own tolerance instead of
raising false alarms, and a quiet one catches a 5 % slowdown. The cap keeps the check
able to fire: a spread of 37 % would allow ±112 %, and no slowdown short of 2.1× would
count. A capped cell is marked "noisy" in the output (its verdict may be noise), but a
slowdown beyond 25 % is always reported.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from segrt.tools.bench.files import load_json
from segrt.tools.bench.results import BenchResult
from segrt.tools.bench.table import ms_text, render_columns

NOISE_SIGMAS = 3.0
MIN_TOLERANCE = 0.05
MAX_TOLERANCE = 0.25
#: metrics compared against a baseline: stage medians in ms, and pipeline FPS
COMPARED = ("infer", "pre", "post", "e2e_fps")


@dataclass(frozen=True)
class Comparison:
    """One metric of one cell against the baseline.

    ``ratio`` is current / baseline in time (> 1 is slower; FPS are inverted to
    time per frame first). ``verdict``: ``regression``, ``improvement``, ``within noise``,
    ``new`` (no baseline cell), ``missing`` (ran in the baseline, not now) or
    ``incomparable`` (the input shape changed).
    """

    model: str
    precision: str
    backend: str
    metric: str
    baseline: float | None
    current: float | None
    ratio: float | None
    tolerance: float | None
    verdict: str
    noise_tolerance: float | None = None  # what the spreads alone allowed, when above the cap

    @property
    def capped(self) -> bool:
        return self.noise_tolerance is not None

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"


def tolerance(spread_baseline: float, spread_current: float) -> float:
    """max(3 × sqrt(s_b² + s_c²), 5 %): how far a ratio may drift before it is not noise
    (before the :data:`MAX_TOLERANCE` cap that :func:`compare` applies)."""
    return max(NOISE_SIGMAS * math.hypot(spread_baseline, spread_current), MIN_TOLERANCE)


def verdict(ratio: float, tol: float) -> str:
    if ratio > 1 + tol:
        return "regression"
    if ratio < 1 / (1 + tol):
        return "improvement"
    return "within noise"


def _metric(row: Mapping[str, Any], metric: str) -> tuple[float, float] | None:
    """(time-like value, relative spread) of a metric in a JSON row, or None if absent."""
    if metric == "e2e_fps":
        e2e = row.get("e2e")
        if not e2e or not e2e.get("fps"):
            return None
        # noise of a steady-state FPS: the robust CV of the intervals between finished frames
        return 1e3 / float(e2e["fps"]), float(e2e.get("spread", 0.0))
    st = (row.get("stages") or {}).get(metric)
    if not st:
        return None
    return float(st["p50"]), float(st.get("spread", 0.0))


def compare(result: BenchResult, baseline_json: str | os.PathLike[str] | Mapping[str, Any]) -> list[Comparison]:
    """Every compared metric of every cell in ``result`` and the baseline (a path or a loaded dict)."""
    base = baseline_json if isinstance(baseline_json, Mapping) else load_json(baseline_json)
    cur = result.to_dict()

    def ok_rows(d: Mapping[str, Any]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
        return {(r.get("label") or r["model"], r["precision"], r["backend"]): r
                for r in d.get("rows", ()) if r.get("status") == "ok"}

    base_rows, cur_rows = ok_rows(base), ok_rows(cur)
    out: list[Comparison] = []
    for key in list(cur_rows) + [k for k in base_rows if k not in cur_rows]:
        b, c = base_rows.get(key), cur_rows.get(key)
        if b is None or c is None:
            out.append(Comparison(*key, "infer", None, None, None, None, "new" if b is None else "missing"))
            continue
        if b.get("input_shape") != c.get("input_shape"):
            out.append(Comparison(*key, "input", None, None, None, None, "incomparable"))
            continue
        for metric in COMPARED:
            mb, mc = _metric(b, metric), _metric(c, metric)
            if mb is None or mc is None or mb[0] <= 0:
                continue
            ratio = mc[0] / mb[0]
            raw = tolerance(mb[1], mc[1])
            tol = min(raw, MAX_TOLERANCE)
            shown_b, shown_c = (b["e2e"]["fps"], c["e2e"]["fps"]) if metric == "e2e_fps" else (mb[0], mc[0])
            out.append(Comparison(*key, metric, float(shown_b), float(shown_c), ratio, tol, verdict(ratio, tol),
                                  noise_tolerance=raw if raw > MAX_TOLERANCE else None))
    return out


def environment_differences(baseline_env: Mapping[str, Any], current_env: Mapping[str, Any]) -> list[str]:
    """What changed between the two machines/setups, so a ratio is read with that in mind."""
    diffs = []
    for label, path in (("CPU", ("cpu", "model")), ("cores", ("cpu", "usable_cores")),
                        ("ONNX Runtime", ("libraries", "onnxruntime")), ("TensorRT", ("libraries", "tensorrt")),
                        ("numpy", ("libraries", "numpy")), ("OpenCV", ("libraries", "opencv")),
                        ("Jetson power mode", ("jetson", "power_mode")), ("threads", ("threads", "onnxruntime_intra_op"))):
        vals = []
        for env in (baseline_env, current_env):
            v: Any = env
            for k in path:
                v = v.get(k) if isinstance(v, Mapping) else None
            vals.append(v)
        if vals[0] != vals[1]:
            diffs.append(f"{label}: {vals[0]} -> {vals[1]}")
    return diffs


def format_comparison(comparisons: Sequence[Comparison], env_diffs: Sequence[str] = ()) -> str:
    rows = []
    for c in comparisons:
        unit = "fps" if c.metric == "e2e_fps" else "ms p50"
        rows.append([c.model, c.precision, c.backend, f"{c.metric} ({unit})" if c.ratio is not None else c.metric,
                     ms_text(c.baseline), ms_text(c.current), f"{c.ratio:.3f}" if c.ratio is not None else "-",
                     (f"±{100 * c.tolerance:.1f}%" + ("*" if c.capped else "")) if c.tolerance is not None else "-",
                     (c.verdict.upper() if c.regression else c.verdict) + (" (noisy)" if c.capped else "")])
    out = [f"Comparison with baseline (time ratio current/baseline; tolerance = max({NOISE_SIGMAS:g} x combined "
           f"spread, {100 * MIN_TOLERANCE:g}%), capped at {100 * MAX_TOLERANCE:g}%)"]
    out += render_columns(["bundle", "prec", "backend", "metric", "baseline", "current", "ratio", "tolerance",
                           "verdict"],
                   rows, right={4, 5, 6, 7})
    capped = [c for c in comparisons if c.capped]
    if capped:
        worst = max(c.noise_tolerance for c in capped)  # type: ignore[type-var]
        out += ["", f"* capped at ±{100 * MAX_TOLERANCE:g}%: the measured spread of {len(capped)} metric(s) would "
                    f"allow up to ±{100 * worst:.0f}%, too wide to ever flag a regression; those runs are too noisy "
                    "to trust (quieter machine, --max-time, --iters)"]
    if env_diffs:
        out += ["", "environment differs from the baseline:"] + [f"  {d}" for d in env_diffs]
    n = sum(c.regression for c in comparisons)
    out += ["", f"{n} regression(s) beyond noise" if n else "no regression beyond noise"]
    return "\n".join(out)
