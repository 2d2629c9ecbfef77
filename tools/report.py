"""Benchmark reports: terminal table, JSON (with the environment), CSV, PNG chart, and baseline comparison.

The regression rule (``compare``): for a metric with median ``b`` and robust relative
spread ``s_b`` in the baseline, and ``c``, ``s_c`` now, the two medians differ beyond
the noise when the ratio ``c / b`` leaves ``[1 / (1 + tol), 1 + tol]`` with

    tol = max(NOISE_SIGMAS × sqrt(s_b² + s_c²), MIN_TOLERANCE)      (3 × combined spread, at least 5 %)

Slower beyond that is a regression, faster beyond it an improvement, anything
between is "within noise". The spread is each run's own robust CV
(``IQR / (1.349 × median)``) of the stage's samples (for pipeline FPS: of the intervals
between finished frames), so a noisy machine widens its own tolerance instead of
raising false alarms, and a quiet one catches a 5 % slowdown.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from segrt.errors import ConfigError
from segrt.runtime.fsutil import atomic_path, write_bytes_atomic, write_json_atomic
from segrt.tools.bench import ALL_STAGES, JSON_SCHEMA, STAGES, BenchResult, BenchRow

NOISE_SIGMAS = 3.0
MIN_TOLERANCE = 0.05
#: metrics compared against a baseline: stage medians in ms, and pipeline FPS
COMPARED = ("infer", "pre", "post", "e2e_fps")
STAT_FIELDS = ("count", "min", "mean", "std", "p50", "p90", "p99", "max", "spread")


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------
def _ms(v: float | None) -> str:
    """3 significant figures: 0.0123, 1.23, 12.3, 123, 1234."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}" if v >= 0.01 else f"{v:.4f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _frac(v: Any) -> str:
    return f"{float(v):.3f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _render(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _input(row: BenchRow) -> str:
    return "x".join(map(str, row.input_shape)) if row.input_shape else "-"


def _stage(row: BenchRow, name: str):
    st = row.stages.get(name)
    return st.stats if st is not None else None


def _count(st) -> str:
    """Samples taken; a trailing ``t`` marks a loop cut by --max-time before its spread settled."""
    return f"{st.stats.count}{'t' if st.stop == 'time' else ''}"


def format_table(result: BenchResult) -> str:
    """The terminal report: latency and accuracy per cell, then the per-stage breakdown."""
    lat_rows, stage_rows, notes = [], [], []
    for r in result.rows:
        acc = r.accuracy or {}
        head = [r.model, r.precision, r.backend]
        accuracy = [_frac(acc.get("agreement")), _frac(acc.get("miou_vs_labels"))]
        if not r.ok:
            lat_rows.append(head + ["-"] * 11 + accuracy + [f"{r.status}: {r.reason}"])
            continue
        inf = r.stages["infer"]
        s = inf.stats
        lat_rows.append(head + [
            _input(r), _ms(s.min), _ms(s.mean), _ms(s.p50), _ms(s.p90), _ms(s.p99), _ms(s.max),
            _pct(inf.spread), _count(inf), f"{r.throughput_fps:.1f}" if r.throughput_fps else "-",
            f"{r.e2e.fps:.1f}" if r.e2e else "-"] + accuracy + ["ok"])
        parts = [_stage(r, st) for st in STAGES]
        total = sum(p.p50 for p in (parts[0], _stage(r, "infer"), parts[-1]) if p is not None)
        stage_rows.append(head + [_ms(p.p50) if p is not None else "-" for p in parts]
                          + [_ms(total), _ms(1e3 / r.e2e.fps) if r.e2e and r.e2e.fps else "-",
                             f"{r.e2e.fps:.1f}" if r.e2e else "-"])
        if r.note:
            notes.append(f"  {r.model} {r.precision} {r.backend}: {r.note}")
    out = ["Inference latency (ms per backend call, synchronised; batch as exported)"]
    out += _render(["model", "prec", "backend", "input", "min", "mean", "p50", "p90", "p99", "max",
                    "spread", "n", "infer/s", "e2e fps", "agree", "mIoU", "status"],
                   lat_rows, right=set(range(4, 16)))
    if stage_rows:
        fh, fw = result.settings.get("frame_size", (1080, 1920))
        out += ["", f"Per-stage p50 (ms) for one {fw}x{fh} camera frame; e2e = the threaded pipeline, steady state"]
        out += _render(["model", "prec", "backend", "pre", "h2d", "compute", "d2h", "post",
                        "pre+infer+post", "e2e ms/frame", "e2e fps"], stage_rows, right=set(range(3, 11)))
    if notes:
        out += ["", "notes:"] + notes
    out += ["",
            "spread = robust CV (IQR / 1.349 median); n = timed calls, t = cut by --max-time before the spread "
            "settled;",
            "h2d/d2h '-' = not reported (ONNX Runtime on CPU moves no data); agree = pixel agreement with FP32, "
            "mIoU = vs labels (bundle manifest)"]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# JSON and CSV
# --------------------------------------------------------------------------------------------
def result_to_json(result: BenchResult) -> dict[str, Any]:
    return result.to_dict()


def write_json(result: BenchResult, path: str | os.PathLike[str]) -> Path:
    """Everything, with the environment: the file ``--compare`` reads back."""
    write_json_atomic(path, result.to_dict())
    return Path(path)


def load_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A bench JSON written by :func:`write_json`, checked for its schema tag."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read benchmark JSON {p}: {exc}",
                          hint="pass a file written by segrt bench --out") from exc
    if not isinstance(data, dict) or data.get("schema") != JSON_SCHEMA:
        raise ConfigError(f"{p} is not a segrt bench result (schema {data.get('schema') if isinstance(data, dict) else None!r}, "
                          f"expected {JSON_SCHEMA!r})", hint="pass a file written by segrt bench --out")
    return data


def csv_columns() -> list[str]:
    cols = ["model", "bundle", "precision", "backend", "status", "reason", "note", "input_shape", "output_kind"]
    for stage in ALL_STAGES:
        cols += [f"{stage}_{f}" for f in STAT_FIELDS]
    cols += ["throughput_fps", "e2e_fps", "e2e_spread", "e2e_frames", "e2e_p50_ms",
             "accuracy_agreement", "accuracy_miou_vs_fp32", "accuracy_miou_vs_labels"]
    return cols


def _csv_row(r: BenchRow) -> dict[str, Any]:
    d: dict[str, Any] = {"model": r.model, "bundle": r.bundle, "precision": r.precision, "backend": r.backend,
                         "status": r.status, "reason": r.reason, "note": r.note,
                         "input_shape": "x".join(map(str, r.input_shape)) if r.input_shape else "",
                         "output_kind": r.output_kind}
    for stage in ALL_STAGES:
        st = r.stages.get(stage)
        if st is not None:
            sd = st.to_dict()
            d.update({f"{stage}_{f}": sd[f] for f in STAT_FIELDS})
    e2e_stage = r.e2e.stages.get("e2e") if r.e2e else None
    acc = r.accuracy or {}
    d.update(throughput_fps=r.throughput_fps, e2e_fps=r.e2e.fps if r.e2e else None,
             e2e_spread=r.e2e.spread if r.e2e else None,
             e2e_frames=r.e2e.frames if r.e2e else None, e2e_p50_ms=e2e_stage.p50 if e2e_stage else None,
             accuracy_agreement=acc.get("agreement"), accuracy_miou_vs_fp32=acc.get("miou_vs_fp32"),
             accuracy_miou_vs_labels=acc.get("miou_vs_labels"))
    return d


def write_csv(result: BenchResult, path: str | os.PathLike[str]) -> Path:
    """One line per cell, every stage's statistics flattened into columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in result.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in _csv_row(r).items()})
    write_bytes_atomic(path, buf.getvalue().encode())
    return Path(path)


# --------------------------------------------------------------------------------------------
# chart
# --------------------------------------------------------------------------------------------
STAGE_COLOURS = {"pre": "#4C72B0", "h2d": "#DD8452", "compute": "#55A868", "d2h": "#C44E52", "post": "#8172B2"}


def chart_unavailable_reason() -> str | None:
    """Why no PNG can be drawn here (matplotlib is an optional extra), or None."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        return "chart skipped: matplotlib is not installed (pip install matplotlib, or segrt[bench])"
    return None


def write_chart(result: BenchResult, path: str | os.PathLike[str]) -> Path:
    """PNG: inference p50 by model × precision/backend (whisker to p90; log scale when the
    models span more than 30×), and per-stage stacked bars of one camera frame
    (pre, H2D, compute, D2H, post as shares of the frame, total ms and e2e FPS beside)."""
    import matplotlib
    matplotlib.use("Agg")  # no display on a Jetson over SSH or in CI
    import matplotlib.pyplot as plt

    ok = [r for r in result.rows if r.ok]
    models = list(dict.fromkeys(r.model for r in ok))
    series = list(dict.fromkeys((r.precision, r.backend) for r in ok))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8.0, 1.6 * len(models) + 4), 4.0 + 0.45 * max(len(ok), 4)),
                                   gridspec_kw={"height_ratios": [1, max(1.0, 0.18 * len(ok))]})
    fig.suptitle("segrt bench — " + str(result.environment.get("cpu", {}).get("model", "")), fontsize=10)
    if ok:
        width = 0.8 / max(len(series), 1)
        lookup = {r.key: r for r in ok}
        p50s: list[float] = []
        tops: list[float] = []
        for j, (prec, be) in enumerate(series):
            xs, ys, hi = [], [], []
            for i, m in enumerate(models):
                r = lookup.get((m, prec, be))
                if r is None:
                    continue
                st = r.stages["infer"].stats
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(st.p50)
                hi.append(max(st.p90 - st.p50, 0.0))
            p50s += ys
            tops += [y + h for y, h in zip(ys, hi)]
            ax1.bar(xs, ys, width * 0.92, label=f"{prec} / {be}", yerr=[[0] * len(hi), hi], capsize=2)
            for x, y, h in zip(xs, ys, hi):
                ax1.annotate(_ms(y), (x, y + h), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                             textcoords="offset points")
        if p50s and max(p50s) / max(min(p50s), 1e-6) > 30:
            ax1.set_yscale("log")
            ax1.set_ylim(top=max(tops) * 3)  # room for the value labels
        elif tops:
            ax1.set_ylim(top=max(tops) * 1.2)
        ax1.set_xticks(range(len(models)))
        ax1.set_xticklabels(models, fontsize=8)
        ax1.set_ylabel("inference p50 (ms), whisker to p90")
        ax1.legend(fontsize=7, ncols=min(len(series), 4))

        # per-stage shares of one frame, 100 % stacked; the total ms is written beside each bar
        labels = [f"{r.model} {r.precision} {r.backend}" for r in ok]
        left = [0.0] * len(ok)
        totals = [sum(_stage(r, s).p50 for s in STAGES if _stage(r, s) is not None) for r in ok]
        for s in STAGES:
            vals = [(_stage(r, s).p50 if _stage(r, s) is not None else 0.0) for r in ok]
            shares = [100 * v / t if t > 0 else 0.0 for v, t in zip(vals, totals)]
            ax2.barh(range(len(ok)), shares, left=left, color=STAGE_COLOURS[s], label=s)
            left = [a + b for a, b in zip(left, shares)]
        for i, (r, t) in enumerate(zip(ok, totals)):
            e2e = f", e2e {r.e2e.fps:.1f} fps" if r.e2e else ""
            ax2.annotate(f"{_ms(t)} ms{e2e}", (100, i), xytext=(4, 0), textcoords="offset points",
                         va="center", fontsize=7)
        ax2.set_yticks(range(len(ok)))
        ax2.set_yticklabels(labels, fontsize=7)
        ax2.invert_yaxis()
        ax2.set_xlim(0, 125)
        ax2.set_xlabel("share of one 1080p frame's time (p50 per stage, %)")
        ax2.legend(fontsize=7, ncols=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    else:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "no runnable combination (see the table for the reasons)",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
    skipped = len(result.rows) - len(ok)
    if skipped:
        fig.text(0.01, 0.005, f"{len(ok)} measured, {skipped} skipped or failed (reasons in the table)",
                 fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    suffix = Path(path).suffix or ".png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix.lstrip("."), dpi=110)
    plt.close(fig)
    return Path(path)


def write_all(result: BenchResult, out_dir: str | os.PathLike[str], stem: str = "bench") -> dict[str, Path]:
    """JSON, CSV, PNG and the text table into ``out_dir``; returns kind -> path."""
    from segrt.runtime.fsutil import ensure_writable_dir

    out = ensure_writable_dir(out_dir)
    paths = {"json": write_json(result, out / f"{stem}.json"),
             "csv": write_csv(result, out / f"{stem}.csv")}
    if chart_unavailable_reason() is None:
        paths["png"] = write_chart(result, out / f"{stem}.png")
    table = out / f"{stem}.txt"
    write_bytes_atomic(table, (format_table(result) + "\n").encode())
    paths["table"] = table
    return paths


# --------------------------------------------------------------------------------------------
# comparison against a baseline
# --------------------------------------------------------------------------------------------
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

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"


def tolerance(spread_baseline: float, spread_current: float) -> float:
    """max(3 × sqrt(s_b² + s_c²), 5 %): how far a ratio may drift before it is not noise."""
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
        return {(r["model"], r["precision"], r["backend"]): r for r in d.get("rows", ()) if r.get("status") == "ok"}

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
            tol = tolerance(mb[1], mc[1])
            shown_b, shown_c = (b["e2e"]["fps"], c["e2e"]["fps"]) if metric == "e2e_fps" else (mb[0], mc[0])
            out.append(Comparison(*key, metric, float(shown_b), float(shown_c), ratio, tol, verdict(ratio, tol)))
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
                     _ms(c.baseline), _ms(c.current), f"{c.ratio:.3f}" if c.ratio is not None else "-",
                     f"±{100 * c.tolerance:.1f}%" if c.tolerance is not None else "-",
                     c.verdict.upper() if c.regression else c.verdict])
    out = [f"Comparison with baseline (time ratio current/baseline; tolerance = max({NOISE_SIGMAS:g} x combined "
           f"spread, {100 * MIN_TOLERANCE:g}%))"]
    out += _render(["model", "prec", "backend", "metric", "baseline", "current", "ratio", "tolerance", "verdict"],
                   rows, right={4, 5, 6, 7})
    if env_diffs:
        out += ["", "environment differs from the baseline:"] + [f"  {d}" for d in env_diffs]
    n = sum(c.regression for c in comparisons)
    out += ["", f"{n} regression(s) beyond noise" if n else "no regression beyond noise"]
    return "\n".join(out)
