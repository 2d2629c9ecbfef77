"""Label tags ("name 0.87") of drawn instances: bitmaps made once and cached, kept in one buffer.

A tag is the name's bitmap and the score's side by side, each drawn once per colour (there are
few names and at most 101 score texts), so a new name-score pair costs one small copy, not a
text rasterisation. Every tag also lives in one flat buffer (the atlas), so that a frame's
tags can be pasted by one compiled call (:func:`segrt.runtime.kernels.paste_tags`) from a
table of (offset, height, width, x, y), instead of a Python slice copy each.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MAX_CACHED = 4096  # tags kept (a few KB each); the cache is emptied past this


class TagCache:
    """Tags on the colours ``colours`` (BGR tuples), cached by (name, score text, colour, font)."""

    def __init__(self, colours: Sequence[tuple[int, int, int]]) -> None:
        self._colours = list(colours)
        self._parts: dict[tuple, np.ndarray] = {}  # name or score text on a colour
        self._tags: dict[tuple, tuple[np.ndarray, int]] = {}  # whole tags and their offsets in the atlas
        self.atlas = np.empty(1 << 20, np.uint8)  # every cached tag's bytes, row after row
        self._used = 0

    def place(self, labels: Sequence[int], scores: Sequence[float], colour_index: Sequence[int],
              corners: np.ndarray, name_of: Callable[[int], str], font: tuple[float, int]) -> tuple[list, np.ndarray]:
        """Each box's tag above it (inside it where there is no room above): ``(tag, x, y)`` per box
        and the same as an (N, 5) int64 table of (atlas offset, height, width, x, y)."""
        placed, rows = [], []
        for label, score, ci, bx0, by0 in zip(labels, scores, colour_index, corners[:, 0].tolist(),
                                              corners[:, 1].tolist()):
            key = (name_of(label), f" {score:.2f}", ci, font)
            found = self._tags.get(key)
            tag, offset = found if found is not None else self._tag(key)
            th, tw = tag.shape[:2]
            x, y = max(bx0, 0), by0 - th if by0 - th >= 0 else max(by0, 0)
            placed.append((tag, x, y))
            rows.append((offset, th, tw, x, y))
        return placed, np.array(rows, np.int64).reshape(-1, 5)

    def _tag(self, key: tuple[str, str, int, tuple[float, int]]) -> tuple[np.ndarray, int]:
        """The tag for ``key`` = (name, score text, colour, font), made, cached and put in the atlas."""
        if len(self._tags) >= _MAX_CACHED:
            self._tags.clear()
            self._parts.clear()
            self._used = 0
        name, score, ci, font = key
        bitmap = np.hstack([self._part(name, ci, 2, font), self._part(score, ci, 0, font)])
        size, offset = bitmap.size, self._used
        if offset + size > self.atlas.size:  # grown: the tags made so far keep their offsets
            grown = np.empty(max(2 * self.atlas.size, offset + size), np.uint8)
            grown[:offset] = self.atlas[:offset]
            self.atlas = grown
        tag = self.atlas[offset:offset + size].reshape(bitmap.shape)
        tag[...] = bitmap
        self._used += size
        self._tags[key] = tag, offset
        return tag, offset

    def _part(self, text: str, ci: int, left: int, font: tuple[float, int]) -> np.ndarray:
        """``text`` on a solid tag of colour ``ci``, ``left`` pixels in and 2 to spare on the right; cached."""
        key = (text, ci, left, font)
        part = self._parts.get(key)
        if part is not None:
            return part
        # Every part gets the height of a reference string with the font's tallest and lowest
        # glyphs (OpenCV 5 measures the baseline of the string given), so the parts of a tag line up.
        font_scale, thickness = font
        tw = cv2.getTextSize(text, _FONT, font_scale, thickness)[0][0]
        (_, th), base = cv2.getTextSize("|Ag(0)", _FONT, font_scale, thickness)
        colour = self._colours[ci]
        part = np.empty((th + base + 5, left + tw + 2, 3), np.uint8)
        part[:] = colour
        ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
        cv2.putText(part, text, (left, th + 2), _FONT, font_scale, ink, thickness, cv2.LINE_AA)
        self._parts[key] = part
        return part
