"""Tile several streams' rendered frames into one mosaic image (a grid, row by row)."""
from __future__ import annotations

import math

import cv2
import numpy as np


class Mosaic:
    """A ``cols x rows`` grid of ``cell`` (w, h) tiles; buffers allocated once."""

    def __init__(self, streams: int, frame_size: tuple[int, int]) -> None:
        self.cols = math.ceil(math.sqrt(streams))
        self.rows = math.ceil(streams / self.cols)
        w, h = frame_size
        # About one stream's size in all: each tile is the frame scaled by 1/cols (even sizes for video codecs).
        self.cell = (max(2, (w // self.cols) & ~1), max(2, (h // self.cols) & ~1))
        cw, ch = self.cell
        self.image = np.zeros((ch * self.rows, cw * self.cols, 3), np.uint8)
        self._tile = np.empty((ch, cw, 3), np.uint8)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def put(self, stream: int, rendered: np.ndarray) -> None:
        """Draw ``stream``'s rendered frame into its tile."""
        cw, ch = self.cell
        r, c = divmod(stream, self.cols)
        cv2.resize(rendered, self.cell, dst=self._tile, interpolation=cv2.INTER_AREA)
        np.copyto(self.image[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw], self._tile)
