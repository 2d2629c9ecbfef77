"""Compiled per-pixel loops (numba) for the instance paste and drawing, where OpenCV has no single call.

Optional: with ``numba`` installed (``pip install 'segrt[fast]'``) :func:`enabled` is True and
:mod:`segrt.runtime.instances` and :mod:`segrt.runtime.render_instances` use these loops; without
it (or with ``SEGRT_NO_JIT=1`` in the environment) they use their OpenCV code, which gives the
same masks and pictures (tested both ways). Every kernel releases the GIL (``nogil``), so the
threads of :mod:`segrt.runtime.parallel` run them in parallel, and allocates nothing: the caller
passes its buffers. Each is compiled on first use and cached on disk (numba's ``cache=True``:
next to this module, or in the user's cache directory where that is read-only), so only the
first run on a machine pays the compile (about a second per kernel).

Why loops: the paste's float resize, threshold and pixel count are three OpenCV passes over 12
Mpx of masks in a busy frame; one loop does all three per output row, while the row is in
cache, with the same arithmetic as ``cv2.resize(INTER_LINEAR)`` (half-pixel centres, clamped
at the edges).
"""
from __future__ import annotations

import os

import numpy as np

try:  # optional: the runtime stays light without it
    import numba
except ImportError:  # the old-library CI run has no numba: the OpenCV code runs there
    numba = None

_DISABLED = os.environ.get("SEGRT_NO_JIT", "").strip() not in ("", "0")


def enabled() -> bool:
    """Whether the compiled kernels are in use (numba importable and not switched off)."""
    return numba is not None and not _DISABLED


def _jit(fn):
    """``fn`` compiled (nogil, cached, no bounds checks), or ``fn`` itself without numba."""
    if numba is None:
        return fn
    return numba.njit(nogil=True, cache=True, boundscheck=False)(fn)


@_jit
def paste_masks(probs, geometry, offsets, picks, threshold, arena, areas, rows, cols, weights):
    """Paste masks ``picks`` (indices into ``probs`` (K, M, N) float32) into ``arena`` (flat uint8).

    ``geometry[k]`` = (w, h, row0, row1, col0, col1): box k's size in pixels and the rows and
    columns of it that lie in the frame. Mask k's cropped pixels, 0/1, row-major with a row
    length of col1 - col0, start at ``arena[offsets[k]]``; their count goes to ``areas[k]``.
    ``rows`` (M, >= widest crop) float32 and ``cols`` (>= widest crop) int64, ``weights``
    (>= widest crop) float32 are scratch. A pixel is set where the bilinear value is
    ``>= threshold``.
    """
    m_rows = probs.shape[1]
    n_cols = probs.shape[2]
    one = np.float32(1.0)
    for t in range(picks.shape[0]):
        k = picks[t]
        w, h = geometry[k, 0], geometry[k, 1]
        r0, r1, c0, c1 = geometry[k, 2], geometry[k, 3], geometry[k, 4], geometry[k, 5]
        cw = c1 - c0
        sx = n_cols / w
        sy = m_rows / h
        # each output column's left source column and weight (clamped at both edges)
        for j in range(cw):
            fx = (j + c0 + 0.5) * sx - 0.5
            if fx < 0.0:
                fx = 0.0
            x0 = int(fx)
            if x0 >= n_cols - 1:  # past the last centre: the last column alone
                cols[j] = n_cols - 1
                weights[j] = np.float32(0.0)
            else:
                cols[j] = x0
                weights[j] = np.float32(fx - x0)
        p = probs[k]
        # the M source rows resized across: M x cw, small, stays in cache
        last = n_cols - 1
        for i in range(m_rows):
            src = p[i]
            dst = rows[i]
            for j in range(cw):
                x0 = cols[j]
                x1 = x0 + 1 if x0 < last else x0
                wx = weights[j]
                dst[j] = src[x0] * (one - wx) + src[x1] * wx
        base = offsets[k]
        count = 0
        for r in range(r0, r1):
            fy = (r + 0.5) * sy - 0.5
            if fy < 0.0:
                fy = 0.0
            y0 = int(fy)
            if y0 >= m_rows - 1:
                y0 = m_rows - 1
                y1 = y0
                wy = np.float32(0.0)
            else:
                y1 = y0 + 1
                wy = np.float32(fy - y0)
            a = rows[y0]
            b = rows[y1]
            wa = one - wy
            out = arena[base + (r - r0) * cw: base + (r - r0 + 1) * cw]
            for j in range(cw):
                out[j] = np.uint8((a[j] * wa + b[j] * wy) >= threshold)
            c = 0
            for j in range(cw):
                c += out[j]
            count += c
        areas[k] = count


@_jit
def paint_id(ids, mask, rank):
    """``ids[i, j] = rank`` where ``mask[i, j]`` is nonzero (both 2-D, the same shape)."""
    for i in range(mask.shape[0]):
        row = ids[i]
        m = mask[i]
        for j in range(mask.shape[1]):
            row[j] = rank if m[j] else row[j]


@_jit
def box_outlines(canvas, boxes, colours, thickness):
    """Each box's outline, ``thickness`` nested one-pixel rectangles inside it, clipped to ``canvas``.

    ``boxes`` (N, 4) int64 are inclusive corners x0, y0, x1, y1 (x0 <= x1, y0 <= y1) and
    ``colours`` (N, 3) uint8, drawn in order (a later box over an earlier one): the pixels
    ``cv2.rectangle(canvas, (x0 + k, y0 + k), (x1 - k, y1 - k), colour, 1)`` draws for each k
    while the rectangle is not empty.
    """
    h, w = canvas.shape[0], canvas.shape[1]
    for n in range(boxes.shape[0]):
        bx0, by0, bx1, by1 = boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3]
        b, g, r = colours[n, 0], colours[n, 1], colours[n, 2]
        for k in range(thickness):
            x0, y0, x1, y1 = bx0 + k, by0 + k, bx1 - k, by1 - k
            if x0 > x1 or y0 > y1:
                break
            cx0, cx1 = max(x0, 0), min(x1, w - 1)
            cy0, cy1 = max(y0, 0), min(y1, h - 1)
            for y in (y0, y1):  # top and bottom rows
                if 0 <= y < h:
                    for x in range(cx0, cx1 + 1):
                        canvas[y, x, 0] = b
                        canvas[y, x, 1] = g
                        canvas[y, x, 2] = r
            for x in (x0, x1):  # left and right columns
                if 0 <= x < w:
                    for y in range(cy0, cy1 + 1):
                        canvas[y, x, 0] = b
                        canvas[y, x, 1] = g
                        canvas[y, x, 2] = r
