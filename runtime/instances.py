"""Instance segmentation post-processing (Mask R-CNN style outputs).

The graph returns boxes in model-input pixels and one low-resolution (28x28) mask
probability per detection, *not* pasted into the image (pasting is cheap on the CPU
and keeps the graph free of data-dependent shapes). Here each box is mapped back to
frame pixels through the :class:`~segrt.runtime.preprocess.Letterbox`, its mask
probability is resized to the box (bilinear, ``cv2.resize``) and thresholded at 0.5, as
torchvision's ``paste_masks_in_image`` defines it. A mask is kept box-local (``origin`` +
a small array), not as a full-frame image per instance.

Each box is resized (float) into a per-thread scratch buffer reused from frame to frame
and thresholded straight into its mask; all masks of a frame share one buffer (one
allocation per frame, not one per instance), pasted by the threads of
:mod:`segrt.runtime.parallel`; each mask's pixel count is taken while it is in cache
(``Instance.area``). 8-bit probabilities would paste about 15% faster but move the mask
border by a pixel or two where a box is upscaled 20x or more (IoU 0.989 measured on a
cropped tall box), so the float paste stays.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from segrt.errors import BackendError
from segrt.runtime import kernels, parallel
from segrt.runtime.preprocess import Letterbox

INSTANCE_OUTPUTS = ("boxes", "labels", "scores", "masks", "num_detections")
# Below this many mask pixels in a frame, splitting the paste across threads costs more than it saves.
_MIN_PART_PIXELS = 200_000
_scratch = threading.local()  # each thread's float buffer for one resized box, grown as needed


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
    the frame.
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim == 3:
        p = p[0]
    if p.ndim != 2:
        raise BackendError(f"instance mask has shape {np.shape(prob)}, expected (M,M) or (1,M,M)")
    geometry = _paste_geometry(np.array([box_pixels(box)], np.int64), frame_size)
    if not geometry:
        return None
    origin, size, crop, _ = geometry[0]
    return origin, _paste_box(p, size, crop, np.empty(size[0] * size[1], np.uint8), float(threshold))


def _paste_geometry(pixels: np.ndarray, frame_size: tuple[int, int]) -> list[tuple]:
    """Per row of ``pixels`` (N x 4 whole-pixel boxes, :func:`box_pixels`) that overlaps the frame:
    ``(origin, (w, h), (row0, row1, col0, col1), index)``: the clipped top-left frame pixel, the
    box's size and the box-local rows and columns inside the frame. All rows at once, in numpy.
    """
    fw, fh = frame_size
    x0, y0, x1, y1 = pixels.T
    cx0, cy0 = np.maximum(x0, 0), np.maximum(y0, 0)
    cx1, cy1 = np.minimum(x1, fw), np.minimum(y1, fh)
    inside = np.flatnonzero((cx1 > cx0) & (cy1 > cy0))
    cols = np.stack([cx0, cy0, x1 - x0, y1 - y0, cy0 - y0, cy1 - y0, cx0 - x0, cx1 - x0], 1)[inside].tolist()
    return [((c[0], c[1]), (c[2], c[3]), (c[4], c[5], c[6], c[7]), i)
            for c, i in zip(cols, inside.tolist())]


def _paste_box(prob: np.ndarray, size: tuple[int, int], crop: tuple[int, int, int, int], buf: np.ndarray,
               threshold: float) -> np.ndarray:
    """One mask: float32 ``prob`` resized (bilinear) to ``size`` (w, h) in this thread's scratch buffer,
    then its ``crop`` (row0, row1, col0, col1) compared with ``threshold`` straight into ``buf`` (flat
    uint8, at least the crop's size) as 0/1, row after row. Returns the crop, a view of ``buf``.
    """
    n = size[0] * size[1]
    scratch = getattr(_scratch, "buf", None)
    if scratch is None or scratch.size < n:
        scratch = _scratch.buf = np.empty(max(n, 1 << 18), np.float32)
    resized = scratch[:n].reshape(size[1], size[0])
    cv2.resize(prob, size, dst=resized, interpolation=cv2.INTER_LINEAR)
    mh, mw = crop[1] - crop[0], crop[3] - crop[2]
    out = buf[:mh * mw].reshape(mh, mw)
    np.greater_equal(resized[crop[0]:crop[1], crop[2]:crop[3]], threshold, out=out.view(bool))  # bool is 0/1 bytes
    return out


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
    geometry = _paste_geometry(pixels, letterbox.frame_size)
    if not geometry:
        return []  # every box lies in the letterbox padding
    kept = [g[3] for g in geometry]
    clipped = np.minimum(np.maximum(fb[kept], 0.0), np.array([fw, fh, fw, fh], np.float64))
    # Every mask of the frame lives in one buffer (one allocation, not one per instance); each
    # instance keeps a view of it: the box's rows and columns inside the frame, row after row.
    shapes = [(crop[1] - crop[0], crop[3] - crop[2]) for _, _, crop, _ in geometry]
    ends = np.cumsum([mh * mw for mh, mw in shapes]).tolist()
    arena = np.empty(ends[-1], np.uint8)
    probs = np.ascontiguousarray(probs[kept], dtype=np.float32)
    threshold = float(mask_threshold)
    workers = min(parallel.parts(), (ends[-1] + _MIN_PART_PIXELS - 1) // _MIN_PART_PIXELS)
    chunks = min(len(geometry), 4 * workers) if workers > 1 else 1
    if kernels.enabled():
        areas = _paste_compiled(probs, geometry, ends, arena, threshold, chunks, workers)
        masks = [arena[end - mh * mw:end].reshape(mh, mw) for (mh, mw), end in zip(shapes, ends)]
    else:
        masks, areas = _paste_opencv(probs, geometry, shapes, ends, arena, threshold, chunks, workers)
    return [Instance(int(label), score, tuple(box), g[0], mask, mask_area=area)
            for g, mask, area, box, label, score in zip(geometry, masks, areas, clipped.tolist(),
                                                        labels[keep][kept].tolist(), scores[keep][kept].tolist())]


def _paste_opencv(probs: np.ndarray, geometry: list[tuple], shapes: list[tuple[int, int]], ends: list[int],
                  arena: np.ndarray, threshold: float, chunks: int, workers: int) -> tuple[list, list]:
    """Masks (views of ``arena``) and their pixel counts, by ``cv2.resize`` and a threshold per box."""
    jobs = [(probs[k], size, crop, arena[end - mh * mw:end])
            for k, ((_, size, crop, _), (mh, mw), end) in enumerate(zip(geometry, shapes, ends))]
    masks: list = [None] * len(jobs)
    areas: list = [0] * len(jobs)

    def paste_chunk(chunk: int, _worker: int) -> None:  # every chunks-th mask: similar mixes of sizes
        for k in range(chunk, len(jobs), chunks):
            mask = masks[k] = _paste_box(*jobs[k], threshold)
            areas[k] = cv2.countNonZero(mask)  # counted while the mask is in cache

    parallel.run_chunks(paste_chunk, chunks, workers)
    return masks, areas


def _paste_compiled(probs: np.ndarray, geometry: list[tuple], ends: list[int], arena: np.ndarray,
                    threshold: float, chunks: int, workers: int) -> list[int]:
    """Pixel counts of the masks pasted into ``arena`` by :func:`segrt.runtime.kernels.paste_masks`."""
    table = np.array([(size[0], size[1], *crop) for _, size, crop, _ in geometry], np.int64)
    offsets = np.array(ends, np.int64) - (table[:, 3] - table[:, 2]) * (table[:, 5] - table[:, 4])
    areas = np.empty(len(geometry), np.int64)
    widest = int((table[:, 5] - table[:, 4]).max())
    picks = np.arange(len(geometry), dtype=np.int64)
    th = np.float32(threshold)

    def paste_chunk(chunk: int, _worker: int) -> None:  # every chunks-th mask: similar mixes of sizes
        rows, cols, weights = _kernel_scratch(probs.shape[1], widest)
        kernels.paste_masks(probs, table, offsets, picks[chunk::chunks], th, arena, areas, rows, cols, weights)

    parallel.run_chunks(paste_chunk, chunks, workers)
    return areas.tolist()


def _kernel_scratch(m: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's scratch for :func:`segrt.runtime.kernels.paste_masks`, grown as needed, kept across frames."""
    scratch = getattr(_scratch, "kernel", None)
    if scratch is None or scratch[0].shape[0] != m or scratch[1].shape[0] < width:
        width = max(width, 2048)
        scratch = _scratch.kernel = (np.empty((m, width), np.float32), np.empty(width, np.int64),
                                     np.empty(width, np.float32))
    return scratch
