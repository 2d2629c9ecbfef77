"""Several sinks side by side (``--sink http://:8080 --sink out.mp4``): every frame goes to each."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from segrt.runtime.sinks.base import Sink


class TeeSink(Sink):
    """Writes each frame to every sink in order; opens them in order and closes them all (errors re-raised)."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        super().__init__(" + ".join(s.uri for s in sinks))
        self.sinks = list(sinks)

    def _open(self) -> None:
        opened: list[Sink] = []
        try:
            for s in self.sinks:
                s.open()
                opened.append(s)
        except BaseException:
            for s in reversed(opened):
                s.close()
            raise

    def _write(self, image: np.ndarray, name: str | None) -> None:
        for s in self.sinks:
            s.write(image, name)
            if s.stop_requested:
                self.stop_requested = True

    def _close(self) -> None:
        first: BaseException | None = None
        for s in self.sinks:
            try:
                s.close()
            except Exception as exc:  # every sink gets closed (a video finalised); the first error is raised
                first = first or exc
        if first is not None:
            raise first

    def attach(self, legend: list[tuple[str, tuple[int, int, int]]], stats: Callable[[], dict]) -> None:
        for s in self.sinks:
            s.attach(legend, stats)

    def describe(self) -> str:
        return " + ".join(s.describe() for s in self.sinks)
