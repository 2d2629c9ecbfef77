"""The PNG chart of a bench result (matplotlib is an optional extra)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from segrt.runtime.fsutil import atomic_path
from segrt.tools.bench.results import STAGES, BenchResult
from segrt.tools.bench.table import ms_text, stage_stats

STAGE_COLOURS = {"pre": "#4C72B0", "h2d": "#DD8452", "compute": "#55A868", "d2h": "#C44E52", "post": "#8172B2"}


def chart_unavailable_reason() -> str | None:
    """Why no PNG can be drawn here (matplotlib is an optional extra), or None."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        return "chart skipped: matplotlib is not installed (pip install matplotlib, or segrt[bench])"
    return None


def baseline_p50s(baseline: Mapping[str, Any] | None) -> dict[tuple[str, str, str], float]:
    """Inference p50 per (bundle label, precision, backend) of a loaded baseline bench JSON."""
    out = {}
    for row in (baseline or {}).get("rows", ()):
        st = (row.get("stages") or {}).get("infer")
        if row.get("status") == "ok" and st and st.get("p50") is not None:
            out[(row.get("label") or row["model"], row["precision"], row["backend"])] = float(st["p50"])
    return out


def write_chart(result: BenchResult, path: str | os.PathLike[str], baseline: Mapping[str, Any] | None = None) -> Path:
    """PNG: inference p50 by bundle × precision/backend (whisker to p90; log scale when the
    bundles span more than 30×; with ``baseline``, a black line across each bar at the
    baseline's p50), and per-stage stacked bars of one camera frame (pre, H2D, compute, D2H,
    post as shares of the frame, total ms and e2e FPS beside)."""
    import matplotlib
    matplotlib.use("Agg")  # no display on a Jetson over SSH or in CI
    import matplotlib.pyplot as plt

    ok = [r for r in result.rows if r.ok]
    models = list(dict.fromkeys(r.name for r in ok))
    base = baseline_p50s(baseline)
    base_drawn = False
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
            for x, m in zip(xs, [m for m in models if (m, prec, be) in lookup]):
                b = base.get((m, prec, be))
                if b is not None:
                    ax1.hlines(b, x - width * 0.5, x + width * 0.5, colors="black", linewidths=2,
                               label=None if base_drawn else "baseline p50")
                    base_drawn = True
                    p50s.append(b)
                    tops.append(b)
            for x, y, h in zip(xs, ys, hi):
                ax1.annotate(ms_text(y), (x, y + h), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                             textcoords="offset points")
        if p50s and max(p50s) / max(min(p50s), 1e-6) > 30:
            ax1.set_yscale("log")
            ax1.set_ylim(top=max(tops) * 3)  # room for the value labels
        elif tops:
            ax1.set_ylim(top=max(tops) * 1.2)
        ax1.set_xticks(range(len(models)))
        ax1.set_xticklabels(models, fontsize=8)
        ax1.set_ylabel("inference p50 (ms), whisker to p90")
        ax1.legend(fontsize=7, ncols=min(len(series) + int(base_drawn), 4))

        # per-stage shares of one frame, 100 % stacked; the total ms is written beside each bar
        labels = [f"{r.name} {r.precision} {r.backend}" for r in ok]
        left = [0.0] * len(ok)
        totals = [sum(stage_stats(r, s).p50 for s in STAGES if stage_stats(r, s) is not None) for r in ok]
        for s in STAGES:
            vals = [(stage_stats(r, s).p50 if stage_stats(r, s) is not None else 0.0) for r in ok]
            shares = [100 * v / t if t > 0 else 0.0 for v, t in zip(vals, totals)]
            ax2.barh(range(len(ok)), shares, left=left, color=STAGE_COLOURS[s], label=s)
            left = [a + b for a, b in zip(left, shares)]
        for i, (r, t) in enumerate(zip(ok, totals)):
            e2e = f", e2e {r.e2e.fps:.1f} fps" if r.e2e else ""
            ax2.annotate(f"{ms_text(t)} ms{e2e}", (100, i), xytext=(4, 0), textcoords="offset points",
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
