"""Instance segmentation post-processing (Mask R-CNN style outputs).

The graph returns boxes in model-input pixels and one low-resolution (28x28) mask
probability per detection, *not* pasted into the image (pasting is cheap on the CPU
and keeps the graph free of data-dependent shapes). Here each box is mapped back to
frame pixels through the :class:`~segrt.runtime.preprocess.Letterbox`, its mask
probability is resized to the box (bilinear, ``cv2.resize``) and thresholded at 0.5, as
torchvision's ``paste_masks_in_image`` defines it. A mask is kept box-local (``origin`` +
a small array), not as a full-frame image per instance.

All masks of a frame share one buffer (one allocation per frame, not one per instance), pasted
by the threads of :mod:`segrt.runtime.parallel`, and each mask's pixel count is taken while it
is in cache (``Instance.area``). With numba (``segrt[fast]``) one compiled loop per band of
frame rows resizes, thresholds and counts each mask row in one pass (the arithmetic of
``cv2.resize``, though not its SIMD rounding: a pixel whose value lies within float rounding
of the threshold may land on the other side, about 1 in a few Mpx) and records the frame's instance map on the way
(:attr:`InstanceColumns.id_map`, which the renderer draws from); without it each box is
resized into a per-thread float scratch buffer by ``cv2.resize`` and thresholded into its
mask. 8-bit probabilities would move the mask border by a pixel or two where a box is
upscaled 20x or more (IoU 0.989 measured on a cropped tall box), so the paste stays float.

:func:`instances_from_outputs` returns an :class:`InstanceList`: a plain list of
:class:`Instance` that also keeps their fields as arrays (:class:`InstanceColumns`), so that
drawing and statistics need no Python loop over the instances.
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
# Bands of equal work per thread, claimed by whichever thread is free: more bands cost more than they
# balance (each recomputes the column weights of the masks it cuts: 8 bands 1.9 ms, 4 bands 1.2).
_PASTE_BANDS_PER_THREAD = 2
_MAX_BOX_REACH = 16  # frame sides: a box coordinate farther out than this is malformed
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


@dataclass(frozen=True, eq=False)
class InstanceColumns:
    """The fields of a frame's instances as arrays, one row per instance in list order: what the
    renderer reads, without a Python loop over the instances.

    ``id_map``, made by the compiled paste on the way, is the frame's instance map: each pixel
    holds k + 1 for the most confident instance k (of the first 255) whose mask covers it, else 0.
    """

    labels: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float64
    boxes: np.ndarray  # (N, 4) float64, xyxy in frame pixels
    origins: np.ndarray  # (N, 2) int64, each mask's top-left frame pixel (x, y)
    shapes: np.ndarray  # (N, 2) int64, each mask's (rows, columns)
    areas: np.ndarray  # (N,) int64, each mask's pixels
    id_map: np.ndarray | None = None  # (h, w) uint8 of the frame: k + 1 where instance k (k < 255) is on top


class InstanceList(list):
    """A frame's instances, most confident first: a plain ``list`` of :class:`Instance`, which also
    keeps their :class:`InstanceColumns` (see :func:`instance_columns`)."""

    def __init__(self, items: Sequence[Instance], columns: InstanceColumns) -> None:
        super().__init__(items)
        self._columns = columns
        self._items = tuple(items)

    def recorded_columns(self) -> InstanceColumns | None:
        """The columns made with the list, or None when its items have changed since."""
        if len(self) != len(self._items) or any(a is not b for a, b in zip(self, self._items)):
            return None
        return self._columns


def instance_columns(instances: Sequence[Instance]) -> InstanceColumns:
    """The fields of ``instances`` as arrays: those recorded by the paste when the list is as it made
    it, else gathered from each instance (then with no instance map)."""
    if isinstance(instances, InstanceList):
        columns = instances.recorded_columns()
        if columns is not None:
            return columns
    n = len(instances)
    return InstanceColumns(
        labels=np.array([i.label for i in instances], np.int64).reshape(n),
        scores=np.array([i.score for i in instances], np.float64).reshape(n),
        boxes=np.array([i.box for i in instances], np.float64).reshape(n, 4),
        origins=np.array([i.origin for i in instances], np.int64).reshape(n, 2),
        shapes=np.array([i.mask.shape[:2] for i in instances], np.int64).reshape(n, 2),
        areas=np.array([i.area for i in instances], np.int64).reshape(n))


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
    table, _ = _paste_table(np.array([box_pixels(box)], np.int64), frame_size)
    if not len(table):
        return None
    x, y, w, h, r0, r1, c0, c1 = table[0].tolist()
    return (x, y), _paste_box(p, (w, h), (r0, r1, c0, c1), np.empty(w * h, np.uint8), float(threshold))


def _paste_table(pixels: np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For the rows of ``pixels`` (N x 4 whole-pixel boxes, :func:`box_pixels`) that overlap the
    frame: an (M, 8) int64 table of x, y (the clipped top-left frame pixel), w, h (the box's
    size), row0, row1, col0, col1 (the box-local rows and columns inside the frame), and the
    indices of those rows. All rows at once, in numpy.
    """
    fw, fh = frame_size
    x0, y0, x1, y1 = pixels.T
    cx0, cy0 = np.maximum(x0, 0), np.maximum(y0, 0)
    cx1, cy1 = np.minimum(x1, fw), np.minimum(y1, fh)
    inside = np.flatnonzero((cx1 > cx0) & (cy1 > cy0))
    table = np.stack([cx0, cy0, x1 - x0, y1 - y0, cy0 - y0, cy1 - y0, cx0 - x0, cx1 - x0], 1)[inside]
    return np.ascontiguousarray(table, np.int64), inside


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
                           names: Sequence[str] = INSTANCE_OUTPUTS) -> InstanceList:
    """Detections above ``score_threshold``, highest score first, with pasted masks in frame pixels
    (a list of :class:`Instance` that also keeps their :class:`InstanceColumns`).

    ``names`` are the output tensor names (the manifest's ``output.names``): boxes, labels,
    scores, masks and, for static-shape graphs, num_detections (rows past it are padding).
    Bundles made before the static contract have no num_detections and exactly K rows.
    Detections with a non-finite score or box, or a box reaching more than 16 frame sides out,
    are dropped; a non-finite mask probability reads as 0 (NaN, -inf) or 1 (+inf).
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
    # A box that is not finite, or reaches past _MAX_BOX_REACH frame sides, is not a detection (a
    # broken model or export): dropped like a low score, before any integer geometry is made of it.
    reach = _MAX_BOX_REACH * max(fw, fh)
    sane = np.all(np.abs(frame_boxes) <= reach, axis=1)  # False for NaN and inf too
    keep = np.flatnonzero((scores >= score_threshold) & sane)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if not len(keep):
        return _instance_list([], _no_columns())
    probs = np.asarray(masks[keep])
    if probs.ndim == 4 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim != 3:
        raise BackendError(f"instance masks have shape {np.shape(masks)}, expected (K,M,M) or (K,1,M,M)")
    # the geometry of every kept box at once (as box_pixels and a clip to the frame would give it)
    fb = frame_boxes[keep].astype(np.float64)
    pixels = np.floor(fb + 0.5).astype(np.int64)
    pixels[:, 2:] = np.maximum(pixels[:, 2:], pixels[:, :2] + 1)
    table, inside = _paste_table(pixels, letterbox.frame_size)
    if not len(inside):
        return _instance_list([], _no_columns())  # every box lies in the letterbox padding
    clipped = np.minimum(np.maximum(fb[inside], 0.0), np.array([fw, fh, fw, fh], np.float64))
    # Every mask of the frame lives in one buffer (one allocation, not one per instance); each
    # instance keeps a view of it: the box's rows and columns inside the frame, row after row.
    shapes = np.stack([table[:, 5] - table[:, 4], table[:, 7] - table[:, 6]], 1)
    sizes = shapes[:, 0] * shapes[:, 1]
    ends = np.cumsum(sizes)
    offsets = ends - sizes
    arena = np.empty(int(ends[-1]), np.uint8)
    probs = np.ascontiguousarray(probs[inside], dtype=np.float32)
    # probabilities out of a sigmoid lie in [0, 1]; a non-finite one reads as its limit (NaN as 0),
    # so that both paste implementations see the same finite numbers
    np.nan_to_num(probs, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    threshold = float(mask_threshold)
    workers = min(parallel.parts(), (int(ends[-1]) + _MIN_PART_PIXELS - 1) // _MIN_PART_PIXELS)
    id_map = None
    if kernels.enabled():
        areas, id_map = _paste_compiled(probs, table, offsets, arena, threshold, letterbox.frame_size, workers)
    else:
        chunks = min(len(inside), 4 * workers) if workers > 1 else 1
        areas = _paste_opencv(probs, table, offsets, arena, threshold, chunks, workers)
    masks = [arena[o:o + mh * mw].reshape(mh, mw) for o, (mh, mw) in zip(offsets.tolist(), shapes.tolist())]
    columns = InstanceColumns(labels=labels[keep][inside].astype(np.int64), scores=scores[keep][inside].astype(np.float64),
                              boxes=clipped, origins=np.ascontiguousarray(table[:, :2]), shapes=shapes, areas=areas,
                              id_map=id_map)
    return _instance_list(masks, columns)


def _instance_list(masks: list[np.ndarray], columns: InstanceColumns) -> InstanceList:
    """The :class:`Instance` objects of ``columns`` (their masks given), as an :class:`InstanceList`."""
    items = [Instance(label, score, tuple(box), (x, y), mask, mask_area=area)
             for label, score, box, (x, y), mask, area in zip(
                 columns.labels.tolist(), columns.scores.tolist(), columns.boxes.tolist(),
                 columns.origins.tolist(), masks, columns.areas.tolist())]
    return InstanceList(items, columns)


def _no_columns() -> InstanceColumns:
    """The columns of no instances."""
    empty = np.zeros(0, np.int64)
    return InstanceColumns(labels=empty, scores=np.zeros(0), boxes=np.zeros((0, 4)), origins=np.zeros((0, 2), np.int64),
                           shapes=np.zeros((0, 2), np.int64), areas=empty)


def _paste_opencv(probs: np.ndarray, table: np.ndarray, offsets: np.ndarray, arena: np.ndarray,
                  threshold: float, chunks: int, workers: int) -> np.ndarray:
    """Pixel counts of the masks pasted into ``arena`` by ``cv2.resize`` and a threshold per box."""
    jobs = [(probs[k], (w, h), (r0, r1, c0, c1), arena[o:o + (r1 - r0) * (c1 - c0)])
            for k, ((_, _, w, h, r0, r1, c0, c1), o) in enumerate(zip(table.tolist(), offsets.tolist()))]
    areas = np.zeros(len(jobs), np.int64)

    def paste_chunk(chunk: int, _worker: int) -> None:  # every chunks-th mask: similar mixes of sizes
        for k in range(chunk, len(jobs), chunks):
            areas[k] = cv2.countNonZero(_paste_box(*jobs[k], threshold))  # counted while the mask is in cache

    parallel.run_chunks(paste_chunk, chunks, workers)
    return areas


def _paste_compiled(probs: np.ndarray, table: np.ndarray, offsets: np.ndarray, arena: np.ndarray,
                    threshold: float, frame_size: tuple[int, int], workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts of the masks pasted into ``arena`` by :func:`segrt.runtime.kernels.paste_masks`, and
    the frame's id map (k + 1 where instance k, of the first 255, is the most confident there).

    The work is split by bands of frame rows (claimed by whichever thread is free), so that the
    threads write disjoint rows of the id map.
    """
    fw, fh = frame_size
    ids = np.zeros((fh, fw), np.uint8)
    chunks = _PASTE_BANDS_PER_THREAD * workers if workers > 1 else 1
    bands = _bands_of_equal_work(table, fh, chunks)
    areas = np.zeros((chunks, len(table)), np.int64)  # each band's counts, summed below
    widest = int((table[:, 7] - table[:, 6]).max())
    th = np.float32(threshold)

    def paste_band(chunk: int, _worker: int) -> None:
        rows, cols, weights = _kernel_scratch(probs.shape[1], widest)
        kernels.paste_masks(probs, table, offsets, th, arena, areas[chunk], rows, cols, weights, ids, bands[chunk])

    parallel.run_chunks(paste_band, chunks, workers)
    return areas.sum(0), ids


def _bands_of_equal_work(table: np.ndarray, height: int, n: int) -> list[np.ndarray]:
    """``n`` bands (row0, row1) of frame rows 0..height-1 with about the same mask pixels each
    (``table`` as :func:`_paste_table`), so that the threads pasting them finish together."""
    top, rows, width = table[:, 1], table[:, 5] - table[:, 4], table[:, 7] - table[:, 6]
    per_row = np.zeros(height + 1, np.int64)  # each row's mask pixels, as steps at the masks' ends
    np.add.at(per_row, top, width)
    np.add.at(per_row, top + rows, -width)
    done = np.cumsum(np.cumsum(per_row[:height]))  # pixels in rows 0..y
    cuts = np.searchsorted(done, done[-1] * np.arange(1, n) / n).tolist()
    edges = [0, *cuts, height]
    return [np.array(edges[c:c + 2], np.int64) for c in range(n)]


def _kernel_scratch(m: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's scratch for :func:`segrt.runtime.kernels.paste_masks`, grown as needed, kept across frames."""
    scratch = getattr(_scratch, "kernel", None)
    if scratch is None or scratch[0].shape[0] != m or scratch[1].shape[0] < width:
        width = max(width, 2048)
        scratch = _scratch.kernel = (np.empty((m, width), np.float32), np.empty(width, np.int64),
                                     np.empty(width, np.float32))
    return scratch
