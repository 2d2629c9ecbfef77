"""Choosing calibration and evaluation frames from any runtime source.

A calibration set should cover the deployment's scenes, not the first N frames of one
of them. :class:`FrameSampler` pulls frames lazily from a :func:`open_source` URI:

* file-like sources with a known length (video file, image folder, ``synthetic://``):
  ``n`` indices spread evenly over an index range, read with ``seek`` (a video is read
  straight through instead when the indices are dense: cheaper than seeking);
* live sources (cameras, RTSP, ``synthetic://?live=1``): every k-th frame, k chosen so
  consecutive samples are ``live_interval_s`` apart, until ``n`` are kept;
* near-duplicates are dropped: a frame whose 32x32 grayscale thumbnail differs from an
  already kept one by less than ``dedup_threshold`` (mean absolute difference on the
  0..255 scale) adds nothing to the calibration statistics.

Only the thumbnails are kept (1 KiB per frame), so memory does not grow with the
frames' resolution. :class:`Coverage` reports what was sampled: counts, the duplicates
dropped, a diversity measure (mean pairwise thumbnail distance) and a sha256 of the
kept thumbnails that identifies the calibration set in the manifest.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import parse_qsl

import cv2
import numpy as np

from segrt.errors import CalibrationError, SegrtError, SourceError
from segrt.runtime.redact import redact
from segrt.runtime.sources import Frame, Source, VideoFileSource, open_source

log = logging.getLogger("segrt.calibration")

THUMB_SIZE = (32, 32)  # (w, h)
DEFAULT_DEDUP_THRESHOLD = 1.5  # mean |diff| on 0..255 of 32x32 gray thumbnails
DENSE_STEP = 4  # indices closer than this are read sequentially instead of seeking
_DIVERSITY_MAX = 256  # thumbnails compared pairwise for the diversity measure


def thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    """A 32x32 uint8 grayscale thumbnail (area-averaged, so noise barely moves it)."""
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA)


@dataclass
class Coverage:
    """What a sampler delivered."""

    source: str
    mode: str  # "seek", "sequential", "live"
    requested: int
    index_range: tuple[int, int] | None = None  # [start, stop) for file-like sources
    source_frames: int | None = None
    read: int = 0  # frames decoded and considered
    kept: int = 0
    dropped_duplicates: int = 0
    unreadable: int = 0
    indices: list[int] = field(default_factory=list)
    diversity: float | None = None  # mean pairwise thumbnail |diff| / 255, in [0, 1]
    thumbnails_sha256: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "source": self.source, "mode": self.mode, "requested": self.requested,
            "index_range": list(self.index_range) if self.index_range else None,
            "source_frames": self.source_frames, "frames": self.kept, "read": self.read,
            "dedup_dropped": self.dropped_duplicates, "unreadable": self.unreadable,
            "diversity": self.diversity, "thumbnails_sha256": self.thumbnails_sha256,
            "first_indices": self.indices[:8], "seconds": round(self.seconds, 2),
        }

    def describe(self) -> str:
        div = f", diversity {self.diversity:.3f}" if self.diversity is not None else ""
        rng = f" over frames {self.index_range[0]}..{self.index_range[1] - 1}" if self.index_range else ""
        return (f"{self.kept} frames from {self.source} ({self.mode}{rng}; "
                f"{self.dropped_duplicates} near-duplicates dropped{div})")


def even_indices(start: int, stop: int, n: int) -> list[int]:
    """Up to ``n`` distinct indices spread evenly over [start, stop), each at the middle of its
    stride (so two disjoint ranges never sample adjacent frames at their shared border)."""
    span = stop - start
    if span <= 0 or n <= 0:
        return []
    if n >= span:
        return list(range(start, stop))
    step = span / n
    return sorted({start + int(step * (i + 0.5)) for i in range(n)})


class FrameSampler:
    """Iterate over up to ``n`` well-spread, de-duplicated frames of ``uri``.

    ``index_range`` ([start, stop), file-like sources only) restricts sampling to part of
    the source, so calibration and evaluation can use disjoint parts. ``skip`` (a set of
    indices) is excluded. Iterating opens the source, yields :class:`Frame` objects lazily
    and closes it; :attr:`coverage` is complete once iteration ends.
    """

    def __init__(self, uri: str | Source, n: int, *, index_range: tuple[int, int] | None = None,
                 dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD, live_interval_s: float = 0.5,
                 max_live_seconds: float | None = None) -> None:
        if n <= 0:
            raise CalibrationError(f"the number of frames must be positive, got {n}")
        self.uri = redact(uri) if isinstance(uri, str) else uri.uri  # display form; opening uses _source_arg
        self._source_arg = uri
        self.n = int(n)
        self.index_range = index_range
        self.dedup_threshold = float(dedup_threshold)
        self.live_interval_s = float(live_interval_s)
        self.max_live_seconds = max_live_seconds
        self.coverage = Coverage(source=self.uri, mode="?", requested=self.n)
        self.label_classes: tuple[str, ...] | None = None  # known once iteration has opened the source
        self._thumbs = np.zeros((self.n, THUMB_SIZE[0] * THUMB_SIZE[1]), np.float32)

    # -- de-duplication --------------------------------------------------------------------
    def _is_new(self, image: np.ndarray) -> bool:
        t = thumbnail(image).reshape(-1).astype(np.float32)
        k = self.coverage.kept
        if k and self.dedup_threshold > 0:
            d = np.abs(self._thumbs[:k] - t).mean(axis=1)
            if float(d.min()) < self.dedup_threshold:
                self.coverage.dropped_duplicates += 1
                return False
        self._thumbs[k] = t
        return True

    def _accept(self, frame: Frame) -> bool:
        self.coverage.read += 1
        img = frame.image
        if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
            self.coverage.unreadable += 1
            return False
        if not self._is_new(img):
            return False
        self.coverage.kept += 1
        self.coverage.indices.append(int(frame.index))
        return True

    # -- iteration -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        t0 = time.perf_counter()
        src = open_source(self._source_arg)
        try:
            try:
                src.open()
            except SegrtError:
                raise
            except Exception as exc:  # an OS/codec failure on open: say which source
                raise SourceError(f"cannot open {self.uri}: {exc}") from exc
            self.label_classes = src.label_classes
            if src.is_live:
                yield from self._iter_live(src)
            else:
                yield from self._iter_file(src)
        finally:
            src.close()
            self._finish(time.perf_counter() - t0)

    def _iter_file(self, src: Source) -> Iterator[Frame]:
        count = src.frame_count
        cov = self.coverage
        cov.source_frames = count
        if count is None:  # unbounded but not live: take frames in order
            cov.mode = "sequential"
            if self.index_range is not None:
                raise CalibrationError(f"{self.uri} has no known length, so it cannot be split by index",
                                       hint="pass a separate --eval source")
            for frame in src:
                if self._accept(frame):
                    yield frame
                if cov.kept >= self.n:
                    return
            return
        start, stop = self.index_range if self.index_range is not None else (0, count)
        start, stop = max(0, start), min(count, stop)
        cov.index_range = (start, stop)
        wanted = even_indices(start, stop, self.n)
        if not wanted:
            return
        # Seeking a video decodes from the previous key frame: for dense indices reading straight
        # through is cheaper. Image folders and synthetic:// seek for free.
        dense = len(wanted) < 2 or (wanted[-1] - wanted[0]) / max(1, len(wanted) - 1) < DENSE_STEP
        if (dense and isinstance(src, VideoFileSource)) or not src.supports_seek:
            cov.mode = "sequential"
            want = set(wanted)
            if start and src.supports_seek:
                src.seek(start)
                pos = start
            else:
                pos = 0
            while pos <= wanted[-1]:
                frame = src.read()
                if frame is None:
                    break
                if frame.index in want and self._accept(frame):
                    yield frame
                pos = frame.index + 1
            return
        cov.mode = "seek"
        for idx in wanted:
            src.seek(idx)
            frame = src.read()
            if frame is None:
                cov.unreadable += 1
                continue
            if self._accept(frame):
                yield frame

    def _iter_live(self, src: Source) -> Iterator[Frame]:
        cov = self.coverage
        cov.mode = "live"
        fps = src.fps or 30.0
        k = max(1, int(round(fps * self.live_interval_s)))
        limit = self.max_live_seconds
        if limit is None:  # n samples at k-frame spacing, with room for duplicates and drops
            limit = max(10.0, 3.0 * self.n * k / fps)
        t_end = time.monotonic() + limit
        seen = 0
        while cov.kept < self.n and time.monotonic() < t_end:
            frame = src.read()
            if frame is None:
                break
            seen += 1
            if (seen - 1) % k == 0 and self._accept(frame):
                yield frame

    def _finish(self, seconds: float) -> None:
        cov = self.coverage
        cov.seconds = seconds
        k = cov.kept
        if not k:
            return
        thumbs = self._thumbs[:k]
        cov.thumbnails_sha256 = hashlib.sha256(thumbs.astype(np.uint8).tobytes()).hexdigest()
        if k >= 2:
            sel = thumbs[np.linspace(0, k - 1, min(k, _DIVERSITY_MAX)).round().astype(int)]
            total, pairs = 0.0, 0
            for i in range(len(sel) - 1):  # row blocks keep this at O(m) memory
                d = np.abs(sel[i + 1:] - sel[i]).mean(axis=1)
                total += float(d.sum())
                pairs += len(d)
            cov.diversity = total / pairs / 255.0


# -- held-out evaluation sets ---------------------------------------------------------------
def _synthetic_with_seed(uri: str, seed_offset: int) -> str | None:
    """The same synthetic:// scene with another seed (an honest held-out set), or None."""
    if not uri.lower().startswith("synthetic://"):
        return None
    rest = uri[len("synthetic://"):]
    query = rest.split("?", 1)[1] if "?" in rest else rest if "=" in rest else ""
    pairs = parse_qsl(query, keep_blank_values=True)
    seed = next((int(v) for k, v in pairs if k == "seed" and v.strip().isdigit()), 0)
    # Stay below 10000: the shipped demo model trains on synthetic seeds >= 10000, so a held-out
    # scene must come from a seed under that (and never the calibration seed itself).
    new_seed = (seed + seed_offset) % EVAL_SEED_LIMIT
    if new_seed == seed:
        new_seed = (seed + 1) % EVAL_SEED_LIMIT
    pairs = [(k, v) for k, v in pairs if k != "seed"] + [("seed", str(new_seed))]
    return "synthetic://?" + "&".join(f"{k}={v}" for k, v in pairs)


@dataclass(frozen=True)
class SplitPlan:
    """Where calibration and evaluation frames come from."""

    calib_uri: str
    calib_range: tuple[int, int] | None
    eval_uri: str
    eval_range: tuple[int, int] | None
    how: str  # one line for the report

    def to_dict(self) -> dict:
        return {"calib_source": redact(self.calib_uri),
                "calib_range": list(self.calib_range) if self.calib_range else None,
                "eval_source": redact(self.eval_uri), "eval_range": list(self.eval_range) if self.eval_range else None,
                "held_out": self.how}


EVAL_SEED_OFFSET = 7919  # synthetic held-out scenes use (seed + this) % EVAL_SEED_LIMIT
EVAL_SEED_LIMIT = 10_000  # demo-model training seeds start here (tools/train_demo.py)


def plan_split(calib_uri: str, eval_uri: str | None, calib_frames: int, eval_frames: int) -> SplitPlan:
    """Decide disjoint calibration and evaluation frames.

    * an explicit ``eval_uri`` is used whole (it is the user's held-out set);
    * ``synthetic://``: the evaluation scene is the same generator with another seed;
    * a file-like source of known length: calibration samples the first part of the
      timeline and evaluation the last part (``eval_frames``, at least 15%), so the two
      never share a frame and, for video, do not even share a scene moment;
    * a live source: evaluation and calibration frames are captured in separate time windows
      (quantize_bundle reads the evaluation frames first).
    """
    if eval_uri:
        return SplitPlan(calib_uri, None, eval_uri, None, f"separate evaluation source {redact(eval_uri)}")
    synth = _synthetic_with_seed(calib_uri, EVAL_SEED_OFFSET)
    if synth is not None:
        open_source(calib_uri)  # parses the URI: a bad parameter is reported against the user's URI
        return SplitPlan(calib_uri, None, synth, None, "synthetic scene with a different seed")
    src = open_source(calib_uri)
    try:
        try:
            src.open()
        except SegrtError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot open {calib_uri}: {exc}") from exc
        if src.is_live:
            return SplitPlan(calib_uri, None, calib_uri, None, "live frames captured in a separate time window")
        count = src.frame_count
    finally:
        src.close()
    if count is None:
        raise CalibrationError(f"{calib_uri} has no known length, so no held-out part can be split off",
                               hint="pass an evaluation source with --eval")
    if count < 2:
        raise CalibrationError(f"{calib_uri} has {count} frame(s): too few to calibrate and to hold frames out",
                               hint="use a longer video or a bigger folder, or pass --eval")
    n_eval = max(eval_frames, int(math.ceil(0.15 * count)))
    if count < calib_frames + n_eval:
        # Not enough frames for both: split in proportion to what was asked.
        n_eval = max(1, int(round(count * eval_frames / (calib_frames + eval_frames))))
    split = count - n_eval
    return SplitPlan(calib_uri, (0, split), calib_uri, (split, count),
                     f"frames {split}..{count - 1} of {redact(calib_uri)} (calibration used 0..{split - 1})")
