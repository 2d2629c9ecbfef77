"""``segrt eval`` reports of an instance bundle: the terminal table, JSON and CSV of COCO AP."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from segrt.calibration.instance_eval import InstanceEvalReport
from segrt.calibration.instance_metrics import AP_KEYS
from segrt.runtime.fsutil import write_bytes_atomic, write_json_atomic


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100.0 * v:.2f}"


def format_instance_table(report: InstanceEvalReport) -> str:
    """One line per precision/backend and task (box, mask): AP, AP50, AP75, APs, APm, APl in percent."""
    lines = [f"{report.data}: {report.frames} images, COCO AP by pycocotools ('-' = no ground truth in that range)"]
    head = (f"{'precision':<10} {'backend':<12} {'task':<5}" + "".join(f" {k:>6}" for k in AP_KEYS)
            + f" {'dets':>6} {'infer ms':>9}")
    lines += [head, "-" * len(head)]
    for r in report.runs:
        for task, table in (("box", r.scores.box), ("mask", r.scores.mask)):
            lines.append(f"{r.precision:<10} {r.backend:<12} {task:<5}"
                         + "".join(f" {_pct(table[k]):>6}" for k in AP_KEYS)
                         + f" {r.scores.detections:>6} {r.infer_ms:>9.1f}")
    unmapped = sorted({name for r in report.runs for name in r.scores.unmapped_labels})
    if unmapped:
        lines.append(f"classes with no COCO category of that name (never scored): {', '.join(unmapped)}")
    return "\n".join(lines)


def write_instance_json(report: InstanceEvalReport, path: str | os.PathLike[str]) -> Path:
    write_json_atomic(path, report.to_dict())
    return Path(path)


def write_instance_csv(report: InstanceEvalReport, path: str | os.PathLike[str]) -> Path:
    """One row per (precision, backend, task) with the six AP figures (fractions; empty = no ground truth)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["precision", "backend", "task", *AP_KEYS, "detections", "images", "infer_ms", "data"])
    for r in report.runs:
        for task, table in (("box", r.scores.box), ("mask", r.scores.mask)):
            w.writerow([r.precision, r.backend, task,
                        *("" if table[k] is None else f"{table[k]:.6f}" for k in AP_KEYS),
                        r.scores.detections, r.scores.images, f"{r.infer_ms:.3f}", report.data])
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))
    return Path(path)
