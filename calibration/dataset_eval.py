"""``segrt eval``: a bundle scored on a labelled dataset, per precision and backend, streaming.

Every frame of the source is read once, preprocessed once (the runtime's own
:class:`~segrt.runtime.preprocess.Preprocessor`) and run through one backend per requested
precision; each prediction is cut to the letterbox content, resized to the label's
resolution (nearest: mmsegmentation compares at the label's size) and added to that
precision's :class:`~segrt.calibration.iou_metric.IoUAccumulator`. Nothing per frame is kept,
so memory stays flat on a dataset of any size. The result goes into the bundle's manifest,
``artifacts[precision].details["eval"][backend][data]``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from segrt.calibration.iou_metric import IoUAccumulator, IoUResult
from segrt.calibration.progress import progress_bar
from segrt.errors import ConfigError, SourceError
from segrt.runtime.backends.select import backend_for_bundle
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import PRECISIONS
from segrt.runtime.postprocess import MaskDecoder
from segrt.runtime.preprocess import Letterbox, Preprocessor
from segrt.runtime.sources import open_source

log = logging.getLogger("segrt.eval")


@dataclass(frozen=True)
class PrecisionEval:
    """One precision on one backend over the whole dataset."""

    precision: str
    backend: str  # the backend that ran (onnxruntime | tensorrt)
    result: IoUResult
    confusion: np.ndarray  # (n, n) int64, rows = label, columns = prediction
    infer_ms: float  # mean backend time per frame (inference alone)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "backend": self.backend, "infer_ms": round(self.infer_ms, 3),
                **self.result.to_dict()}


@dataclass(frozen=True)
class EvalReport:
    """``segrt eval``'s result: every precision's metrics on one dataset."""

    bundle: str
    data: str
    classes: tuple[str, ...]
    frames: int
    seconds: float
    runs: tuple[PrecisionEval, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "data": self.data, "classes": list(self.classes), "frames": self.frames,
                "seconds": round(self.seconds, 2), "ignore_index": 255,
                "method": "mmsegmentation IoUMetric: one confusion matrix over the dataset, ignore_index 255, "
                          "NaN-skipping means; predictions resized to the label (nearest)",
                "runs": [r.to_dict() for r in self.runs]}


def parse_precisions(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"fp32,fp16"`` -> ("fp32", "fp16"), each checked."""
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    bad = [p for p in items if p not in PRECISIONS]
    if bad or not items:
        raise ConfigError(f"--precision {text!r}: unknown {', '.join(bad) or 'empty list'}",
                          hint="use a comma-separated list of " + ", ".join(PRECISIONS))
    return tuple(dict.fromkeys(items))


class LabelResolution:
    """A model-resolution mask -> the label's resolution: letterbox content, then a nearest resize."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, mask: np.ndarray, lb: Letterbox, label_shape: tuple[int, int]) -> np.ndarray:
        x0, y0, x1, y1 = lb.content
        roi = mask[y0:y1, x0:x1]
        if roi.shape == label_shape:
            return roi
        dst = self._buffers.get(label_shape)
        if dst is None:
            dst = self._buffers[label_shape] = np.empty(label_shape, np.uint8)
        # NEAREST_EXACT samples the pixel centres the image resize interpolated around.
        cv2.resize(roi, (label_shape[1], label_shape[0]), dst=dst, interpolation=cv2.INTER_NEAREST_EXACT)
        return dst


def _check_label_classes(source, classes: tuple[str, ...], uri: str) -> None:
    named = getattr(source, "label_classes", None)
    if named is None:
        return
    if len(named) != len(classes):
        raise ConfigError(f"{uri} labels {len(named)} classes but the bundle's model has {len(classes)}",
                          hint="evaluate on a dataset with the model's classes (or export with --classes "
                               "matching the dataset)")
    if tuple(named) != tuple(classes):
        log.warning("%s names its classes differently from the bundle (%s... vs %s...); ids are compared as they are",
                    uri, ", ".join(named[:3]), ", ".join(classes[:3]))


def evaluate_bundle(bundle: Bundle | str | os.PathLike[str], data: str, *,
                    precisions: str | Sequence[str] = ("fp32",), backend: str = "auto", threads: int | None = None,
                    limit: int | None = None, progress: bool = True, store: bool = True,
                    echo: Callable[[str], None] | None = None,
                    predictions_dir: str | os.PathLike[str] | None = None, prefetch: bool = True) -> EvalReport:
    """Score ``bundle`` on the labelled source ``data`` for each precision; store it in the manifest.

    ``predictions_dir``: also write each prediction (label resolution) as
    ``<dir>/<precision>/<image stem>.png``, in the dataset's stored ids when it has them
    (Cityscapes labelIds, ADE20K's unreduced ids, VOC palette PNGs) for a benchmark server.
    ``prefetch``: decode the next frames on a helper thread while the backend runs."""
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    m = b.manifest
    if m.output.kind not in ("mask", "logits"):
        raise ConfigError(f"bundle {b.path} outputs {m.output.kind}; segrt eval scores semantic masks",
                          hint="evaluate a semantic segmentation bundle")
    precs = parse_precisions(precisions)
    for p in precs:
        b.onnx_path(p)  # a missing precision fails here, naming the fix
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} must be >= 1")
    source = open_source(data)
    t0 = time.perf_counter()
    with source:
        if not source.has_labels:
            raise SourceError(f"{data} has no labels to score against",
                              hint="pass a labelled dataset: voc://ROOT, cityscapes://ROOT, ade20k://ROOT, or a "
                                   "folder with images/ and masks/")
        _check_label_classes(source, m.classes, data)
        total = source.frame_count if limit is None else min(limit, source.frame_count or limit)
        runs = [_Run(b, p, backend, threads, echo, predictions_dir) for p in precs]
        try:
            frames = _stream(source, m, runs, total, progress, prefetch)
        finally:
            for r in runs:
                r.close()
    if frames == 0:
        raise SourceError(f"{data} delivered no frames", hint="check the dataset's split and files")
    report = EvalReport(bundle=str(b.path), data=str(data), classes=m.classes, frames=frames,
                        seconds=time.perf_counter() - t0, runs=tuple(r.finish(m.classes) for r in runs))
    if store:
        store_in_manifest(b, report)
    return report


class _Run:
    """One precision's backend, decoder and accumulator."""

    def __init__(self, b: Bundle, precision: str, backend: str, threads: int | None, echo,
                 predictions_dir: str | os.PathLike[str] | None = None) -> None:
        self.precision = precision
        self.out_dir = None
        if predictions_dir is not None:
            from segrt.runtime.fsutil import ensure_writable_dir

            self.out_dir = ensure_writable_dir(Path(predictions_dir) / precision)
        self.backend = backend_for_bundle(b, backend=backend, precision=precision, threads=threads, echo=echo)
        self.backend.open()
        self.decoder = MaskDecoder(b.manifest)
        self.acc = IoUAccumulator(b.manifest.output.num_classes)
        self.infer_s = 0.0

    def step(self, name: str, tensor: np.ndarray, lb: Letterbox, label: np.ndarray, to_label: LabelResolution,
             source, index: int):
        t = time.perf_counter()
        outputs = self.backend.infer({name: tensor})
        self.infer_s += time.perf_counter() - t
        pred = to_label(self.decoder.decode(outputs), lb, label.shape)
        self.acc.update(pred, label)
        if self.out_dir is not None:
            _write_prediction(source, index, pred, self.out_dir)

    def close(self) -> None:
        self.backend.close()

    def finish(self, classes: tuple[str, ...]) -> PrecisionEval:
        n = max(self.acc.frames, 1)
        return PrecisionEval(precision=self.precision, backend=str(self.backend.name), result=self.acc.result(classes),
                             confusion=self.acc.confusion, infer_ms=1000.0 * self.infer_s / n)


PREFETCH = 3  # frames decoded ahead of inference (bounded: memory stays flat)


def _prefetched(source, total: int | None) -> Iterator:
    """The source's frames, read and decoded by a helper thread while the backend runs (image and
    PNG decoding release the GIL), at most :data:`PREFETCH` ahead. Errors surface in the caller."""
    q: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()
    end = object()

    def reader() -> None:
        try:
            n = 0
            for frame in source:
                _ = frame.label  # make lazy labels here, off the inference thread
                while not stop.is_set():
                    try:
                        q.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                n += 1
                if stop.is_set() or (total is not None and n >= total):
                    break
            q.put(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, re-raised there
            q.put(exc)

    thread = threading.Thread(target=reader, name="segrt-eval-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
        thread.join()


def _in_order(source, total: int | None) -> Iterator:
    for n, frame in enumerate(source, 1):
        yield frame
        if total is not None and n >= total:
            return


def _stream(source, m, runs: list[_Run], total: int | None, progress: bool, prefetch: bool = True) -> int:
    pre = Preprocessor(m)
    to_label = LabelResolution()
    bar = progress_bar(total, "eval frames", enabled=progress)
    frames = 0
    try:
        for frame in (_prefetched(source, total) if prefetch else _in_order(source, total)):
            label = frame.label
            if label is None:
                raise SourceError(f"{source.uri}: frame {frame.index} has no label",
                                  hint="every image of an evaluation set needs its mask")
            tensor, lb = pre(frame.image)
            for r in runs:
                r.step(m.input.name, tensor, lb, label, to_label, source, frame.index)
            frames += 1
            bar.update()
    finally:
        bar.close()
    return frames


def _write_prediction(source, index: int, pred: np.ndarray, out_dir: Path) -> None:
    writer = getattr(source, "write_prediction", None)
    if writer is not None:
        writer(index, pred, out_dir)
        return
    images = getattr(source, "images", None)
    name = images[index].stem if images is not None else f"{index:06d}"
    if not cv2.imwrite(str(out_dir / f"{name}.png"), pred):
        raise SourceError(f"cannot write {out_dir / name}.png", hint="check the --write-predictions folder")


def store_in_manifest(b: Bundle, report: EvalReport) -> None:
    """Record each run (semantic or instance) under ``artifacts[precision].details["eval"][backend][data]`` and save."""
    import dataclasses

    manifest = b.manifest
    for run in report.runs:
        art = manifest.artifacts[run.precision]
        details = dict(art.details)
        evals = {k: dict(v) for k, v in (details.get("eval") or {}).items()}
        summary = run.to_dict()
        summary.update({"data": report.data, "frames": report.frames})
        evals.setdefault(run.backend, {})[report.data] = summary
        details["eval"] = evals
        manifest = manifest.with_artifact(dataclasses.replace(art, details=details))
    b.update(manifest)
