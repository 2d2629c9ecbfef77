"""Gather the newest frame of each of several streams into one batch, with a bounded wait.

Each stream has a capture thread that takes a frame only on demand: :meth:`FrameGather.wait_demand`
returns when the inference side wants one from that stream, the thread reads the newest frame,
preprocesses it and hands it over with :meth:`FrameGather.offer`. :meth:`FrameGather.take` asks
every idle stream for a frame and returns when all of them have offered one, or ``wait_s`` after
the first offer: a slow or stalled camera misses this batch (its frame joins a later one) and
never stalls the others.
"""
from __future__ import annotations

import threading
import time
from typing import Any


class FrameGather:
    """Hand-over slots, one per stream: at most one pending item per stream."""

    def __init__(self, streams: int, wait_s: float) -> None:
        self.wait_s = float(wait_s)
        self._cond = threading.Condition()
        self._pending: list[Any] = [None] * streams
        self._wanted = [False] * streams
        self._active = [True] * streams
        self._closed = False

    # -- capture side ----------------------------------------------------------------
    def wait_demand(self, stream: int, poll_s: float = 0.1) -> bool:
        """Block until a frame from ``stream`` is wanted (True), or the gather closed (False)."""
        with self._cond:
            while not self._wanted[stream]:
                if self._closed:
                    return False
                self._cond.wait(poll_s)
            return not self._closed

    def offer(self, stream: int, item: Any) -> None:
        """Hand over the frame ``stream`` was asked for."""
        with self._cond:
            self._pending[stream] = item
            self._wanted[stream] = False
            self._cond.notify_all()

    def finish(self, stream: int) -> None:
        """``stream`` has no more frames (ended, failed or reached its frame limit)."""
        with self._cond:
            self._active[stream] = False
            self._wanted[stream] = False
            self._cond.notify_all()

    # -- inference side ----------------------------------------------------------------
    def take(self, stop: threading.Event, poll_s: float = 0.1) -> list[tuple[int, Any]] | None:
        """The pending (stream, item) pairs in stream order; None once no stream is left (or ``stop``)."""
        with self._cond:
            for i, active in enumerate(self._active):
                if active and self._pending[i] is None:
                    self._wanted[i] = True
            self._cond.notify_all()
            first: float | None = None
            while not stop.is_set():
                ready = [i for i, p in enumerate(self._pending) if p is not None]
                waiting = [i for i, a in enumerate(self._active) if a and self._pending[i] is None]
                if ready and first is None:
                    first = time.monotonic()
                if ready and (not waiting or time.monotonic() - first >= self.wait_s):
                    items = [(i, self._pending[i]) for i in ready]
                    for i in ready:
                        self._pending[i] = None
                    return items
                if not ready and not waiting:
                    return None
                timeout = poll_s if first is None else max(0.0, min(poll_s, first + self.wait_s - time.monotonic()))
                self._cond.wait(timeout)
            return None

    def close(self) -> None:
        """Release every capture thread waiting for demand."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
