"""``segrt eval`` reports: the terminal table, JSON, CSV and PNG charts of an :class:`EvalReport`.

Charts (matplotlib, an optional extra): one row-normalised confusion matrix per precision
and backend, and per-class IoU bars with one series per precision.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from segrt.calibration.dataset_eval import EvalReport
from segrt.runtime.fsutil import atomic_path, write_bytes_atomic, write_json_atomic


def _pct(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{100.0 * v:.2f}"


def format_table(report: EvalReport) -> str:
    """A summary line per precision/backend, then per-class IoU and Acc (percent; '-' = absent)."""
    runs = report.runs
    lines = [f"{report.data}: {report.frames} frames, {len(report.classes)} classes (ignore_index 255)"]
    head = f"{'precision':<10} {'backend':<12} {'aAcc':>7} {'mIoU':>7} {'mAcc':>7} {'infer ms':>9}"
    lines += [head, "-" * len(head)]
    for r in runs:
        res = r.result
        lines.append(f"{r.precision:<10} {r.backend:<12} {_pct(res.aacc):>7} {_pct(res.miou):>7} "
                     f"{_pct(res.macc):>7} {r.infer_ms:>9.1f}")
    width = max(8, max(len(c) for c in report.classes))
    cols = "".join(f" {r.precision + ' IoU':>10} {r.precision + ' Acc':>10}" for r in runs)
    lines += ["", f"{'class':<{width}}{cols}", "-" * (width + 22 * len(runs))]
    for i, name in enumerate(report.classes):
        vals = "".join(f" {_pct(r.result.iou[i]):>10} {_pct(r.result.acc[i]):>10}" for r in runs)
        lines.append(f"{name:<{width}}{vals}")
    return "\n".join(lines)


def write_json(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    d = report.to_dict()
    for run, rd in zip(report.runs, d["runs"]):
        rd["confusion"] = run.confusion.tolist()
    write_json_atomic(path, d)
    return Path(path)


def write_csv(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """One row per (precision, backend, class), plus an ``(all)`` row with aAcc/mIoU/mAcc."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["precision", "backend", "class", "IoU", "Acc", "aAcc", "mIoU", "mAcc", "label_pixels",
                "pred_pixels", "frames", "data"])

    def num(v: float) -> str:
        return "" if math.isnan(v) else f"{v:.6f}"
    for r in report.runs:
        res = r.result
        w.writerow([r.precision, r.backend, "(all)", "", "", num(res.aacc), num(res.miou), num(res.macc),
                    res.pixels, "", res.frames, report.data])
        for i, c in enumerate(report.classes):
            w.writerow([r.precision, r.backend, c, num(res.iou[i]), num(res.acc[i]), "", "", "",
                        res.label_pixels[i], res.pred_pixels[i], res.frames, report.data])
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))
    return Path(path)


def row_normalised(confusion: np.ndarray) -> np.ndarray:
    """Each label row divided by its pixel count (rows without pixels stay 0)."""
    rows = confusion.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(confusion, rows, out=np.zeros(confusion.shape, np.float64), where=rows > 0)


def write_charts(report: EvalReport, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``confusion_<precision>_<backend>.png`` per run and ``iou_per_class.png``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    n = len(report.classes)
    written = []
    size = min(4.0 + 0.32 * n, 40.0)
    ticks = n <= 60
    for r in report.runs:
        fig, ax = plt.subplots(figsize=(size, size))
        im = ax.imshow(row_normalised(r.confusion), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_title(f"{report.data}: {r.precision} / {r.backend} (row-normalised, mIoU {_pct(r.result.miou)})",
                     fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("label")
        if ticks:
            ax.set_xticks(range(n), report.classes, rotation=90, fontsize=7)
            ax.set_yticks(range(n), report.classes, fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        written.append(_save(fig, out / f"confusion_{r.precision}_{r.backend}.png"))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.35 * n * max(1, len(report.runs)) + 2), 5.0))
    width = 0.8 / max(len(report.runs), 1)
    for j, r in enumerate(report.runs):
        xs = np.arange(n) - 0.4 + width * (j + 0.5)
        ys = [0.0 if math.isnan(v) else 100.0 * v for v in r.result.iou]
        ax.bar(xs, ys, width * 0.92, label=f"{r.precision} / {r.backend} (mIoU {_pct(r.result.miou)})")
    ax.set_ylabel("IoU %")
    ax.set_ylim(0, 100)
    ax.set_title(f"per-class IoU on {report.data} ({report.frames} frames; absent classes left blank)", fontsize=9)
    if ticks:
        ax.set_xticks(range(n), report.classes, rotation=90, fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out / "iou_per_class.png"))
    plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
