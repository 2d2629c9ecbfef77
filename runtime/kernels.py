"""Compiled per-pixel loops (numba) for the instance paste and drawing, where OpenCV has no single call.

Optional: with ``numba`` installed (``pip install 'segrt[fast]'``) :func:`enabled` is True and
:mod:`segrt.runtime.instances` and :mod:`segrt.runtime.render_instances` use these loops; without
it (or with ``SEGRT_NO_JIT=1`` in the environment) they use their OpenCV code, which gives the
same masks and pictures but for rare pixels whose interpolated mask value lies within float
rounding of the threshold (equal to the byte on the test scenes; 1 pixel of a 1280x720 real photo
differed). Every kernel releases the GIL (``nogil``), so the
threads of :mod:`segrt.runtime.parallel` run them in parallel, and allocates nothing: the caller
passes its buffers.

Each kernel has one signature (views of any layout where callers pass views), compiled on its
first call or by :func:`warm_up` and cached on disk (numba's ``cache=True``: next to this module,
or in the user's cache directory where that is read-only). So a machine compiles each kernel
once, about a second each, and a stream never stalls mid-way to compile a variant for a new
array layout (numba would otherwise compile one per layout it meets, e.g. the first time the
masks span the frame's whole width). The renderer of an instance bundle warms up when made.

Why loops: the paste's float resize, threshold and pixel count are three OpenCV passes over 12
Mpx of masks in a busy frame; one loop does all three per output row, while the row is in
cache, with the same arithmetic as ``cv2.resize(INTER_LINEAR)`` (half-pixel centres, clamped
at the edges).
"""
from __future__ import annotations

import functools
import os
import threading
from types import ModuleType
from typing import Callable

import numpy as np

from segrt.errors import BackendError

_DISABLED = os.environ.get("SEGRT_NO_JIT", "").strip() not in ("", "0")
_compile_lock = threading.Lock()
_kernels: list[_Kernel] = []
_numba: ModuleType | None = None  # imported on first need: it adds ~0.15 s to every import of the runtime
_numba_missing = False


def _load_numba() -> ModuleType | None:
    """numba, imported once, or None where it is not installed (the OpenCV code runs instead)."""
    global _numba, _numba_missing
    if _numba is None and not _numba_missing:
        with _compile_lock:
            if _numba is None and not _numba_missing:
                try:
                    import numba
                except ImportError:
                    _numba_missing = True
                else:
                    _numba = numba
    return _numba


def enabled() -> bool:
    """Whether the compiled kernels are in use (numba importable and not switched off)."""
    return not _DISABLED and (_numba is not None or _load_numba() is not None)


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel now, not on its first frame."""
    if enabled():
        for kernel in _kernels:
            kernel.compiled()


class _Kernel:
    """``fn`` compiled by numba for the one signature ``signature(numba.types)`` gives, on first use."""

    def __init__(self, fn: Callable, signature: Callable[[ModuleType], object]) -> None:
        self._fn, self._signature, self._compiled = fn, signature, None
        functools.update_wrapper(self, fn)
        _kernels.append(self)

    def compiled(self) -> Callable:
        if self._compiled is None:
            numba = _load_numba()
            if numba is None:
                raise BackendError("the compiled kernels need numba", hint="pip install 'segrt[fast]'")
            with _compile_lock:  # two threads' first frames compile it once
                if self._compiled is None:
                    self._compiled = self._compile(numba)
        return self._compiled

    def _compile(self, numba: ModuleType) -> Callable:
        options = {"nogil": True, "boundscheck": False}
        signature = self._signature(numba.types)
        try:
            return numba.njit(signature, cache=True, **options)(self._fn)
        except RuntimeError as exc:  # no writable cache directory (a read-only install, no home directory)
            if "cannot cache" not in str(exc):
                raise
            return numba.njit(signature, cache=False, **options)(self._fn)

    def __call__(self, *args):
        return (self._compiled or self.compiled())(*args)


def _jit(signature: Callable[[ModuleType], object]) -> Callable[[Callable], _Kernel]:
    """A kernel of one signature: a function of ``numba.types``, called when it is compiled."""
    def wrap(fn: Callable) -> _Kernel:
        return _Kernel(fn, signature)
    return wrap


def _c(nt: ModuleType, dtype: str, ndim: int):
    return nt.Array(getattr(nt, dtype), ndim, "C")


def _any(nt: ModuleType, dtype: str, ndim: int):  # a view: any strides
    return nt.Array(getattr(nt, dtype), ndim, "A")


@_jit(lambda nt: nt.void(_c(nt, "float32", 3), _c(nt, "int64", 2), _c(nt, "int64", 1), nt.float32,
                         _c(nt, "uint8", 1), _c(nt, "int64", 1), _c(nt, "float32", 2), _c(nt, "int64", 1),
                         _c(nt, "float32", 1), _c(nt, "uint8", 2), _c(nt, "int64", 1)))
def paste_masks(probs, geometry, offsets, threshold, arena, areas, rows, cols, weights, ids, band):
    """Paste the rows of every mask that fall in frame rows ``band`` (row0, row1) into ``arena``
    (flat uint8), and paint them into the id map ``ids``.

    ``probs`` (K, M, N) float32 are the low-resolution probabilities. ``geometry[k]`` = (x, y,
    w, h, row0, row1, col0, col1): the clipped top-left frame pixel, box k's size in pixels and
    the rows and columns of the box that lie in the frame. Mask k's cropped pixels, 0/1,
    row-major with a row length of col1 - col0, start at ``arena[offsets[k]]``; a pixel is set
    where the bilinear value (as ``cv2.resize(INTER_LINEAR)``: half-pixel centres, clamped at
    the edges, across then down) is ``>= threshold``. This band's count of each mask's pixels is
    added to ``areas[k]``. ``ids`` (frame-sized uint8, or 0 x 0 for none) gets k + 1 where mask
    k is set, for k < 255, the lowest k on top (masks go from the last to the first). ``rows``
    (M, >= widest crop) float32, ``cols`` (>= widest crop) int64 and ``weights`` (>= widest
    crop) float32 are scratch. Bands of rows pasted by different threads share nothing.
    """
    m_rows = probs.shape[1]
    n_cols = probs.shape[2]
    one = np.float32(1.0)
    paint = ids.shape[0] > 0
    for k in range(probs.shape[0] - 1, -1, -1):
        x, y, w, h = geometry[k, 0], geometry[k, 1], geometry[k, 2], geometry[k, 3]
        r0, c0, c1 = geometry[k, 4], geometry[k, 6], geometry[k, 7]
        first, last = max(band[0] - y, 0), min(band[1] - y, geometry[k, 5] - r0)  # mask rows in the band
        if first >= last:
            continue
        cw = c1 - c0
        sx = n_cols / w
        sy = m_rows / h
        for j in range(cw):  # each output column's left source column and weight (clamped at both edges)
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
        # the source rows these output rows read, resized across (small, stays in cache)
        top = min(int(max((r0 + first + 0.5) * sy - 0.5, 0.0)), m_rows - 1)
        bottom = min(int(max((r0 + last - 0.5) * sy - 0.5, 0.0)) + 1, m_rows - 1)
        p = probs[k]
        last_col = n_cols - 1
        for i in range(top, bottom + 1):
            src = p[i]
            dst = rows[i]
            for j in range(cw):
                x0 = cols[j]
                x1 = x0 + 1 if x0 < last_col else x0
                wx = weights[j]
                dst[j] = src[x0] * (one - wx) + src[x1] * wx
        painted = paint and k < 255
        label = np.uint8(k + 1 if k < 255 else 0)
        for i in range(first, last):
            fy = (r0 + i + 0.5) * sy - 0.5
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
            start = offsets[k] + i * cw
            out = arena[start:start + cw]
            for j in range(cw):
                out[j] = np.uint8((a[j] * wa + b[j] * wy) >= threshold)
            if painted:
                dst_ids = ids[y + i, x:x + cw]
                for j in range(cw):
                    dst_ids[j] = label if out[j] else dst_ids[j]
        block = arena[offsets[k] + first * cw:offsets[k] + last * cw]  # this band's rows of the mask, counted
        count = 0  # in one loop (a loop per row costs more than its pixels on narrow masks)
        for j in range(block.shape[0]):
            count += block[j]
        areas[k] += count


@_jit(lambda nt: nt.void(_any(nt, "uint8", 3), _c(nt, "int64", 2), _c(nt, "uint8", 2), nt.int64, nt.int64, nt.int64))
def box_outlines(canvas, boxes, colours, thickness, row0, row1):
    """Each box's outline, ``thickness`` nested one-pixel rectangles inside it, clipped to ``canvas``
    and to its rows ``row0 .. row1 - 1`` (bands drawn by different threads share nothing).

    ``boxes`` (N, 4) int64 are inclusive corners x0, y0, x1, y1 (x0 <= x1, y0 <= y1) and
    ``colours`` (N, 3) uint8, drawn in order (a later box over an earlier one): the pixels
    ``cv2.rectangle(canvas, (x0 + k, y0 + k), (x1 - k, y1 - k), colour, 1)`` draws for each k
    while the rectangle is not empty, which are the box's pixels less than ``thickness`` from
    its edge. Drawn row by row: whole rows near the top and bottom, two strips between.
    """
    h, w = canvas.shape[0], canvas.shape[1]
    for n in range(boxes.shape[0]):
        bx0, by0, bx1, by1 = boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3]
        b, g, r = colours[n, 0], colours[n, 1], colours[n, 2]
        left, right = max(bx0, 0), min(bx1, w - 1)
        inner_left, inner_right = min(bx0 + thickness - 1, right), max(bx1 - thickness + 1, left)
        for y in range(max(by0, 0, row0), min(by1, h - 1, row1 - 1) + 1):
            row = canvas[y]
            if min(y - by0, by1 - y) < thickness:
                spans = ((left, right + 1), (0, 0))
            else:
                spans = ((left, inner_left + 1), (max(inner_right, inner_left + 1), right + 1))
            for start, stop in spans:
                for x in range(start, stop):
                    row[x, 0] = b
                    row[x, 1] = g
                    row[x, 2] = r


@_jit(lambda nt: nt.void(_any(nt, "uint8", 2), _c(nt, "uint8", 1), _c(nt, "int64", 2)))
def paste_tags(canvas, atlas, table):
    """Copy tags into ``canvas`` (rows of 3 w bytes: a BGR image's rows), in order, clipped to it:
    ``table[t]`` = (offset, height, width, x, y), tag t being ``height`` rows of ``width`` BGR
    pixels in ``atlas`` from ``offset``, placed with its top-left at (x, y) (x, y >= 0)."""
    h, w = canvas.shape[0], canvas.shape[1] // 3
    for t in range(table.shape[0]):
        offset, th, tw, x, y = table[t, 0], table[t, 1], table[t, 2], table[t, 3], table[t, 4]
        n = 3 * min(tw, w - x)
        for i in range(min(th, h - y)):
            src = atlas[offset + 3 * i * tw:offset + 3 * i * tw + n]
            dst = canvas[y + i, 3 * x:3 * x + n]
            for j in range(n):
                dst[j] = src[j]


@_jit(lambda nt: nt.void(_any(nt, "uint8", 2), _any(nt, "uint8", 2), _any(nt, "uint8", 2), nt.uint8))
def fill_weights(ids, edges, out, tint):
    """Per pixel (2-D uint8, one shape): 0 where ``ids`` is 0 (no instance), 255 on an outline
    (``edges`` nonzero), else ``tint`` (any other value): what :func:`blend_rows` does with it."""
    for y in range(ids.shape[0]):
        i = ids[y]
        e = edges[y]
        o = out[y]
        for x in range(ids.shape[1]):
            o[x] = np.uint8(0) if i[x] == 0 else (np.uint8(255) if e[x] != 0 else tint)


@_jit(lambda nt: nt.void(_any(nt, "uint8", 2), _any(nt, "uint8", 2), _any(nt, "uint8", 2), _any(nt, "uint8", 2),
                         nt.float32))
def blend_rows(frame, colours, weights, out, alpha):
    """Rows of interleaved bytes (2-D uint8, one shape): ``out`` is ``frame`` where ``weights`` is
    0, ``colours`` where it is 255, else ``frame * (1 - alpha) + colours * alpha`` rounded to
    the nearest (ties to even) as ``cv2.addWeighted`` computes it in float32 (bytes may differ
    by one where its SIMD code fuses the multiply-add)."""
    beta = np.float32(1.0) - alpha
    for y in range(frame.shape[0]):
        f = frame[y]
        c = colours[y]
        w = weights[y]
        o = out[y]
        for k in range(f.shape[0]):
            tinted = np.uint8(np.rint(np.float32(f[k]) * beta + np.float32(c[k]) * alpha))
            o[k] = f[k] if w[k] == 0 else (c[k] if w[k] == 255 else tinted)
