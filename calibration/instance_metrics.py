"""COCO box and mask AP of an instance bundle, computed by pycocotools (the reference implementation).

The evaluation set is ``coco://IMAGES?ann=instances.json``: a folder of images and a COCO
instances file whose ``file_name`` entries are relative to it. Every image runs through the
runtime's own preprocessing, backend and mask pasting (:func:`instances_from_outputs`), so the
figures measure what a deployment draws. Detections map to COCO categories by class name
(the bundle's ``classes`` against the file's ``categories``). AP, AP50, AP75 and AP for
small/medium/large objects are pycocotools' ``COCOeval.stats[0:6]``; an area range with no
ground truth reports ``None`` (pycocotools' -1).
"""
from __future__ import annotations

import contextlib
import io
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from segrt.errors import ConfigError, SourceError
from segrt.runtime.bundle import Bundle
from segrt.runtime.instances import Instance, instances_from_outputs
from segrt.runtime.preprocess import Preprocessor

COCO_SCHEME = "coco://"
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
EVAL_SCORE_THRESHOLD = 0.05  # torchvision's box_score_thresh: AP wants the whole ranked list


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ConfigError("COCO AP needs pycocotools", hint="pip install 'segrt[eval]' (or pycocotools)") from None
    return COCO, COCOeval, mask_utils


@dataclass(frozen=True)
class CocoSet:
    """Images folder and instances annotation file of a ``coco://`` URI."""

    images: Path
    annotations: Path

    @classmethod
    def from_uri(cls, uri: str) -> "CocoSet":
        if not uri.startswith(COCO_SCHEME):
            raise ConfigError(f"not a COCO source: {uri!r}", hint="use coco://IMAGES?ann=instances.json")
        path, _, query = uri[len(COCO_SCHEME):].partition("?")
        ann = urllib.parse.parse_qs(query).get("ann", [""])[0]
        if not path or not ann:
            raise ConfigError(f"{uri!r} needs an images folder and ?ann=", hint="coco://IMAGES?ann=instances.json")
        images = Path(urllib.parse.unquote(path))
        ann_path = Path(urllib.parse.unquote(ann))
        if not ann_path.is_absolute() and not ann_path.exists() and (images / ann_path).exists():
            ann_path = images / ann_path
        if not images.is_dir():
            raise SourceError(f"COCO images folder {images} does not exist")
        if not ann_path.is_file():
            raise SourceError(f"COCO annotation file {ann_path} does not exist")
        return cls(images, ann_path)


@dataclass(frozen=True)
class InstanceScores:
    """COCO AP of one run: ``box`` and ``mask`` map each of :data:`AP_KEYS` to a float or None."""

    box: Mapping[str, float | None]
    mask: Mapping[str, float | None]
    images: int
    detections: int
    unmapped_labels: tuple[str, ...] = field(default=())
    backend: str = ""  # the backend that ran (onnxruntime | tensorrt | ...)
    infer_ms: float = 0.0  # mean backend time per image (inference alone)

    def as_record(self) -> dict[str, Any]:
        return {"metric": "coco_ap", "implementation": "pycocotools COCOeval", "images": self.images,
                "detections": self.detections, "box": dict(self.box), "mask": dict(self.mask),
                "unmapped_labels": list(self.unmapped_labels), "backend": self.backend,
                "infer_ms": round(self.infer_ms, 3)}


def coco_results_from_instances(image_id: int, instances: Sequence[Instance], frame_size: tuple[int, int],
                                category_of_label: Mapping[int, int]) -> list[dict[str, Any]]:
    """COCO result entries (bbox xywh + RLE segmentation) for one image's instances.

    Labels missing from ``category_of_label`` are left out.
    """
    _, _, mask_utils = _pycocotools()
    out = []
    for inst in instances:
        cat = category_of_label.get(inst.label)
        if cat is None:
            continue
        rle = mask_utils.encode(np.asfortranarray(inst.full_mask(frame_size)))
        rle["counts"] = rle["counts"].decode("ascii")
        x0, y0, x1, y1 = inst.box
        out.append({"image_id": int(image_id), "category_id": int(cat), "score": float(inst.score),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "segmentation": rle})
    return out


def coco_ap(gt, results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """``{"bbox": {...}, "segm": {...}}`` from pycocotools for ``results`` against the COCO object ``gt``."""
    _, COCOeval, _ = _pycocotools()
    scores: dict[str, dict[str, float | None]] = {}
    for iou_type in ("bbox", "segm"):
        if not results:  # loadRes refuses an empty list; nothing detected is AP 0 where there is ground truth
            scores[iou_type] = {k: 0.0 for k in AP_KEYS}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(r) for r in results])
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        scores[iou_type] = {k: (None if v < 0 else float(v)) for k, v in zip(AP_KEYS, ev.stats[:6])}
    return scores


def _category_map(classes: Sequence[str], categories: Sequence[Mapping[str, Any]]) -> tuple[dict[int, int], tuple]:
    by_name = {str(c["name"]): int(c["id"]) for c in categories}
    mapping = {i: by_name[name] for i, name in enumerate(classes) if name in by_name}
    unmapped = tuple(name for i, name in enumerate(classes) if i and name not in by_name and name != "N/A")
    return mapping, unmapped


def evaluate_instance_bundle(bundle: Bundle | str | os.PathLike[str], uri: str, *, backend: str = "onnxruntime",
                             precision: str = "fp32", threads: int | None = None, limit: int | None = None,
                             score_threshold: float = EVAL_SCORE_THRESHOLD) -> InstanceScores:
    """COCO box and mask AP of ``bundle`` on the ``coco://`` set ``uri`` (every image, or ``limit``)."""
    from segrt.runtime.backends.select import backend_for_bundle

    COCO, _, _ = _pycocotools()
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    if b.manifest.output.kind != "instances":
        raise ConfigError(f"bundle {b.path} outputs {b.manifest.output.kind}; COCO AP needs an instance bundle")
    coco_set = CocoSet.from_uri(uri)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_set.annotations))
    mapping, unmapped = _category_map(b.manifest.classes, gt.loadCats(gt.getCatIds()))
    if not mapping:
        raise ConfigError(f"no class of {b.path.name} is a category of {coco_set.annotations.name}",
                          hint="the bundle's class names must match the annotation file's category names")
    image_ids = sorted(gt.getImgIds())[:limit]
    pre = Preprocessor(b.manifest)
    results: list[dict[str, Any]] = []
    infer_s = 0.0
    with backend_for_bundle(b, backend=backend, precision=precision, threads=threads) as net:
        ran_on = str(net.name)
        for image_id in image_ids:
            info = gt.loadImgs(image_id)[0]
            frame = cv2.imread(str(coco_set.images / info["file_name"]), cv2.IMREAD_COLOR)
            if frame is None:
                raise SourceError(f"cannot read {coco_set.images / info['file_name']} (image {image_id})")
            tensor, lb = pre(frame)
            t = time.perf_counter()
            outputs = net.infer({b.manifest.input.name: tensor})
            infer_s += time.perf_counter() - t
            found = instances_from_outputs(outputs, lb, score_threshold, names=b.manifest.output.names)
            results += coco_results_from_instances(image_id, found, lb.frame_size, mapping)
    ap = coco_ap(gt, results)
    return InstanceScores(box=ap["bbox"], mask=ap["segm"], images=len(image_ids), detections=len(results),
                          unmapped_labels=unmapped, backend=ran_on,
                          infer_ms=1000.0 * infer_s / max(len(image_ids), 1))
