"""Held-out evaluation frames and class masks from candidate models.

The evaluation set is read once (``eval_frames`` preprocessed model inputs, plus labels
mapped into model-input pixels when the source has them) and every candidate model runs
over the same tensors, with the runtime's own preprocessing and mask decoding. Labels
are mapped with centre-exact nearest-neighbour resizing through the same letterbox the frame
went through; letterbox padding is labelled 255 (ignored).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
import onnx

from segrt.calibration.gate import ConfusionMatrix
from segrt.calibration.sampling import Coverage, FrameSampler
from segrt.errors import BackendError, CalibrationError, first_line
from segrt.runtime.redact import redact
from segrt.runtime.backends.onnxruntime import ORT_DISABLED_OPTIMIZERS
from segrt.runtime.manifest import Manifest
from segrt.runtime.postprocess import mask_from_outputs
from segrt.runtime.preprocess import Letterbox, Preprocessor

log = logging.getLogger("segrt.calibration")

IGNORE = 255


def label_to_model(label: np.ndarray, lb: Letterbox) -> np.ndarray:
    """A source label mask (frame pixels) in model-input pixels; padding is IGNORE."""
    mw, mh = lb.model_size
    out = np.full((mh, mw), IGNORE, np.uint8)
    x0, y0, x1, y1 = lb.content
    if label.shape[:2] == (y1 - y0, x1 - x0):
        out[y0:y1, x0:x1] = label
    else:
        # NEAREST_EXACT samples the pixel centres INTER_LINEAR (the image resize) interpolates
        # around; plain NEAREST would shift the labels by up to a source pixel against the image.
        out[y0:y1, x0:x1] = cv2.resize(label, lb.content_size, interpolation=cv2.INTER_NEAREST_EXACT)
    return out


@dataclass
class EvalSet:
    """Preprocessed held-out inputs (private copies) and their labels in model pixels."""

    inputs: list[np.ndarray]
    labels: list[np.ndarray | None]
    coverage: Coverage
    input_name: str

    @property
    def has_labels(self) -> bool:
        return bool(self.labels) and all(lab is not None for lab in self.labels)

    def subset(self, n: int) -> "EvalSet":
        """``n`` frames spread over the set (for the cheap sensitivity sweep)."""
        if n >= len(self.inputs):
            return self
        idx = np.linspace(0, len(self.inputs) - 1, n).round().astype(int)
        return EvalSet([self.inputs[i] for i in idx], [self.labels[i] for i in idx], self.coverage, self.input_name)

    def __len__(self) -> int:
        return len(self.inputs)


def collect_eval_set(manifest: Manifest, uri: str, frames: int, *, index_range: tuple[int, int] | None = None,
                     on_frame: Callable[[], None] | None = None) -> EvalSet:
    """Read ``frames`` held-out frames of ``uri`` (within ``index_range``) and preprocess them."""
    sampler = FrameSampler(uri, frames, index_range=index_range)
    pre = Preprocessor(manifest)
    inputs, labels = [], []
    for frame in sampler:
        tensor, lb = pre(frame.image)
        inputs.append(tensor.copy())
        labels.append(label_to_model(frame.label, lb) if frame.label is not None else None)
        if on_frame:
            on_frame()
    if not inputs:
        raise CalibrationError(f"evaluation source {uri} delivered no frames",
                               hint="pass a readable --eval source (video, image folder, camera, synthetic://)")
    named = sampler.label_classes
    if named is not None and tuple(named) != tuple(manifest.classes) and any(lab is not None for lab in labels):
        # e.g. a Pascal VOC model on synthetic:// scenes: the label ids mean other classes.
        log.info("not scoring against %s labels: its classes (%s) are not the model's", redact(uri), ", ".join(named))
        labels = [None] * len(labels)
    return EvalSet(inputs, labels, sampler.coverage, manifest.input.name)


def session(model: onnx.ModelProto | bytes | str, threads: int | None = None):
    """An ONNX Runtime CPU session for ``model`` (ModelProto, serialized bytes or a path),
    with :data:`ORT_DISABLED_OPTIMIZERS` off."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3  # constant-folding notes about FP16 kernels are not our business
    if threads:
        so.intra_op_num_threads = threads
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))
    except Exception as exc:  # ORT raises its own exception types for invalid graphs
        raise BackendError(f"ONNX Runtime cannot load the converted model: {first_line(exc, 400)}") from exc


def predict_masks(model: onnx.ModelProto | bytes | str, manifest: Manifest, eval_set: EvalSet,
                  threads: int | None = None, on_frame: Callable[[], None] | None = None) -> list[np.ndarray]:
    """Class masks (model resolution, uint8) of ``model`` on every input of ``eval_set``."""
    sess = session(model, threads)
    out_names = [o.name for o in sess.get_outputs()]
    masks = []
    for x in eval_set.inputs:
        vals = sess.run(None, {eval_set.input_name: x})
        masks.append(mask_from_outputs(dict(zip(out_names, vals)), manifest))
        if on_frame:
            on_frame()
    return masks


def _fit(label: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if label.shape == shape:
        return label
    return cv2.resize(label, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)


def compare_masks(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray | None], num_classes: int) -> dict | None:
    """Dataset-level metrics of ``preds`` against ``refs`` (None when any ref is missing)."""
    if not refs or any(r is None for r in refs):
        return None
    cm = ConfusionMatrix(num_classes)
    for p, r in zip(preds, refs):
        cm.update(p, _fit(r, p.shape))  # type: ignore[arg-type]
    return cm.metrics()


@dataclass
class Reference:
    """FP32 masks on the evaluation set, computed once."""

    masks: list[np.ndarray]
    vs_labels: dict | None = field(default=None)


def agreement_with(preds: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> float:
    same = sum(int(np.count_nonzero(p == r)) for p, r in zip(preds, ref))
    total = sum(p.size for p in preds)
    return same / total if total else 0.0
