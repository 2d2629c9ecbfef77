"""Instance segmentation post-processing (Mask R-CNN style outputs).

The graph returns boxes in model-input pixels and one low-resolution (28x28) mask
probability per detection, *not* pasted into the image (pasting is cheap on the CPU
and keeps the graph free of data-dependent shapes). Here each box is mapped back to
frame pixels through the :class:`~segrt.runtime.preprocess.Letterbox`, its mask
probability is resized to the box (``cv2.resize``) and thresholded at 0.5. A mask is
kept box-local (``origin`` + a small array), not as a full-frame image per instance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from segrt.errors import BackendError
from segrt.runtime import parallel
from segrt.runtime.preprocess import Letterbox

INSTANCE_OUTPUTS = ("boxes", "labels", "scores", "masks", "num_detections")
# Below this many mask pixels in a frame, splitting the paste across threads costs more than it saves.
_MIN_PART_PIXELS = 200_000


@dataclass(frozen=True, eq=False)
class Instance:
    """One detection in frame pixels.

    ``box`` is xyxy (floats), ``mask`` a uint8 0/1 array whose top-left pixel is frame pixel
    ``origin`` (x, y); it covers the box rounded to whole pixels.
    """

    label: int
    score: float
    box: tuple[float, float, float, float]
    origin: tuple[int, int]
    mask: np.ndarray
    mask_area: int | None = field(default=None, repr=False)  # nonzero pixels of ``mask``, when known

    @property
    def area(self) -> int:
        """Pixels of the mask (``mask_area`` when the paste counted them)."""
        if self.mask_area is not None:
            return self.mask_area
        if self.mask.dtype != np.uint8 or self.mask.ndim != 2 or not self.mask.size:
            return int(np.count_nonzero(self.mask))
        return int(cv2.countNonZero(self.mask))  # a few times faster than numpy's on uint8

    def full_mask(self, frame_size: tuple[int, int]) -> np.ndarray:
        """The mask as a (h, w) uint8 0/1 image of the whole frame (allocates; for tests/analysis)."""
        w, h = frame_size
        out = np.zeros((h, w), np.uint8)
        x, y = self.origin
        mh, mw = self.mask.shape
        out[y:y + mh, x:x + mw] = self.mask[: max(0, h - y), : max(0, w - x)]
        return out


def box_pixels(box: Sequence[float]) -> tuple[int, int, int, int]:
    """The whole pixels a float xyxy box covers: columns x0..x1-1, rows y0..y1-1.

    Edges are rounded to the nearest pixel boundary, so a box [10.0, 20.0) covers exactly
    columns 10..19; a box thinner than a pixel still covers one.
    """
    x0 = int(math.floor(box[0] + 0.5))
    y0 = int(math.floor(box[1] + 0.5))
    x1 = max(int(math.floor(box[2] + 0.5)), x0 + 1)
    y1 = max(int(math.floor(box[3] + 0.5)), y0 + 1)
    return x0, y0, x1, y1


def paste_mask(prob: np.ndarray, box: Sequence[float], frame_size: tuple[int, int],
               threshold: float = 0.5) -> tuple[tuple[int, int], np.ndarray] | None:
    """Paste one low-resolution mask probability (MxM) into its box, in frame pixels.

    The probability is resized (bilinear, pixel centres as ``cv2.resize`` and torchvision's
    ``interpolate(align_corners=False)`` place them) to the box's whole-pixel size,
    thresholded (``>= threshold``) and cropped to the frame. Returns ``(origin, mask)``, the
    box-local uint8 0/1 mask and its top-left frame pixel, or None when the box lies outside
    the frame. The work runs on 8-bit probabilities (see :func:`instances_from_outputs`).
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim == 3:
        p = p[0]
    if p.ndim != 2:
        raise BackendError(f"instance mask has shape {np.shape(prob)}, expected (M,M) or (1,M,M)")
    px = box_pixels(box)
    w, h = frame_size
    if min(px[2], w) <= max(px[0], 0) or min(px[3], h) <= max(px[1], 0):
        return None
    buf = np.empty((px[3] - px[1]) * (px[2] - px[0]), np.uint8)
    return _paste_pixels(_u8_from_prob(p), px, frame_size, _u8_threshold(threshold), buf)


def _u8_from_prob(prob: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as rounded 8-bit levels (x255, saturated), any shape."""
    flat = np.ascontiguousarray(prob, dtype=np.float32).reshape(-1, prob.shape[-1])
    return cv2.multiply(flat, 255.0, dtype=cv2.CV_8U).reshape(prob.shape)


def _u8_threshold(threshold: float) -> int:
    """The ``cv2.threshold`` level (strictly greater) that keeps 8-bit levels >= ``threshold`` x 255."""
    return int(math.ceil(float(threshold) * 255.0 - 1e-9)) - 1


def _paste_pixels(prob: np.ndarray, pixels: Sequence[int], frame_size: tuple[int, int],
                  level: int, buf: np.ndarray) -> tuple[tuple[int, int], np.ndarray]:
    """:func:`paste_mask` for a 2-D uint8 ``prob``, the box's whole pixels (:func:`box_pixels`,
    overlapping the frame), the 8-bit level of :func:`_u8_threshold` and ``buf``, a flat uint8
    buffer of at least the box's area that the mask is written into (the result is a view of it).

    One bilinear ``cv2.resize`` of the 8-bit levels straight into ``buf`` and one
    ``cv2.threshold`` in place to 0/1: no float copy of the box is ever made.
    """
    w, h = frame_size
    x0, y0, x1, y1 = pixels
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    bw, bh = x1 - x0, y1 - y0
    box = buf[:bw * bh].reshape(bh, bw)
    cv2.resize(prob, (bw, bh), dst=box, interpolation=cv2.INTER_LINEAR)
    crop = box[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    cv2.threshold(crop, level, 1, cv2.THRESH_BINARY, dst=crop)
    return (cx0, cy0), crop


def instances_from_outputs(outputs: Mapping[str, np.ndarray], letterbox: Letterbox,
                           score_threshold: float = 0.5, *, mask_threshold: float = 0.5,
                           names: Sequence[str] = INSTANCE_OUTPUTS) -> list[Instance]:
    """Detections above ``score_threshold``, highest score first, with pasted masks in frame pixels.

    ``names`` are the output tensor names (the manifest's ``output.names``): boxes, labels,
    scores, masks and, for static-shape graphs, num_detections (rows past it are padding).
    Bundles made before the static contract have no num_detections and exactly K rows.
    """
    try:
        boxes, labels, scores, masks = (outputs[n] for n in names[:4])
        # older bundles have no num_detections output and exactly K rows
        count = int(np.asarray(outputs[names[4]]).reshape(-1)[0]) if len(names) > 4 and names[4] in outputs else None
    except KeyError as exc:
        raise BackendError(f"instance output {exc.args[0]!r} missing (got {', '.join(outputs)})",
                           hint="instance bundles output boxes, labels, scores, masks, num_detections") from None
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if count is not None:
        if not 0 <= count <= scores.shape[0]:
            raise BackendError(f"num_detections is {count} but the outputs have {scores.shape[0]} rows")
        scores = scores[:count]
    k = scores.shape[0]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[:k]
    labels = np.asarray(labels).reshape(-1)[:k]
    masks = np.asarray(masks)[:k]
    if masks.shape[0] != k or boxes.shape[0] != k or labels.shape[0] != k:
        raise BackendError(f"{k} detections but {masks.shape[0]} masks")
    # Unclipped: a box reaching into the letterbox padding keeps its geometry for the paste.
    frame_boxes = letterbox.boxes_to_frame(boxes, clip=False)
    fw, fh = letterbox.frame_size
    keep = np.flatnonzero(scores >= score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if not len(keep):
        return []
    probs = np.asarray(masks[keep])
    if probs.ndim == 4 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim != 3:
        raise BackendError(f"instance masks have shape {np.shape(masks)}, expected (K,M,M) or (K,1,M,M)")
    # the geometry of every kept box at once (as box_pixels and a clip to the frame would give it)
    fb = frame_boxes[keep].astype(np.float64)
    pixels = np.floor(fb + 0.5).astype(np.int64)
    pixels[:, 2:] = np.maximum(pixels[:, 2:], pixels[:, :2] + 1)
    visible = ((np.minimum(pixels[:, 2], fw) > np.maximum(pixels[:, 0], 0))
               & (np.minimum(pixels[:, 3], fh) > np.maximum(pixels[:, 1], 0)))
    if not visible.any():
        return []  # every box lies in the letterbox padding
    keep, probs, fb, pixels = keep[visible], probs[visible], fb[visible], pixels[visible]
    clipped = np.minimum(np.maximum(fb, 0.0), np.array([fw, fh, fw, fh], np.float64))
    # Every mask of the frame lives in one buffer (one allocation, not one per instance); each
    # instance keeps a view of it. The probabilities go to 8 bits once, for the whole frame.
    areas = (pixels[:, 2] - pixels[:, 0]) * (pixels[:, 3] - pixels[:, 1])
    ends = np.cumsum(areas).tolist()
    arena = np.empty(ends[-1], np.uint8)
    levels = _u8_from_prob(probs)
    level = _u8_threshold(mask_threshold)
    px_list, starts = pixels.tolist(), [0, *ends[:-1]]
    pasted: list = [None] * len(px_list)
    n_parts = min(parallel.parts(), (ends[-1] + _MIN_PART_PIXELS - 1) // _MIN_PART_PIXELS)

    def paste_part(part: int) -> None:  # every n_parts-th mask: the parts get similar mixes of sizes
        for i in range(part, len(px_list), n_parts):
            origin, mask = _paste_pixels(levels[i], px_list[i], letterbox.frame_size, level,
                                         arena[starts[i]:ends[i]])
            pasted[i] = origin, mask, cv2.countNonZero(mask)  # counted while the mask is in cache

    parallel.run_parts(paste_part, n_parts)
    return [Instance(int(label), score, tuple(box), origin, mask, mask_area=area)
            for (origin, mask, area), box, label, score in zip(pasted, clipped.tolist(), labels[keep].tolist(),
                                                                scores[keep].tolist())]
