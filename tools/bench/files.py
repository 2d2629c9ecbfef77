"""Result files: JSON (with the environment; what ``--compare`` reads back), CSV, the text table, all at once."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

from segrt.errors import BenchError, ConfigError
from segrt.runtime.fsutil import write_bytes_atomic, write_json_atomic
from segrt.tools.bench.chart import chart_unavailable_reason, write_chart
from segrt.tools.bench.results import ALL_STAGES, JSON_SCHEMA, BenchResult, BenchRow
from segrt.tools.bench.table import format_table

STAT_FIELDS = ("count", "min", "mean", "std", "p50", "p90", "p99", "max", "spread")


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
    cols = ["label", "model", "bundle", "precision", "backend", "status", "reason", "note", "input_shape", "output_kind"]
    for stage in ALL_STAGES:
        cols += [f"{stage}_{f}" for f in STAT_FIELDS]
    cols += ["throughput_fps", "e2e_fps", "e2e_spread", "e2e_frames", "e2e_p50_ms",
             "accuracy_agreement_pct", "accuracy_miou_vs_fp32_pct", "accuracy_miou_vs_labels_pct"]
    return cols


def _percent(v: Any) -> float | None:
    return round(100.0 * float(v), 4) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _csv_row(r: BenchRow) -> dict[str, Any]:
    d: dict[str, Any] = {"label": r.name, "model": r.model, "bundle": r.bundle, "precision": r.precision,
                         "backend": r.backend,
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
             accuracy_agreement_pct=_percent(acc.get("agreement")),
             accuracy_miou_vs_fp32_pct=_percent(acc.get("miou_vs_fp32")),
             accuracy_miou_vs_labels_pct=_percent(acc.get("miou_vs_labels")))
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


def write_all(result: BenchResult, out_dir: str | os.PathLike[str], stem: str = "bench",
              baseline: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """JSON, CSV, PNG (with ``baseline``'s bars beside, when given) and the text table into
    ``out_dir``; returns kind -> path.

    When no cell was measured there is no result: only ``{stem}-failed.txt`` (the table with
    every reason) is written, and :class:`BenchError` is raised.
    """
    from segrt.runtime.fsutil import ensure_writable_dir

    out = ensure_writable_dir(out_dir)
    if not result.measured:
        failed = sum(r.status == "failed" for r in result.rows)
        path = out / f"{stem}-failed.txt"
        write_bytes_atomic(path, ("NO CELL WAS MEASURED: this is a list of failures, not a benchmark result\n\n"
                                  + format_table(result) + "\n").encode())
        raise BenchError(f"no cell was measured ({failed} failed, {len(result.rows) - failed} skipped); "
                         f"no result files written, the reasons are in {path}",
                         hint="fix the first reason in the table, or ask for a precision/backend this machine has")
    paths = {"json": write_json(result, out / f"{stem}.json"),
             "csv": write_csv(result, out / f"{stem}.csv")}
    if chart_unavailable_reason() is None:
        paths["png"] = write_chart(result, out / f"{stem}.png", baseline=baseline)
    table = out / f"{stem}.txt"
    write_bytes_atomic(table, (format_table(result) + "\n").encode())
    paths["table"] = table
    return paths
