"""Calibration data built on the runtime's sources and preprocessing.

Calibration sees exactly what inference sees: frames come from
:func:`segrt.runtime.sources.open_source` through :class:`FrameSampler`, and are turned
into the graph's input by the runtime's :class:`~segrt.runtime.preprocess.Preprocessor`
with the bundle's own manifest (resize policy, letterbox, normalisation for unfused
graphs). Everything streams: one frame is decoded, preprocessed and handed on at a time.

* :class:`SourceCalibrationReader`: an ``onnxruntime.quantization.CalibrationDataReader``
  (``get_next() -> {input_name: tensor} | None``), also a plain iterator of feeds;
* :class:`CalibrationBatches` / :func:`iter_calibration_batches`: batches in the engine
  input's dtype and layout, for TensorRT's legacy ``IInt8Calibrator`` (TensorRT 8.6-10.x).
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Iterator

import numpy as np

from segrt.calibration.sampling import FrameSampler
from segrt.errors import CalibrationError
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import Manifest
from segrt.runtime.preprocess import Preprocessor

log = logging.getLogger("segrt.calibration")

try:  # the ORT base class only adds __iter__/__len__ helpers; the protocol is get_next()
    from onnxruntime.quantization import CalibrationDataReader as _ReaderBase
except ImportError:  # pragma: no cover - onnxruntime is a hard dependency
    _ReaderBase = object  # type: ignore[misc,assignment]


class SourceCalibrationReader(_ReaderBase):
    """Streams preprocessed frames of a :class:`FrameSampler` as ORT feeds.

    Each feed holds a private copy of the tensor (the preprocessor reuses its buffer), and
    the reader holds nothing once a feed is handed on. ``on_frame`` (e.g. a progress bar's
    update) is called once per delivered frame.
    """

    def __init__(self, sampler: FrameSampler, manifest: Manifest, *,
                 on_frame: Callable[[], None] | None = None) -> None:
        self.sampler = sampler
        self.manifest = manifest
        self.input_name = manifest.input.name
        self.pre = Preprocessor(manifest)
        self.on_frame = on_frame
        self.delivered = 0
        self._it: Iterator | None = None

    def _frames(self):
        for frame in self.sampler:
            tensor, _ = self.pre(frame.image)
            yield tensor.copy()

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._frames()
        tensor = next(self._it, None)
        if tensor is None:
            return None
        self.delivered += 1
        if self.on_frame is not None:
            self.on_frame()
        return {self.input_name: tensor}

    def __len__(self) -> int:
        """Frames requested: an upper bound (near-duplicates and unreadable frames are skipped)."""
        return self.sampler.n

    def rewind(self) -> None:
        """Start over (re-reads the source)."""
        self._it = None
        self.delivered = 0

    @property
    def coverage(self):
        return self.sampler.coverage


def _bundle(bundle: Bundle | str | os.PathLike[str]) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)


class CalibrationBatches:
    """Calibration batches shaped and typed as the engine's input expects.

    Iterating yields C-contiguous arrays of shape ``(batch_size, *input_shape[1:])`` in the
    input's dtype (uint8 NHWC for fused bundles, float32 NCHW for unfused ones); a last
    partial batch is dropped, as TensorRT calibrators expect full batches. ``batch_size``
    must match the engine profile's OPT batch when the input is dynamic. One buffer is
    reused between batches: copy a batch to keep it past the next one (a calibrator copies
    it to the device straight away).
    """

    def __init__(self, bundle: Bundle | str | os.PathLike[str], source_uri: str, frames: int,
                 batch_size: int = 1, *, dedup_threshold: float | None = None) -> None:
        if batch_size < 1:
            raise CalibrationError(f"batch_size must be >= 1, got {batch_size}")
        if frames < batch_size:
            raise CalibrationError(f"{frames} calibration frames cannot fill one batch of {batch_size}")
        self.bundle = _bundle(bundle)
        self.manifest = self.bundle.manifest
        self.source_uri = source_uri
        self.frames = int(frames)
        self.batch_size = int(batch_size)
        inp = self.manifest.input
        self.input_name = inp.name
        self.dtype = np.dtype(inp.dtype)
        self.shape = (self.batch_size,) + tuple(inp.shape[1:])
        kw = {} if dedup_threshold is None else {"dedup_threshold": dedup_threshold}
        self.sampler = FrameSampler(source_uri, self.frames, **kw)
        self.batches_delivered = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        """Upper bound on the number of batches (duplicates dropped may make it fewer)."""
        return self.frames // self.batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        pre = Preprocessor(self.manifest)
        buf = np.empty(self.shape, self.dtype)
        k = 0
        for frame in self.sampler:
            tensor, _ = pre(frame.image)
            buf[k] = tensor[0]
            k += 1
            if k == self.batch_size:
                self.batches_delivered += 1
                yield buf
                k = 0
        if self.sampler.coverage.kept == 0:
            raise CalibrationError(f"calibration source {self.source_uri} delivered no frames",
                                   hint="check the path/URI; calibration never falls back to random data")

    @property
    def coverage(self):
        return self.sampler.coverage


def iter_calibration_batches(bundle: Bundle | str | os.PathLike[str], source_uri: str, frames: int,
                             batch_size: int = 1) -> Iterator[np.ndarray]:
    """Batches of the bundle's input (dtype/layout as the engine expects) from ``source_uri``.

    See :class:`CalibrationBatches`; this is ``iter(CalibrationBatches(...))``.
    """
    return iter(CalibrationBatches(bundle, source_uri, frames, batch_size))
