"""``segrt eval`` as one function: evaluate, then write the report files (the CLI only prints).

A semantic bundle is scored with mmsegmentation's IoU conventions; an instance bundle with COCO
box and mask AP (pycocotools) on a ``coco://`` set. Both write ``eval.json`` and ``eval.csv``
and record the result in the manifest per precision and backend.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from segrt.calibration.dataset_eval import EvalReport, evaluate_bundle
from segrt.calibration.instance_eval import InstanceEvalReport, evaluate_instances
from segrt.calibration.instance_metrics import COCO_SCHEME
from segrt.errors import ConfigError
from segrt.runtime.bundle import Bundle
from segrt.runtime.fsutil import ensure_writable_dir


def evaluate_and_write(bundle: str | os.PathLike[str], data: str, *, precisions: str | Sequence[str] = "fp32",
                       backend: str = "auto", threads: int | None = None, limit: int | None = None,
                       out_dir: str | os.PathLike[str] | None = None, store: bool = True,
                       progress: bool = True, predictions_dir: str | os.PathLike[str] | None = None,
                       ) -> tuple[EvalReport | InstanceEvalReport, list[Path], str | None]:
    """The report, the files written under ``out_dir`` and why charts were skipped (or None)."""
    b = Bundle.open(bundle)
    if b.manifest.output.kind == "instances":
        return _instances_and_write(b, data, precisions=precisions, backend=backend, threads=threads, limit=limit,
                                    out_dir=out_dir, store=store, predictions_dir=predictions_dir)
    from segrt.tools.bench.chart import chart_unavailable_reason
    from segrt.tools.eval_report import write_charts, write_csv, write_json

    report = evaluate_bundle(b, data, precisions=precisions, backend=backend, threads=threads, limit=limit,
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


def _instances_and_write(b: Bundle, data: str, *, precisions, backend, threads, limit, out_dir, store,
                         predictions_dir) -> tuple[InstanceEvalReport, list[Path], str | None]:
    from segrt.tools.eval_report_instances import write_instance_csv, write_instance_json

    if not data.startswith(COCO_SCHEME):
        raise ConfigError(f"{b.path.name} is an instance bundle; --data {data!r} is not a COCO set",
                          hint="use --data coco://IMAGES?ann=instances.json")
    if predictions_dir is not None:
        raise ConfigError("--write-predictions writes semantic masks; an instance bundle has none to write",
                          hint="leave out --write-predictions for an instance bundle")
    report = evaluate_instances(b, data, precisions=precisions, backend=backend, threads=threads, limit=limit,
                                store=store)
    written: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        ensure_writable_dir(out)
        written += [write_instance_json(report, out / "eval.json"), write_instance_csv(report, out / "eval.csv")]
    return report, written, None
