"""The generated scene of :mod:`segrt.runtime.synthetic` as a source: file-like, or paced like a camera."""
from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from segrt.errors import ConfigError, SourceError
from segrt.runtime.sources.base import Frame, Source, check_index
from segrt.runtime.synthetic import SYNTHETIC_CLASSES, SyntheticScene, resize_label, synthetic_config_from_query


def synthetic_config_from_uri(uri: str, query: str) -> Any:
    try:
        return synthetic_config_from_query(query)
    except ConfigError as exc:  # a bad URI is a source error: one line, names the URI
        raise SourceError(f"{uri}: {exc.message}", hint=exc.hint) from exc


class SyntheticSource(Source):
    """The generated scene of :mod:`segrt.runtime.synthetic`, with ground-truth labels and random access."""

    supports_seek = True

    def __init__(self, uri: str, query: str) -> None:
        super().__init__(uri)
        self.config = synthetic_config_from_uri(uri, query)
        self.has_labels = True
        self.label_classes = SYNTHETIC_CLASSES
        self._scene = None
        self._pos = 0

    def _open(self) -> None:
        self._scene = SyntheticScene(self.config)
        self._size = (int(self.config.width), int(self.config.height))
        self._fps = float(self.config.fps)
        frames = getattr(self.config, "frames", None)
        self._frame_count = int(frames) if frames else None
        self._pos = 0

    def _close(self) -> None:
        self._scene = None

    def _read(self) -> Frame | None:
        if self._frame_count is not None and self._pos >= self._frame_count:
            return None
        w, h = self._size
        img = np.empty((h, w, 3), np.uint8)
        scene, index = self._scene, self._pos
        scene.render_into(index, img)  # ground truth only if someone asks for it

        def label() -> np.ndarray:
            drawn = scene.label_at(index)
            return drawn if drawn.shape == (h, w) else resize_label(drawn, w, h)

        frame = Frame(img, index, time.perf_counter(), label_fn=label)
        self._pos += 1
        return frame

    def seek(self, index: int) -> None:
        self._pos = check_index(self, index)


class PacedSyntheticCapture:
    """The synthetic scene as a camera: frames appear in real time at the scene's fps.

    With a finite ``frames`` its content ends after that many frames: ``read`` fails and
    ``ended`` is True, so a live source finishes instead of reconnecting.
    """

    def __init__(self, config: Any) -> None:
        self._scene = SyntheticScene(config)
        self._config = config
        self._period = 1.0 / float(config.fps)
        self._i = 0
        self._t0 = time.perf_counter()
        self._open = True

    def read(self) -> tuple[bool, np.ndarray | None]:
        n = getattr(self._config, "frames", None)
        if not self._open or (n and self._i >= n):
            return False, None
        due = self._t0 + self._i * self._period
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        img = np.empty((int(self._config.height), int(self._config.width), 3), np.uint8)
        self._scene.render_into(self._i, img)  # a camera has no ground truth
        self._i += 1
        return True, img

    @property
    def ended(self) -> bool:
        """Whether every frame of a finite scene has been delivered."""
        n = getattr(self._config, "frames", None)
        return bool(n) and self._i >= n

    def release(self) -> None:
        self._open = False

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: float(self._config.width),
                cv2.CAP_PROP_FRAME_HEIGHT: float(self._config.height),
                cv2.CAP_PROP_FPS: float(self._config.fps)}.get(prop, 0.0)
