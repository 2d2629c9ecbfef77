"""What every frame source shares: the :class:`Frame`, the :class:`Source` base class, URI query helpers."""
from __future__ import annotations

import abc
import logging
from typing import Callable, Iterator

import numpy as np

from segrt.errors import SourceError
from segrt.runtime.lifecycle import Resource
from segrt.runtime.redact import redact

log = logging.getLogger("segrt.source")

DEFAULT_IMAGE_FPS = 30.0  # nominal rate of image sources, so a video sink has one

# A corrupt video frame makes cv2 read() fail once and move on; a run of failures this long
# means the rest of the file is missing (truncated), so stop and count what is left as corrupt.
MAX_CONSECUTIVE_BAD_FRAMES = 25


class Frame:
    """One captured frame.

    ``image`` is HxWx3 uint8 BGR, ``index`` the frame's position in its source
    (for a live source the capture sequence number, so gaps show dropped frames),
    ``timestamp`` the ``time.perf_counter()`` at capture (for end-to-end latency),
    ``label`` an HxW uint8 class-id mask when the source has ground truth, else None,
    ``name`` the frame's own name when it has one (an image file's stem), so a folder sink keeps it.

    A source may hand over the ground truth as ``label_fn``, a function that makes it: it then
    runs on the first read of ``label`` only (the synthetic scene draws its labels that way,
    and a pipeline that never scores a frame never pays for them).
    """

    __slots__ = ("image", "index", "timestamp", "name", "_label", "_label_fn")

    def __init__(self, image: np.ndarray, index: int, timestamp: float, label: np.ndarray | None = None,
                 label_fn: Callable[[], np.ndarray] | None = None, name: str | None = None) -> None:
        self.image = image
        self.name = name
        self.index = index
        self.timestamp = timestamp
        self._label = label
        self._label_fn = label_fn if label is None else None

    @property
    def label(self) -> np.ndarray | None:
        if self._label_fn is not None:
            self._label, self._label_fn = self._label_fn(), None
        return self._label

    @label.setter
    def label(self, value: np.ndarray | None) -> None:
        self._label, self._label_fn = value, None

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, image={self.image.shape}, label={'yes' if self.has_label else 'no'})"

    @property
    def has_label(self) -> bool:
        """Whether ground truth is available (without making it)."""
        return self._label is not None or self._label_fn is not None

class Source(Resource):
    """A stream of :class:`Frame`. Context manager and iterable; ``read()`` returns None at the end."""

    is_live: bool = False
    supports_seek: bool = False

    def __init__(self, uri: str) -> None:
        # The display form (credentials masked), used in every message, log line and summary;
        # only the opener of a stream keeps the raw URI.
        self.uri = redact(uri)
        self._opened = False
        self._size: tuple[int, int] = (0, 0)
        self._fps: float = 0.0
        self._frame_count: int | None = None
        self.corrupt_frames = 0
        self.dropped_frames = 0
        self.has_labels = False
        # Names of the label ids, when the source knows them (None: the ids are the model's).
        self.label_classes: tuple[str, ...] | None = None

    # -- life cycle: open/close/with come from Resource ----------------------------------
    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    # -- frames ------------------------------------------------------------------------
    def read(self) -> Frame | None:
        """The next frame, or None when a finite source is exhausted."""
        self.open()
        return self._read()

    def seek(self, index: int) -> None:
        """Make the next ``read()`` return frame ``index`` (file-like sources only)."""
        raise SourceError(f"source {self.uri} does not support seeking",
                          hint="seek works on video files, image folders and synthetic://")

    # -- properties (open lazily so `open_source(u).size` just works) --------------------
    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        self.open()
        return self._size

    @property
    def fps(self) -> float:
        self.open()
        return self._fps

    @property
    def frame_count(self) -> int | None:
        """Number of frames for finite sources, None for live/unbounded ones."""
        self.open()
        return self._frame_count

    def describe(self) -> str:
        w, h = self._size
        kind = "live" if self.is_live else "file"
        n = f", {self._frame_count} frames" if self._frame_count is not None else ""
        return f"{self.uri} ({kind}, {w}x{h} @ {self._fps:g} fps{n})"

    def damage_note(self) -> str:
        """For the run summary: what the corrupt count covers and what damage goes undetected ("" if nothing)."""
        return ""

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _read(self) -> Frame | None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def check_index(src: Source, index: int) -> int:
    n = src.frame_count
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0 or (n is not None and index >= n):
        raise SourceError(f"seek({index!r}) is outside {src.uri} (frames 0..{(n or 0) - 1})")
    return int(index)

def int_param(q: dict[str, str], key: str, default: int, uri: str, lo: int = 0) -> int:
    v = q.get(key)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise SourceError(f"{uri}: {key}={v!r} is not an integer") from None
    if n < lo:
        raise SourceError(f"{uri}: {key}={n} must be >= {lo}")
    return n


def float_param(q: dict[str, str], key: str, default: float, uri: str) -> float:
    v = q.get(key)
    if v is None:
        return default
    try:
        x = float(v)
    except ValueError:
        raise SourceError(f"{uri}: {key}={v!r} is not a number") from None
    if not x > 0:
        raise SourceError(f"{uri}: {key}={x} must be positive")
    return x
