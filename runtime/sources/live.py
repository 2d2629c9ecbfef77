"""Live sources: a grabber thread keeps only the newest frame, and reopens a stream that stops."""
from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

import cv2
import numpy as np

from segrt.errors import SourceError
from segrt.runtime.sources.base import DEFAULT_IMAGE_FPS, Frame, Source, log


class Capture(Protocol):
    """The part of cv2.VideoCapture a live source needs."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...

    def get(self, prop: int) -> float: ...


def capture_ended(cap: Capture) -> bool:
    """Whether a capture that stopped delivering came to the end of its content, rather than failing.

    A capture can say so itself with an ``ended`` attribute; an OpenCV capture has ended when it
    reports a frame count and has read that many. A camera or a live stream reports none, so a
    stop there is a failure (and is reconnected).
    """
    ended = getattr(cap, "ended", None)
    if ended is not None:
        return bool(ended)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return count > 0 and cap.get(cv2.CAP_PROP_POS_FRAMES) >= count


class LiveSource(Source):
    """A camera or stream. A grabber thread reads continuously and keeps only the newest frame.

    ``opener()`` returns an opened :class:`Capture` or raises :class:`SourceError`. When the
    capture stops delivering (unplugged camera, dropped stream), it is reopened after
    ``backoff_s * 2**k`` seconds (capped at 5 s) up to ``reconnects`` consecutive times; past
    that, ``read()`` raises SourceError. A successful reopen resets the count. A capture that
    stopped because its content ended (:func:`capture_ended`) is not reopened: ``read()``
    hands over the last frame, then returns None.
    """

    is_live = True

    def __init__(self, uri: str, opener: Callable[[], Capture], *, reconnects: int = 5,
                 backoff_s: float = 0.25, read_timeout_s: float = 10.0,
                 label_of: Callable[[int], np.ndarray | None] | None = None) -> None:
        super().__init__(uri)
        self._opener = opener
        self.max_reconnects = reconnects
        self.backoff_s = backoff_s
        self.read_timeout_s = read_timeout_s
        self.reconnects = 0  # successful reopenings so far
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float] | None = None
        self._seq = 0
        self._error: BaseException | None = None
        self._ended = False  # the content ended: no reconnect, read() returns None once drained
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap: Capture | None = None

    def _open(self) -> None:
        self._cap = self._opener()
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else DEFAULT_IMAGE_FPS
        self._frame_count = None
        # Some backends report 0x0 until the first frame: take the size from it.
        ok, img = self._cap.read()
        if not ok or img is None:
            self._cap.release()
            self._cap = None
            raise SourceError(f"{self.uri} opened but delivers no frames",
                              hint="check the camera is not in use by another program and its mode is supported")
        self._size = (img.shape[1], img.shape[0])  # the frame is the truth; w/h only log a mismatch
        if (w, h) != self._size and w and h:
            log.info("%s: reports %dx%d, delivers %dx%d", self.uri, w, h, *self._size)
        self._stop.clear()
        self._error = None
        self._ended = False
        self._latest = (img, 0, time.perf_counter())
        self._seq = 1
        self._thread = threading.Thread(target=self._grab_loop, name=f"segrt-grab:{self.uri}", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._latest = None

    def _grab_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            ok, img = self._cap.read() if self._cap is not None else (False, None)
            if ok and img is not None:
                failures = 0
                t = time.perf_counter()
                with self._cond:
                    if self._latest is not None:
                        self.dropped_frames += 1  # the consumer never saw the previous one
                    self._latest = (img, self._seq, t)
                    self._seq += 1
                    self._cond.notify_all()
                continue
            if self._stop.is_set():
                return
            if self._cap is not None and capture_ended(self._cap):
                log.info("%s: ended after %d frames", self.uri, self._seq)
                with self._cond:
                    self._ended = True
                    self._cond.notify_all()
                return
            # The stream failed: reopen with backoff, a bounded number of consecutive times.
            if failures >= self.max_reconnects:
                err = SourceError(f"{self.uri} disconnected and could not be reopened "
                                  f"({self.max_reconnects} attempts)",
                                  hint="check the cable/network and that no other program holds the device")
                with self._cond:
                    self._error = err
                    self._cond.notify_all()
                return
            delay = min(self.backoff_s * (2 ** failures), 5.0)
            failures += 1
            log.warning("%s: no frame; reopening in %.2f s (attempt %d/%d)", self.uri, delay, failures,
                        self.max_reconnects)
            if self._stop.wait(delay):
                return
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            try:
                self._cap = self._opener()
                self.reconnects += 1
                log.info("%s: reopened", self.uri)
            except SourceError as exc:
                log.warning("%s: reopen failed: %s", self.uri, exc)
            except Exception as exc:  # a backend error while reopening must not kill the grabber silently
                log.warning("%s: reopen failed: %s", self.uri, exc)

    def _read(self) -> Frame | None:
        deadline = time.monotonic() + self.read_timeout_s
        with self._cond:
            while self._latest is None:
                if self._error is not None:
                    raise self._error
                if self._stop.is_set() or self._ended:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(f"{self.uri}: no frame for {self.read_timeout_s:g} s",
                                      hint="the camera or stream stalled")
                self._cond.wait(remaining)
            img, seq, t = self._latest
            self._latest = None
        return Frame(img, seq, t)
