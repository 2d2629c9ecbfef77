"""Dataset-level segmentation metrics with mmsegmentation's ``IoUMetric`` conventions.

* One confusion matrix is accumulated over the whole dataset (rows: label, columns:
  prediction); per-class numbers come from its sums, never from per-image averages.
* Label pixels equal to ``ignore_index`` (255) are dropped. Values outside ``0..num_classes-1``
  have no histogram bin (as in mmsegmentation's ``torch.histc``): such a label adds nothing to
  its (missing) class but its prediction still counts as predicted area; such a prediction
  counts in its label's area only.
* Per class: IoU = TP / (label + pred - TP), Acc = TP / label. A class with no pixels in the
  labels and none in the predictions has IoU NaN; a class absent from the labels has Acc
  NaN. mIoU and mAcc are NaN-skipping means (``np.nanmean``); aAcc = sum TP / sum label.

The per-frame work is one ``np.bincount`` over ``label * n + pred`` in uint16 (no Python
loop over pixels); predictions outside the classes count against their label's class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class IoUResult:
    """aAcc, mIoU, mAcc and the per-class figures (fractions in [0, 1]; NaN where undefined)."""

    classes: tuple[str, ...]
    aacc: float
    miou: float
    macc: float
    iou: tuple[float, ...]
    acc: tuple[float, ...]
    label_pixels: tuple[int, ...]
    pred_pixels: tuple[int, ...]
    pixels: int  # evaluated (non-ignored) label pixels
    frames: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (NaN -> None)."""
        def f(v: float) -> float | None:
            return None if math.isnan(v) else round(float(v), 6)
        return {"aAcc": f(self.aacc), "mIoU": f(self.miou), "mAcc": f(self.macc), "pixels": self.pixels,
                "frames": self.frames,
                "per_class": [{"class": c, "IoU": f(i), "Acc": f(a), "label_pixels": lp, "pred_pixels": pp}
                              for c, i, a, lp, pp in zip(self.classes, self.iou, self.acc, self.label_pixels,
                                                         self.pred_pixels)]}


class IoUAccumulator:
    """Accumulates one (n x n) confusion matrix over frames; :meth:`result` gives the metrics."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if not 1 <= num_classes <= 255:
            raise ValueError(f"num_classes must be 1..255 for uint8 masks, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        n = self.num_classes
        # Rows 0..255 (every uint8 label), columns 0..n (n: a prediction outside the classes).
        self._counts = np.zeros((256, n + 1), np.int64)
        self._idx: np.ndarray | None = None
        self.frames = 0

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one frame: ``pred`` and ``label`` are same-shape uint8 class-id arrays."""
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
        if pred.dtype != np.uint8 or label.dtype != np.uint8:
            raise ValueError(f"expected uint8 masks, got {pred.dtype} and {label.dtype}")
        n = self.num_classes
        p = pred.reshape(-1)
        if int(p.max(initial=0)) >= n:
            p = np.minimum(p, np.uint8(n))
        idx = self._index_buffer(p.size)
        np.multiply(label.reshape(-1), np.uint16(n + 1), out=idx, dtype=np.uint16)
        idx += p
        self._counts += np.bincount(idx, minlength=256 * (n + 1)).reshape(256, n + 1)
        self.frames += 1

    def _index_buffer(self, size: int) -> np.ndarray:
        """A uint16 buffer for ``label * (n + 1) + pred``, reused while the frame size stays."""
        if self._idx is None or self._idx.size != size:
            self._idx = np.empty(size, np.uint16)
        return self._idx

    def merge(self, other: "IoUAccumulator") -> None:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge accumulators of different class counts")
        self._counts += other._counts
        self.frames += other.frames

    @property
    def confusion(self) -> np.ndarray:
        """(n, n) int64: rows = label class, columns = predicted class (ignored pixels dropped)."""
        n = self.num_classes
        rows = self._counts[:n, :n].copy()
        if self.ignore_index < n:
            rows[self.ignore_index] = 0
        return rows

    def result(self, classes: Sequence[str] | None = None) -> IoUResult:
        n = self.num_classes
        names = tuple(classes) if classes is not None else tuple(f"class_{i}" for i in range(n))
        if len(names) != n:
            raise ValueError(f"{len(names)} class names for {n} classes")
        counts = self._counts
        if self.ignore_index < 256:
            counts = counts.copy()
            counts[self.ignore_index] = 0
        tp = np.diag(counts[:n, :n]).astype(np.float64)
        # As mmsegmentation's histograms: a label outside 0..n-1 (not ignored) has no label bin but
        # its prediction still counts; a prediction outside 0..n-1 counts for its label only.
        label_area = counts[:n].sum(axis=1).astype(np.float64)
        pred_area = counts[:, :n].sum(axis=0).astype(np.float64)
        union = label_area + pred_area - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = tp / union
            acc = tp / label_area
            aacc = float(tp.sum() / label_area.sum()) if label_area.sum() else math.nan
        miou = float(np.nanmean(iou)) if not np.isnan(iou).all() else math.nan
        macc = float(np.nanmean(acc)) if not np.isnan(acc).all() else math.nan
        return IoUResult(classes=names, aacc=aacc, miou=miou, macc=macc, iou=tuple(float(v) for v in iou),
                         acc=tuple(float(v) for v in acc), label_pixels=tuple(int(v) for v in label_area),
                         pred_pixels=tuple(int(v) for v in pred_area), pixels=int(label_area.sum()),
                         frames=self.frames)
