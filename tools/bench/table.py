"""The terminal table of a bench result, and the number formatting the other reports share."""
from __future__ import annotations

import math
from typing import Any, Sequence

from segrt.calibration.evidence import DOMINANT_SHARE
from segrt.tools.bench.results import STAGES, BenchResult, BenchRow


def ms_text(v: float | None) -> str:
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


def percent_text(v: Any) -> str:
    """A fraction as a bare percentage (the unit is in the column header), as ``segrt quantize``
    prints it: 3 decimals from 99 % up (where gates sit), else 2."""
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return "-"
    return f"{100 * v:.3f}" if v >= 0.99 else f"{100 * v:.2f}"


def agreement_meaningless(acc: Any) -> bool:
    """True when the accuracy report says FP32 predicts one class almost everywhere."""
    ev = acc.get("evidence") if isinstance(acc, dict) else None
    return isinstance(ev, dict) and ev.get("agreement_meaningful") is False


def render_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _input(row: BenchRow) -> str:
    return "x".join(map(str, row.input_shape)) if row.input_shape else "-"


def stage_stats(row: BenchRow, name: str):
    st = row.stages.get(name)
    return st.stats if st is not None else None


def _count(st) -> str:
    """Samples taken; a trailing ``t`` marks a loop cut by --max-time before its spread settled."""
    return f"{st.stats.count}{'t' if st.stop == 'time' else ''}"


def format_table(result: BenchResult) -> str:
    """The terminal report: latency and accuracy per cell, then the per-stage breakdown."""
    lat_rows, stage_rows, notes = [], [], []
    meaningless = False
    for r in result.rows:
        acc = dict(r.accuracy or {})
        head = [r.name, r.precision, r.backend]
        star = "*" if agreement_meaningless(acc) else ""
        meaningless |= bool(star)
        accuracy = [percent_text(acc.get("agreement")) + star, percent_text(acc.get("miou_vs_labels"))]
        if not r.ok:
            lat_rows.append(head + ["-"] * 11 + accuracy + [f"{r.status}: {r.reason}"])
            continue
        inf = r.stages["infer"]
        s = inf.stats
        lat_rows.append(head + [
            _input(r), ms_text(s.min), ms_text(s.mean), ms_text(s.p50), ms_text(s.p90), ms_text(s.p99), ms_text(s.max),
            _pct(inf.spread), _count(inf), f"{r.throughput_fps:.1f}" if r.throughput_fps else "-",
            f"{r.e2e.fps:.1f}" if r.e2e else "-"] + accuracy + ["ok"])
        parts = [stage_stats(r, st) for st in STAGES]
        total = sum(p.p50 for p in (parts[0], stage_stats(r, "infer"), parts[-1]) if p is not None)
        stage_rows.append(head + [ms_text(p.p50) if p is not None else "-" for p in parts]
                          + [ms_text(total), ms_text(1e3 / r.e2e.fps) if r.e2e and r.e2e.fps else "-",
                             f"{r.e2e.fps:.1f}" if r.e2e else "-"])
        if r.note:
            notes.append(f"  {r.name} {r.precision} {r.backend}: {r.note}")
    out = ["Inference latency (ms per backend call, synchronised; batch as exported)"]
    out += render_columns(["bundle", "prec", "backend", "input", "min", "mean", "p50", "p90", "p99", "max",
                           "spread", "n", "infer/s", "e2e fps", "agree %", "mIoU %", "status"],
                   lat_rows, right=set(range(4, 16)))
    if stage_rows:
        fh, fw = result.settings.get("frame_size", (1080, 1920))
        out += ["", f"Per-stage p50 (ms) for one {fw}x{fh} camera frame; e2e = the threaded pipeline, steady state"]
        out += render_columns(["bundle", "prec", "backend", "pre", "h2d", "compute", "d2h", "post",
                        "pre+infer+post", "e2e ms/frame", "e2e fps"], stage_rows, right=set(range(3, 11)))
    if notes:
        out += ["", "notes:"] + notes
    out += ["",
            "spread = robust CV (IQR / 1.349 median); n = timed calls, t = cut by --max-time before the spread "
            "settled;",
            "h2d/d2h '-' = not reported (ONNX Runtime on CPU moves no data); agree % = pixel agreement with FP32, "
            "mIoU % = vs labels (bundle manifest)"]
    if meaningless:
        out.append(f"* FP32 predicts one class on >= {100 * DOMINANT_SHARE:g}% of the evaluated pixels: agreement "
                   "is meaningless there")
    failed = sum(r.status == "failed" for r in result.rows)
    if failed:
        out.append(f"{failed} of {len(result.rows)} cells FAILED (reasons in the status column)")
    return "\n".join(out)
