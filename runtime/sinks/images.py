"""Image outputs: a folder with one image per frame, or one image file rewritten per frame."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from segrt.errors import SinkError
from segrt.runtime.fsutil import write_bytes_atomic
from segrt.runtime.sinks.base import Sink

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolderSink(Sink):
    """One image per frame, each written atomically.

    A frame from an image source keeps its file's name (``street.jpg`` -> ``street.png``;
    a name met twice in one run gets ``_<n>`` appended); other frames are numbered
    ``frame_000000.png`` ... (or by ``pattern``).
    """

    def __init__(self, folder: str | os.PathLike[str], ext: str = ".png", pattern: str | None = None) -> None:
        super().__init__(str(folder))
        self.folder = Path(folder)
        self.ext = ext if ext.startswith(".") else "." + ext
        if self.ext.lower() not in IMAGE_EXTS:
            raise SinkError(f"{folder}: unsupported image format {self.ext!r}", hint="use png or jpg")
        self.pattern = pattern or ("frame_%06d" + self.ext)
        self._names_used: set[str] = set()

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output folder {self.folder}: {exc.strerror or exc}") from exc
        if not os.access(self.folder, os.W_OK):
            raise SinkError(f"output folder {self.folder} is not writable")

    def path_for(self, n: int) -> Path:
        return self.folder / (self.pattern % n)

    def name_for(self, name: str) -> Path:
        """The output path for a named frame, unique within this run."""
        candidate, n = name, 1
        while candidate in self._names_used:
            candidate, n = f"{name}_{n}", n + 1
        self._names_used.add(candidate)
        return self.folder / (candidate + self.ext)

    def _write(self, image: np.ndarray, name: str | None) -> None:
        target = self.path_for(self.frames_written) if name is None else self.name_for(name)
        ok, data = cv2.imencode(target.suffix, image)
        if not ok:
            raise SinkError(f"cannot encode {target}")
        write_bytes_atomic(target, data.tobytes())


class ImageFileSink(Sink):
    """A single image file, rewritten atomically with every frame (the last frame remains)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(str(path))
        self.path = Path(path)

    def _write(self, image: np.ndarray, name: str | None) -> None:
        ok, data = cv2.imencode(self.path.suffix, image)
        if not ok:
            raise SinkError(f"cannot encode {self.path}")
        write_bytes_atomic(self.path, data.tobytes())
