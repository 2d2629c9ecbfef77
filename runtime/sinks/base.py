"""What every sink shares: the :class:`Sink` life cycle (open on first write, count frames, close)."""
from __future__ import annotations

import abc
from typing import Callable

import numpy as np

from segrt.errors import SinkError
from segrt.runtime.lifecycle import Resource
from segrt.runtime.redact import redact


class Sink(Resource):
    """Consumes rendered frames. Context manager; ``frames_written`` counts what was accepted."""

    def __init__(self, uri: str) -> None:
        self.uri = redact(uri)  # the display form; a sink opens its own parsed target
        self._opened = False
        self.frames_written = 0
        self._closed = False
        #: set by interactive sinks (a key pressed in the window): the pipeline stops
        self.stop_requested = False

    def open(self) -> "Sink":
        self._closed = False
        return super().open()

    def close(self) -> None:
        super().close()
        self._closed = True

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        """Take one rendered frame; ``name`` is the source frame's name (an image's stem), if it has one."""
        if not self._opened:
            if self._closed:  # a late write must not start a new file beside the finished one
                raise SinkError(f"{self.uri}: written after close")
            self.open()
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SinkError(f"{self.uri}: expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        self._write(image, name)
        self.frames_written += 1

    def describe(self) -> str:
        return self.uri

    def attach(self, legend: list[tuple[str, tuple[int, int, int]]], stats: Callable[[], dict]) -> None:
        """Called by the pipeline once open: the class legend (name, BGR colour) and a live-stats
        callable. Only sinks that show them (the http view) keep them."""

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    @abc.abstractmethod
    def _write(self, image: np.ndarray, name: str | None) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
