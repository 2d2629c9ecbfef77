"""Instance fill and outlines through one id map, so the cost is one pass per mask plus a few per frame.

Each instance's box-local 0/1 mask is written into a frame-sized uint8 id map as
``max(ids, rank * mask)`` (rank = position in ascending score order, so the most confident
instance wins where they overlap). Then, over the rectangle the instances cover: one LUT turns
ids into colours (``applyColorMap`` with the instances' colours), one ``addWeighted`` tints the frame, background pixels are copied back, and
a morphological gradient of the id map (nonzero where a neighbour has another id) marks the
outlines, painted in each pixel's own instance colour. Per-instance Python work is two numpy
calls on the mask; nothing is allocated per frame once the geometry is known. At most 255
instances are painted (the 255 most confident); boxes and labels are the renderer's job.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from segrt.runtime.instances import Instance

MAX_PAINTED = 255  # ids fit a uint8 map; 0 is "no instance"


class InstancePainter:
    """Paints instance fills and outlines onto canvases of one frame size. One per renderer."""

    def __init__(self, colours: np.ndarray) -> None:
        self.colours = np.asarray(colours, np.uint8).reshape(-1, 3)
        self._size: tuple[int, int] | None = None
        self._lut = np.zeros((256, 1, 3), np.uint8)

    def _ensure(self, frame_size: tuple[int, int]) -> None:
        if self._size == frame_size:
            return
        self._size = frame_size
        w, h = frame_size
        self._ids = np.zeros((h, w), np.uint8)
        self._scratch = np.empty((h, w), np.uint8)
        self._edge = np.empty((h, w), np.uint8)
        self._col = np.empty((h, w, 3), np.uint8)
        self._fg = np.empty((h, w), np.uint8)

    def order(self, instances: Sequence[Instance]) -> list[int]:
        """Indices of the painted instances, lowest score first (the last one ends on top)."""
        ranked = sorted(range(len(instances)), key=lambda k: instances[k].score)
        return ranked[-MAX_PAINTED:]

    def paint(self, instances: Sequence[Instance], order: Sequence[int], frame: np.ndarray,
              canvases: Sequence[tuple[np.ndarray, bool]], alpha: float, thickness: int) -> None:
        """Fill and outline ``instances[order]`` on each ``(canvas, on_frame)``.

        ``on_frame`` canvases hold the frame and get a tint; the others get solid colours on
        what is already there (the mask view's black).
        """
        h, w = frame.shape[:2]
        self._ensure((w, h))
        if not order:
            return
        ids, lut = self._ids, self._lut
        x0, y0, x1, y1 = w, h, 0, 0
        for rank, j in enumerate(order, start=1):
            inst = instances[j]
            x, y = inst.origin
            mh, mw = inst.mask.shape
            mh, mw = min(mh, h - y), min(mw, w - x)
            if mh <= 0 or mw <= 0:
                continue
            scratch = self._scratch[:mh, :mw]
            np.multiply(inst.mask[:mh, :mw], rank, out=scratch)
            region = ids[y:y + mh, x:x + mw]
            cv2.max(region, scratch, dst=region)  # in place on the view; ~3x numpy's strided maximum
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x + mw), max(y1, y + mh)
            lut[rank, 0] = self.colours[j % len(self.colours)]
        if x1 <= x0 or y1 <= y0:
            return
        pad = thickness  # outlines reach just past the masks
        x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
        sub_ids = ids[y0:y1, x0:x1]
        col = self._col[y0:y1, x0:x1]
        cv2.applyColorMap(sub_ids, lut, dst=col)  # the LUT as a colour map: id 0 maps to black
        background = self._scratch[y0:y1, x0:x1]
        cv2.compare(sub_ids, 0, cv2.CMP_EQ, dst=background)
        edge = self._edge[y0:y1, x0:x1]
        k = max(3, 2 * thickness - 1)
        cv2.morphologyEx(sub_ids, cv2.MORPH_GRADIENT, np.ones((k, k), np.uint8), dst=edge)
        cv2.subtract(edge, background, dst=edge)  # outlines sit on the instance side of each boundary
        foreground = cv2.bitwise_not(background, dst=self._fg[y0:y1, x0:x1])
        for canvas, on_frame in canvases:
            out = canvas[y0:y1, x0:x1]
            if on_frame:
                src = frame[y0:y1, x0:x1]
                cv2.addWeighted(src, 1.0 - alpha, col, alpha, 0.0, dst=out)
                cv2.copyTo(src, background, out)
            else:
                cv2.copyTo(col, foreground, out)
            cv2.copyTo(col, edge, out)
        ids[y0:y1, x0:x1] = 0  # ready for the next frame without a full clear
