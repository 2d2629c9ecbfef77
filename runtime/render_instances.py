"""Instance fills, outlines, boxes and label tags, at a cost of a few passes per frame.

Everything is drawn from an id map of the frame (which instance is on top at each pixel, 0 for
none). The compiled paste records one on the way (:attr:`InstanceColumns.id_map`, id k + 1 for
instance k); otherwise each mask sets its rank in this painter's own map (rank = position in
ascending score order, so the most confident instance is written last and wins where they
overlap: the map equals ``max(ids, rank * mask)`` over the instances). Then, over the
rectangle the masks cover only: a 32-bit LUT turns ids into colours, a morphological gradient
of the map (nonzero where a neighbour has another id) marks the outlines, and each pixel
becomes the frame (no instance), its instance's colour (outline) or the two blended. Compiled,
that is one pass over per-byte weights; else ``addWeighted`` and two masked copies. Pixels
outside the rectangle are the frame (or black), copied once. Nothing frame-sized is
allocated per frame.

Boxes are ``thickness`` nested one-pixel rectangles inside the box, drawn lowest score
first; the label tags ("name 0.87") go over all of them. Tags are cached bitmaps, each name
and score drawn once per colour: a tag costs a slice copy, not a text rasterisation.

Both implementations (numba's loops, ``segrt[fast]``, :mod:`segrt.runtime.kernels`, and plain
OpenCV) draw the same picture from the same masks (tested to the byte; their pastes can differ
at a pixel whose value lies within float rounding of the threshold). Threads (:mod:`segrt.runtime.parallel`;
OpenCV calls and the compiled loops release the GIL): without an id map from the paste, each
paints every n-th mask into a map of its own, merged by max; then the fills and outlines (and,
compiled, the box outlines) go in bands of rows claimed by whichever thread is free (outlines
read rows beyond their band, so they start once the whole id map is final). Tags stay on the
calling thread. The picture does not depend on the number of threads (tested). At most 255
instances are painted (the 255 most confident).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from segrt.runtime import kernels, parallel
from segrt.runtime.instance_tags import TagCache
from segrt.runtime.instances import Instance, InstanceColumns

MAX_PAINTED = 255  # ids fit a uint8 map; 0 is "no instance"
_MIN_BAND_PIXELS = 150_000  # below this many pixels per band, threads cost more than they save
_CHUNKS_PER_THREAD = 4

Rect = tuple[int, int, int, int]


def outside(rect: Rect | None, size: tuple[int, int]) -> Iterator[tuple[slice, slice]]:
    """The (rows, cols) slices of the up to four strips of a ``size`` (w, h) image around ``rect``."""
    w, h = size
    if rect is None:
        yield slice(0, h), slice(0, w)
        return
    x0, y0, x1, y1 = rect
    for rows, cols in ((slice(0, y0), slice(0, w)), (slice(y1, h), slice(0, w)),
                       (slice(y0, y1), slice(0, x0)), (slice(y0, y1), slice(x1, w))):
        if rows.stop > rows.start and cols.stop > cols.start:
            yield rows, cols


class InstancePainter:
    """Draws instances onto canvases of one frame size. One per renderer (not shared between threads)."""

    def __init__(self, colours: np.ndarray) -> None:
        self.colours = np.asarray(colours, np.uint8).reshape(-1, 3)
        self._colour_tuples = [tuple(int(v) for v in c) for c in self.colours]
        self._size: tuple[int, int] | None = None
        packed = np.zeros((len(self.colours), 4), np.uint8)
        packed[:, :3] = self.colours
        self._packed_colours = packed.view(np.int32)[:, 0].copy()  # B, G, R, 0 as one int32 (native order)
        self._lut = np.zeros(256, np.int32)  # id -> packed colour; id 0 is black
        self._tags = TagCache(self._colour_tuples)
        self._scratch: dict[int, dict[str, np.ndarray]] = {}  # per worker: a band's colours, weights, outlines

    def _ensure(self, frame_size: tuple[int, int]) -> None:
        if self._size != frame_size:
            self._size = frame_size
            w, h = frame_size
            self._ids = np.zeros((h, w), np.uint8)
            self._plane = np.empty((h, w), np.uint8)  # rank fills
            self._spare_ids: list[np.ndarray] = []  # more threads' id maps and rank fills
            self._spare_planes: list[np.ndarray] = []

    def order(self, columns: InstanceColumns) -> np.ndarray:
        """Indices of the painted instances (the 255 most confident), lowest score first: the last
        one ends on top; of equal scores, the one first in the list."""
        return np.argsort(-columns.scores, kind="stable")[:MAX_PAINTED][::-1]

    def colour(self, j: int) -> tuple[int, int, int]:
        """The colour of ``instances[j]`` (BGR)."""
        return self._colour_tuples[j % len(self.colours)]

    def draw(self, instances: Sequence[Instance], columns: InstanceColumns, order: np.ndarray, frame: np.ndarray,
             canvases: Sequence[tuple[np.ndarray, bool]], alpha: float, thickness: int,
             name_of: Callable[[int], str] | None = None, font: tuple[float, int] = (0.5, 1)) -> Rect | None:
        """Draw ``instances[order]`` over the whole of each ``(canvas, on_frame)``; returns the filled rectangle.

        ``columns`` are the instances' fields as arrays (:func:`~segrt.runtime.instances.instance_columns`).
        ``on_frame`` canvases get the frame, tinted under the masks; the others get solid
        colours on black. With ``name_of`` (label -> class name), each instance also gets its
        box and a tag "name score" (``font`` = Hershey scale and thickness). Outlines and
        boxes are ``thickness`` pixels. The returned (x0, y0, x1, y1) bounds the fills and
        outlines (None: there were none).
        """
        h, w = frame.shape[:2]
        order = np.asarray(order, np.int64)
        ranks = np.arange(1, len(order) + 1)
        # the paste's instance map (id k + 1 for instance k, the top one) when it has one for this
        # frame; else this painter's own map of ranks
        ids = columns.id_map if columns.id_map is not None and columns.id_map.shape == (h, w) else None
        self._lut[order + 1 if ids is not None else ranks] = self._packed_colours[order % len(self.colours)]
        # each mask cut to the frame; those left empty are not painted
        x, y = columns.origins[order].T
        rows = np.minimum(columns.shapes[order, 0], h - y)
        cols = np.minimum(columns.shapes[order, 1], w - x)
        inside = np.flatnonzero((rows > 0) & (cols > 0))
        rect = None
        if len(inside):  # outlines reach just past the masks
            x0, y0 = int(x[inside].min()), int(y[inside].min())
            x1, y1 = int((x + cols)[inside].max()), int((y + rows)[inside].max())
            rect = max(0, x0 - thickness), max(0, y0 - thickness), min(w, x1 + thickness), min(h, y1 + thickness)
        boxes = self._boxes(columns, order) if name_of is not None and len(order) else None
        n = max(1, min(parallel.parts(), h * w // _MIN_BAND_PIXELS))
        self._ensure((w, h))
        if ids is None and rect is not None:
            placed = np.stack([rows, cols, x, y, ranks], 1)[inside]  # (rows, cols, x, y, rank) per painted mask
            pixels = int((placed[:, 0] * placed[:, 1]).sum())
            self._paint_ids(instances, order[inside], placed, rect, max(1, min(n, pixels // _MIN_BAND_PIXELS)))
        # bands of rows, claimed by whichever thread is free
        m = _CHUNKS_PER_THREAD * n if n > 1 else 1
        chunks = [(h * c // m, h * (c + 1) // m) for c in range(m)]
        # compiled, each band also gets its rows of the box outlines, over its fills
        outlines = (boxes[0], self.colours[boxes[1]]) if boxes is not None and kernels.enabled() else None
        ids_map = self._ids if ids is None else ids
        # the tags (Python) are placed by this thread while the others have started on the bands
        tags: list = []
        place = None if boxes is None else (lambda: tags.append(self._place_tags(columns, order, boxes, name_of, font)))
        parallel.run_chunks(lambda c, b: self._fill_band(frame, ids_map, canvases, alpha, thickness, rect, chunks[c],
                                                         b, outlines), m, n, first=place)
        if boxes is not None:  # on top of every fill
            self._draw_boxes(canvases, thickness, boxes, tags[0], outlines is None)
        if ids is None and rect is not None:
            self._ids[rect[1]:rect[3], rect[0]:rect[2]] = 0  # ready for the next frame without a full clear
        return rect

    def _paint_ids(self, instances: Sequence[Instance], painted: np.ndarray, placed: np.ndarray, rect: Rect,
                   n: int) -> None:
        """The id map: each mask ``instances[painted[t]]``, cut to ``placed[t]`` = (rows, cols, x, y,
        rank), sets its rank, in ascending rank (later ranks overwrite earlier ones).

        Thread ``k`` of ``n`` paints every n-th mask into a map of its own, and the maps are
        merged by ``cv2.max``. Any split gives the same map, max(ids, rank * mask) over all masks.
        (The compiled paste makes its own map on the way: :attr:`InstanceColumns.id_map`.)
        """
        x0, y0, x1, y1 = rect
        while len(self._spare_ids) < n - 1:
            self._spare_ids.append(np.zeros_like(self._ids))
            self._spare_planes.append(np.empty_like(self._plane))
        maps = [self._ids, *self._spare_ids[:n - 1]]
        planes = [self._plane, *self._spare_planes[:n - 1]]
        masks = [(instances[j].mask, *p) for j, p in zip(painted.tolist(), placed.tolist())]

        def paint(k: int) -> None:
            ids, plane = maps[k], planes[k]
            for mask, mh, mw, x, y, rank in masks[k::n]:
                rank_plane = plane[:mh, :mw]
                rank_plane.fill(rank)
                cv2.copyTo(rank_plane, mask[:mh, :mw], ids[y:y + mh, x:x + mw])

        parallel.run_parts(paint, n)
        merged = self._ids[y0:y1, x0:x1]
        for spare in maps[1:]:
            cv2.max(merged, spare[y0:y1, x0:x1], dst=merged)
            spare[y0:y1, x0:x1] = 0  # ready for the next frame

    def _fill_band(self, frame: np.ndarray, ids: np.ndarray, canvases: Sequence[tuple[np.ndarray, bool]], alpha: float,
                   thickness: int, rect: Rect | None, band: tuple[int, int], b: int,
                   outlines: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Rows ``band`` of every canvas: frame or black, then fills and outlines (worker ``b``), then
        with ``outlines`` (corners, colours) these rows of the box outlines (compiled)."""
        r0, r1 = band
        h, w = frame.shape[:2]
        for canvas, on_frame in canvases:  # what the masks do not cover: the frame, or black
            for rows, cols in outside(rect, (w, h)):
                a, z = max(rows.start, r0), min(rows.stop, r1)
                if z > a:
                    if on_frame:
                        np.copyto(canvas[a:z, cols], frame[a:z, cols])
                    else:
                        canvas[a:z, cols] = 0
        if rect is not None:
            a, z = _rows(band, rect)
            if z > a:
                self._colour_rows(frame, ids, canvases, alpha, thickness, rect, (a, z), b)
        if outlines is not None:
            for canvas, _ in canvases:
                kernels.box_outlines(canvas, *outlines, thickness, r0, r1)

    def _draw_boxes(self, canvases: Sequence[tuple[np.ndarray, bool]], thickness: int,
                    boxes: tuple[np.ndarray, np.ndarray], tags: tuple[list, np.ndarray], outlines: bool) -> None:
        """Box outlines (with ``outlines``; else they are drawn), lowest score first, then the tags
        (:meth:`TagCache.place`) over them, on every canvas."""
        corners, colour_index = boxes
        for canvas, _ in canvases:
            h, w = canvas.shape[:2]
            if outlines:
                for (bx0, by0, bx1, by1), ci in zip(corners.tolist(), colour_index.tolist()):
                    for k in range(thickness):
                        if bx0 + k > bx1 - k or by0 + k > by1 - k:
                            break
                        cv2.rectangle(canvas, (bx0 + k, by0 + k), (bx1 - k, by1 - k), self._colour_tuples[ci], 1)
            placed, table = tags
            rows = _byte_rows(canvas) if kernels.enabled() else None
            if rows is not None:
                kernels.paste_tags(rows, self._tags.atlas, table)
                continue
            for tag, x_tag, y_tag in placed:
                if x_tag < w and y_tag < h:  # the tag clipped to the canvas (x_tag, y_tag >= 0)
                    th, tw = tag.shape[:2]
                    canvas[y_tag:y_tag + th, x_tag:x_tag + tw] = tag[:h - y_tag, :w - x_tag]

    def _colour_rows(self, frame: np.ndarray, ids: np.ndarray, canvases: Sequence[tuple[np.ndarray, bool]], alpha: float,
                     thickness: int, rect: Rect, rows: tuple[int, int], b: int) -> None:
        """Rows ``rows`` of ``rect`` on every canvas, from the finished id map ``ids``."""
        x0, y0, x1, y1 = rect
        r0, r1 = rows
        sub_ids = ids[r0:r1, x0:x1]
        rows, width = r1 - r0, x1 - x0
        # id -> colour: one 32-bit lookup per pixel, then the 4th byte dropped (half the cost of a
        # 3-channel lookup such as applyColorMap: 0.7 vs 1.24 ms for a 1080p frame on one core)
        packed = self._band(b, "packed", (rows, width), np.int32)
        col = self._band(b, "colours", (rows, width, 3), np.uint8)
        cv2.LUT(sub_ids, self._lut, dst=packed)
        cv2.cvtColor(packed.view(np.uint8).reshape(rows, width, 4), cv2.COLOR_BGRA2BGR, dst=col)
        background = edge = weights = None
        compiled = kernels.enabled()
        if any(on_frame for _, on_frame in canvases):  # the mask view needs neither
            # the gradient of these rows plus k // 2 either side (inside the rectangle), so that
            # the rows at the band's edges see their true neighbours
            k = max(3, 2 * thickness - 1)
            a, z = max(y0, r0 - k // 2), min(y1, r1 + k // 2)
            halo = self._band(b, "edges", (z - a, width), np.uint8)
            cv2.morphologyEx(ids[a:z, x0:x1], cv2.MORPH_GRADIENT, _square(k), dst=halo)
            edge = halo[r0 - a:r1 - a]
            background = self._band(b, "background", (rows, width), np.uint8)
            if compiled:  # per pixel: frame, tint or outline, as one weight per byte
                kernels.fill_weights(sub_ids, edge, background, np.uint8(128))
                weights = self._band(b, "weights", (rows, width, 3), np.uint8)
                cv2.cvtColor(background, cv2.COLOR_GRAY2BGR, dst=weights)
            else:
                cv2.compare(sub_ids, 0, cv2.CMP_EQ, dst=background)
                cv2.subtract(edge, background, dst=edge)  # outlines sit on the instance side of each boundary
        for canvas, on_frame in canvases:
            out = canvas[r0:r1, x0:x1]
            if not on_frame:
                np.copyto(out, col)  # id 0 maps to black: the colour map is the mask view, outlines included
                continue
            src = frame[r0:r1, x0:x1]
            rows = [_byte_rows(image) for image in (src, col, weights, out)] if compiled else [None]
            if all(r is not None for r in rows):
                kernels.blend_rows(*rows, np.float32(alpha))
                continue
            if compiled:  # a strided frame or canvas: the OpenCV calls need the mask and outlines as such
                cv2.compare(sub_ids, 0, cv2.CMP_EQ, dst=background)
                cv2.subtract(edge, background, dst=edge)
            cv2.addWeighted(src, 1.0 - alpha, col, alpha, 0.0, dst=out)
            cv2.copyTo(src, background, out)
            cv2.copyTo(col, edge, out)

    def _band(self, worker: int, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """Worker ``worker``'s scratch ``name`` as a ``shape`` array: band-sized, not frame-sized, so
        that a band's passes stay in cache; grown when a band needs more, kept across frames."""
        buffers = self._scratch.setdefault(worker, {})
        size = math.prod(shape)
        buffer = buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = buffers[name] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)

    def _boxes(self, columns: InstanceColumns, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each box, lowest score first: inclusive corners (N x 4: x0, y0, x1, y1) and colour indices (N)."""
        corners = np.rint(columns.boxes[order]).astype(np.int64)  # half to even, as round()
        corners[:, 2:] = np.maximum(corners[:, :2], corners[:, 2:] - 1)
        return corners, order % len(self.colours)

    def _place_tags(self, columns: InstanceColumns, order: np.ndarray, boxes: tuple[np.ndarray, np.ndarray],
                    name_of: Callable[[int], str], font: tuple[float, int]) -> tuple[list, np.ndarray]:
        """Each box's tag and where it goes (:meth:`TagCache.place`)."""
        return self._tags.place(columns.labels[order].tolist(), columns.scores[order].tolist(),
                                boxes[1].tolist(), boxes[0], name_of, font)


@functools.lru_cache(maxsize=8)
def _square(k: int) -> np.ndarray:
    """The k x k structuring element of the outlines, made once per size (not per band and frame)."""
    return np.ones((k, k), np.uint8)


def _byte_rows(image: np.ndarray) -> np.ndarray | None:
    """A (h, w, 3) uint8 image as (h, 3w) rows of bytes, the same memory; None when its rows are
    not contiguous (a caller's strided ``out``)."""
    h, w, c = image.shape
    if image.strides[1:] != (c, 1):
        return None
    return image.reshape(h, w * c)  # a view: each row's bytes are contiguous (20x cheaper than as_strided)


def _rows(band: tuple[int, int], rect: Rect) -> tuple[int, int]:
    """The rows of ``band`` inside ``rect`` (empty when start >= stop)."""
    return max(band[0], rect[1]), min(band[1], rect[3])
