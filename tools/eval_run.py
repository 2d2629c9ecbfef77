"""``segrt eval`` as one function: evaluate, then write the report files (the CLI only prints)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from segrt.calibration.dataset_eval import EvalReport, evaluate_bundle
from segrt.runtime.fsutil import ensure_writable_dir


def evaluate_and_write(bundle: str | os.PathLike[str], data: str, *, precisions: str | Sequence[str] = "fp32",
                       backend: str = "auto", threads: int | None = None, limit: int | None = None,
                       out_dir: str | os.PathLike[str] | None = None, store: bool = True,
                       progress: bool = True, predictions_dir: str | os.PathLike[str] | None = None,
                       ) -> tuple[EvalReport, list[Path], str | None]:
    """The report, the files written under ``out_dir`` and why charts were skipped (or None)."""
    from segrt.tools.bench.chart import chart_unavailable_reason
    from segrt.tools.eval_report import write_charts, write_csv, write_json

    report = evaluate_bundle(bundle, data, precisions=precisions, backend=backend, threads=threads, limit=limit,
                             progress=progress, store=store, predictions_dir=predictions_dir)
    written: list[Path] = []
    skipped = None
    if out_dir is not None:
        out = Path(out_dir)
        ensure_writable_dir(out)
        written += [write_json(report, out / "eval.json"), write_csv(report, out / "eval.csv")]
        skipped = chart_unavailable_reason()
        if skipped is None:
            written += write_charts(report, out)
    return report, written, skipped
