"""A video file read with OpenCV's FFmpeg backend: every frame, in order, corrupt ones counted."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

import cv2

from segrt.errors import SourceError
from segrt.runtime.sources.base import (DEFAULT_IMAGE_FPS, MAX_CONSECUTIVE_BAD_FRAMES, Frame, Source, check_index,
                                        log)


class VideoFileSource(Source):
    """A video file read with OpenCV's FFmpeg backend. Every frame is delivered; corrupt ones are skipped and counted.

    ``path`` is a local path or the URL of a video file served over http(s) (finite like any
    file; ``open_params`` are OpenCV open parameters such as its network timeouts).
    """

    supports_seek = True

    def __init__(self, path: str | os.PathLike[str], *, open_params: Sequence[int] = ()) -> None:
        super().__init__(str(path))
        self.path: Path | str = path if isinstance(path, str) and "://" in path else Path(path)
        self._open_params = list(open_params)
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0  # index of the frame the next successful read returns
        self.unreadable_frames = 0  # read() failed: skipped (also counted in corrupt_frames)
        self.wrong_size_frames = 0  # decoded at another size than the stream's: skipped (also corrupt)
        self.timeline_gaps = 0  # frame intervals with no frame, by the decoded frames' timestamps
        self._last_ms: float | None = None

    def _open(self) -> None:
        target = str(self.path)
        cap = (cv2.VideoCapture(target, cv2.CAP_FFMPEG, self._open_params) if self._open_params
               else cv2.VideoCapture(target, cv2.CAP_FFMPEG))
        if not cap.isOpened():
            cap.release()
            if isinstance(self.path, str):  # a URL
                raise SourceError(f"cannot open {self.uri}",
                                  hint="check the URL is reachable and serves a video file OpenCV's FFmpeg can read")
            raise SourceError(f"cannot decode video {self.uri}",
                              hint="the file is not a video OpenCV's FFmpeg can read, or it is truncated "
                                   "(an mp4 cut short loses its index): re-record or remux it")
        self._cap = cap
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._size = (w, h)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else DEFAULT_IMAGE_FPS
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._frame_count = n if n > 0 else None
        self._pos = 0
        self._last_ms = None

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _read(self) -> Frame | None:
        cap = self._cap
        bad = 0
        while True:
            n = self._frame_count
            # Past the announced count: the end. After a timeline gap the count may be off (a
            # variable-rate file), so then only a failed read ends the file.
            if n is not None and self._pos >= n and not self.timeline_gaps:
                return None
            ok, img = cap.read()
            t = time.perf_counter()
            if ok and img is not None and img.shape[:2] == (self._size[1], self._size[0]):
                self._pos += self._missing_before_this_frame(bad)
                frame = Frame(img, self._pos, t)
                self._pos += 1
                return frame
            if ok and img is not None:  # decoded, but not at the stream's size: damaged, skipped
                self.wrong_size_frames += 1
                log.warning("%s: frame %d decoded at %dx%d instead of %dx%d; skipped", self.uri, self._pos,
                            img.shape[1], img.shape[0], *self._size)
            elif n is None or self._pos >= n:  # unknown length, or nothing more announced: the end
                return None
            else:  # the container announced more frames: this one is corrupt (the decoder skips it)
                self.unreadable_frames += 1
            bad += 1
            self.corrupt_frames += 1
            self._pos += 1
            if bad >= MAX_CONSECUTIVE_BAD_FRAMES:
                missing = max(0, n - self._pos)
                self.corrupt_frames += missing
                log.warning("%s: %d frames unreadable from frame %d on (truncated file?); stopping",
                            self.uri, bad + missing, self._pos - bad)
                self._pos = n
                return None
            if bad == 1:
                log.warning("%s: frame %d is corrupt; skipped", self.uri, self._pos - 1)

    def _missing_before_this_frame(self, skipped: int) -> int:
        """Frames missing from the timeline between the previous frame and the one just decoded.

        From the decoded frames' timestamps (a recorder's dropped frame is an empty packet: the
        decoder skips it without a failed read); ``skipped`` failed reads are already counted.
        The missing frames are counted in ``timeline_gaps`` and their indices skipped, so a
        frame's index stays its place on the timeline.
        """
        ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        last, self._last_ms = self._last_ms, ms
        if last is None or not self._fps:
            return 0
        intervals = (ms - last) * self._fps / 1000.0
        if intervals <= 1.5 + skipped:  # within half a frame of the expected spacing
            return 0
        missing = int(round(intervals)) - 1 - skipped
        # The first gap is a warning; more (a variable-frame-rate file has many) only with -v.
        log.log(logging.DEBUG if self.timeline_gaps else logging.WARNING,
                "%s: %d frames missing from the timeline before frame %d", self.uri, missing, self._pos + missing)
        self.timeline_gaps += missing
        return missing

    def damage_note(self) -> str:
        return (f"corrupt = {self.unreadable_frames} unreadable + {self.wrong_size_frames} wrong-size frames; "
                f"{self.timeline_gaps} frames missing from the timeline (timestamp gaps). Not detectable: damage the "
                "decoder conceals (such a frame decodes and counts as good; segrt -v shows the decoder's messages)")

    def seek(self, index: int) -> None:
        index = check_index(self, index)
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._pos = index
        self._last_ms = None
