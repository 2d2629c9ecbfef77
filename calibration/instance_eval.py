"""``segrt eval`` on an instance bundle: COCO box and mask AP per precision, stored like semantic eval.

Each requested precision runs the whole ``coco://`` set through
:func:`~segrt.calibration.instance_metrics.evaluate_instance_bundle` (pycocotools); the result
goes into the bundle's manifest at the same place as a semantic score,
``artifacts[precision].details["eval"][backend][data]``, as ``InstanceScores.as_record()``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from segrt.calibration.dataset_eval import parse_precisions, store_in_manifest
from segrt.calibration.instance_metrics import AP_KEYS, InstanceScores, evaluate_instance_bundle
from segrt.errors import ConfigError
from segrt.runtime.bundle import Bundle


@dataclass(frozen=True)
class InstancePrecisionEval:
    """One precision on one backend over the whole COCO set."""

    precision: str
    scores: InstanceScores

    @property
    def backend(self) -> str:
        return self.scores.backend

    @property
    def infer_ms(self) -> float:
        return self.scores.infer_ms

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, **self.scores.as_record()}


@dataclass(frozen=True)
class InstanceEvalReport:
    """``segrt eval``'s result on an instance bundle: COCO AP of every precision on one set."""

    bundle: str
    data: str
    classes: tuple[str, ...]
    frames: int
    seconds: float
    runs: tuple[InstancePrecisionEval, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "data": self.data, "classes": list(self.classes), "frames": self.frames,
                "seconds": round(self.seconds, 2), "ap_keys": list(AP_KEYS),
                "method": "pycocotools COCOeval, iouType bbox and segm, stats[0:6]; masks pasted by the runtime",
                "runs": [r.to_dict() for r in self.runs]}


def evaluate_instances(bundle: Bundle | str | os.PathLike[str], data: str, *,
                       precisions: str | Sequence[str] = ("fp32",), backend: str = "auto",
                       threads: int | None = None, limit: int | None = None, store: bool = True,
                       ) -> InstanceEvalReport:
    """COCO AP of ``bundle`` on ``data`` (``coco://``) for each precision; stored in the manifest."""
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    precs = parse_precisions(precisions)
    for p in precs:
        b.onnx_path(p)  # a missing precision fails here, naming the fix
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} must be >= 1")
    t0 = time.perf_counter()
    runs = tuple(InstancePrecisionEval(p, evaluate_instance_bundle(b, data, backend=backend, precision=p,
                                                                   threads=threads, limit=limit))
                 for p in precs)
    report = InstanceEvalReport(bundle=str(b.path), data=str(data), classes=b.manifest.classes,
                                frames=runs[0].scores.images, seconds=time.perf_counter() - t0, runs=runs)
    if store:
        store_in_manifest(b, report)  # the same record as semantic eval: per precision, backend, data
    return report
