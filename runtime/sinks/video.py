"""A video file, written to a temporary name beside the target and renamed on close.

An interrupted run (Ctrl-C, SIGTERM, an error) still leaves a playable video holding every
frame written so far, and a reader never sees a half-written file.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from segrt.errors import SinkError
from segrt.runtime.sinks.base import Sink

log = logging.getLogger("segrt.sink")

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class VideoSink(Sink):
    """A video file at the source's fps; written to a temporary name and renamed on close.

    The writer is created at the first frame, so its size is that of the rendered images.
    An existing file is refused unless ``overwrite`` (checked when the sink is made and
    again when it opens).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, overwrite: bool = False) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.overwrite = overwrite
        self._refuse_existing()
        ext = self.path.suffix.lower()
        if ext not in VIDEO_FOURCC:
            raise SinkError(f"{self.path}: unsupported video extension {ext!r}",
                            hint="use .mp4, .avi, .mkv or .mov")
        if not fps or fps <= 0:
            raise SinkError(f"{self.path}: fps must be positive, got {fps}")
        self.fps = float(fps)
        self.fourcc = VIDEO_FOURCC[ext]
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None

    def _refuse_existing(self) -> None:
        if not self.overwrite and (self.path.exists() or self.path.is_symlink()):
            raise SinkError(f"{self.path} already exists; not overwriting it",
                            hint="pass --overwrite to replace it, or choose another output name")

    def _open(self) -> None:
        self._refuse_existing()
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            # Same extension: FFmpeg picks the container from it.
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".part{self.path.suffix}",
                                       dir=parent)
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the video is a normal user file
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}",
                            hint="choose a writable output folder") from exc
        self._tmp = Path(tmp)

    def _write(self, image: np.ndarray, name: str | None) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            writer = cv2.VideoWriter(str(self._tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.fourcc),
                                     self.fps, (w, h))
            if not writer.isOpened():
                raise SinkError(f"cannot encode {self.path} with codec {self.fourcc} at {w}x{h}",
                                hint="this OpenCV build lacks the encoder; try .avi (MJPG)")
            self._writer, self._size = writer, (w, h)
        elif (w, h) != self._size:
            raise SinkError(f"{self.path}: frame size changed from {self._size[0]}x{self._size[1]} to {w}x{h}",
                            hint="a video needs frames of one size")
        self._writer.write(image)

    def _close(self) -> None:
        tmp, writer = self._tmp, self._writer
        self._writer, self._tmp = None, None
        if writer is not None:
            writer.release()  # writes the container index: the file becomes playable
        if tmp is None:
            return
        if self.frames_written == 0:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("%s: no frames were written; no file created", self.path)
            return
        try:
            os.replace(tmp, self.path)
        except OSError as exc:
            raise SinkError(f"cannot finalise {self.path}: {exc.strerror or exc}") from exc

    def describe(self) -> str:
        return f"{self.path} ({self.fourcc} @ {self.fps:g} fps)"
