"""The legacy INT8 calibrator for TensorRT 10.x (weak typing + ``BuilderFlag.INT8``).

TensorRT 11 removed implicit INT8 calibration; there, INT8 comes from the Q/DQ
``model.int8.onnx``. On TensorRT 10.x (JetPack 6's 10.3) ``segrt build
--precision int8 --legacy-calibrator`` subclasses ``IInt8EntropyCalibrator2``
or ``IInt8MinMaxCalibrator``, fed by the project's calibration reader (the same
frames and preprocessing as inference) and backed by a TensorRT calibration
cache file, so a second build skips calibration.

Split in two so the logic is tested without a GPU:

* :class:`CalibrationFeed` (plain): batches at the calibration shape and dtype,
  the cache file (read/validate/write atomically), counting.
* :func:`calibrator_class` (TensorRT, ``legacy_calibrator`` path): the subclass
  TensorRT calls back, which copies each batch to one device buffer.

TensorRT's Python trampolines catch any exception raised in ``get_batch`` or the
cache callbacks, print it and carry on as if the data had ended, so a bad batch
would silently end calibration early. The callbacks therefore never raise: the
feed stores the first exception (:meth:`CalibrationFeed.guard`) and answers
None, and the build re-raises it afterwards (:meth:`CalibrationFeed.finish`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from segrt.calibration.cache import CALIBRATORS, calibration_cache_from_text, trt_version_number
from segrt.errors import CalibrationError
from segrt.runtime.fsutil import write_bytes_atomic
from segrt.runtime.trt_api import trt_path

TRT_PATHS = {"legacy_calibrator": ("10.3", "10.16")}
log = logging.getLogger("segrt.calibration")


def _cache_tag(kind: str) -> str:
    if kind not in ("entropy", "minmax"):
        raise CalibrationError(f"unknown calibrator {kind!r}", hint="use entropy or minmax")
    return CALIBRATORS[kind]


def usable_cache(data: bytes, kind: str, trt_version: str | None, source: str = "calibration cache") -> bool:
    """Would TensorRT reuse this cache? Same calibrator tag and, when known, the same TensorRT
    version in the header (TensorRT silently recalibrates otherwise). Malformed caches raise."""
    cache = calibration_cache_from_text(data.decode("utf-8", "replace"), source=source)
    if cache.calibrator != _cache_tag(kind):
        return False
    return trt_version is None or cache.trt_version == trt_version_number(trt_version)


class CalibrationFeed:
    """Batches for TensorRT's ``get_batch`` and the cache for ``read/write_calibration_cache``.

    ``batches`` yields arrays of exactly ``shape`` (the profile's OPT shape) and
    ``dtype`` (the network input's). ``to_device`` copies one batch to the GPU
    and returns its device pointer (the same buffer every time). The cache is
    TensorRT's text format (:mod:`segrt.calibration.cache`); ``trt_version`` is the
    running TensorRT, whose number a reusable cache's header must carry.
    """

    def __init__(self, batches: Iterable[np.ndarray], *, shape: Sequence[int], dtype: np.dtype,
                 cache_path: str | Path, kind: str, to_device: Callable[[np.ndarray], int] | None = None,
                 trt_version: str | None = None, expected: int | None = None) -> None:
        _cache_tag(kind)
        self.expected = expected      # batches asked of the source (None: no source, cache only)
        self.error: BaseException | None = None  # first exception a TensorRT callback hit
        self.exhausted = False        # the source said it had no more batches
        self.cache_used = False       # read_cache handed TensorRT a cache (it then asks for no batch)
        self.trt_version = trt_version
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.cache_path = Path(cache_path)
        self.kind = kind
        self._batches: Iterator[np.ndarray] = iter(batches)
        self._to_device = to_device
        self.count = 0

    @property
    def batch_size(self) -> int:
        return self.shape[0]

    def next_batch(self) -> np.ndarray | None:
        """The next batch, contiguous, at the calibration shape; None when exhausted."""
        try:
            b = next(self._batches)
        except StopIteration:
            self.exhausted = True
            if self.count == 0:
                raise CalibrationError("the calibration source gave no frames",
                                       hint="pass --calib with a folder, video or synthetic://") from None
            return None
        a = np.asarray(b)
        if tuple(a.shape) != self.shape:
            raise CalibrationError(f"calibration batch {self.count} has shape {tuple(a.shape)}, "
                                   f"the engine calibrates at {self.shape}",
                                   hint="calibration batches must have the profile's OPT shape")
        if a.dtype != self.dtype:
            if a.dtype.kind == "f" and self.dtype.kind == "f":
                a = a.astype(self.dtype)
            else:
                raise CalibrationError(f"calibration batch dtype {a.dtype}, the network input is {self.dtype}")
        self.count += 1
        return np.ascontiguousarray(a)

    def next_pointers(self, names: Sequence[str]) -> list[int] | None:
        """TensorRT's ``get_batch(names)``: one device pointer per input, or None at the end."""
        if len(names) != 1:
            raise CalibrationError(f"the legacy calibrator feeds one input, the network has {list(names)}")
        b = self.next_batch()
        if b is None:
            return None
        if self._to_device is None:
            raise CalibrationError("no device copy function set for the calibrator")
        return [int(self._to_device(b))]

    def read_cache(self) -> bytes | None:
        """Cache bytes to reuse, or None to calibrate. A cache from another algorithm is ignored."""
        if not self.cache_path.is_file():
            return None
        data = self.cache_path.read_bytes()
        try:
            ok = usable_cache(data, self.kind, self.trt_version, str(self.cache_path))
        except CalibrationError:
            return None  # malformed: calibrate again and overwrite it
        self.cache_used = ok
        return data if ok else None

    def write_cache(self, data: bytes) -> None:
        """Keep what TensorRT computed (validated as a cache first), atomically."""
        data = bytes(data)
        calibration_cache_from_text(data.decode("utf-8", "replace"), source="TensorRT's calibration cache")
        write_bytes_atomic(self.cache_path, data)

    def guard(self, callback: Callable, *args):
        """Run a TensorRT callback without letting an exception reach TensorRT's trampoline.

        The first exception is kept in ``error`` and every callback answers None from then
        on (TensorRT then stops asking for batches); :meth:`finish` re-raises it.
        """
        if self.error is not None:
            return None
        try:
            return callback(*args)
        except Exception as exc:  # kept and re-raised by finish() after the build
            self.error = exc
            return None

    def finish(self) -> None:
        """After the build: re-raise a callback's exception, or refuse a calibration that ended early."""
        if self.error is not None:
            raise self.error
        if self.cache_used or self.expected is None:
            return
        if self.count < self.expected and not self.exhausted:
            raise CalibrationError(f"TensorRT stopped asking for calibration batches after {self.count} of "
                                   f"{self.expected}, before the source ran out",
                                   hint="see the TensorRT log above; the engine was not saved")
        if self.count < self.expected:
            log.warning("calibrated on %d of %d batches: the source had no more distinct frames",
                        self.count, self.expected)


@trt_path("legacy_calibrator")
def calibrator_class(trt, kind: str) -> type:
    """A subclass of TensorRT's entropy or min-max calibrator that delegates to a CalibrationFeed."""
    base = trt.IInt8EntropyCalibrator2 if kind == "entropy" else trt.IInt8MinMaxCalibrator

    class SegrtCalibrator(base):
        def __init__(self, feed: CalibrationFeed, release: Callable[[], None]) -> None:
            base.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.feed = feed
            self.release = release

        def get_batch_size(self) -> int:  # ignored with explicit batch, still required
            return self.feed.batch_size

        # TensorRT swallows exceptions raised here: the feed keeps them for finish().
        def get_batch(self, names):
            return self.feed.guard(self.feed.next_pointers, names)

        def read_calibration_cache(self):
            return self.feed.guard(self.feed.read_cache)

        def write_calibration_cache(self, cache) -> None:
            self.feed.guard(self.feed.write_cache, cache)

    return SegrtCalibrator


def calibration_cache_path(bundle_path: Path, kind: str, shape: Sequence[int]) -> Path:
    """One cache per algorithm and calibration shape, in the bundle."""
    dims = "x".join(str(int(d)) for d in shape)
    return Path(bundle_path) / f"calib.{kind}.{dims}.trtcache"


def legacy_calibrator(trt, bundle, *, kind: str, source_uri: str | None, frames: int,
                      shape: Sequence[int], device: int = 0):
    """The calibrator TensorRT's legacy INT8 build calls, fed from ``source_uri``.

    Without a source an existing cache is used; without either it is an error.
    """
    from segrt.runtime import cuda_pycuda  # noqa: PLC0415 - GPU only

    cache_path = calibration_cache_path(bundle.path, kind, shape)
    dtype = np.dtype(bundle.manifest.input.dtype)
    version = str(getattr(trt, "__version__", "")) or None
    expected = None
    if source_uri:
        batches: Iterable[np.ndarray] = _calibration_batches(bundle, source_uri, frames, int(shape[0]))
        expected = int(frames) // int(shape[0])
    elif cache_path.is_file() and usable_cache(cache_path.read_bytes(), kind, version, str(cache_path)):
        batches = iter(())  # TensorRT takes the scales from the cache and asks for no batch
    else:
        have = f"; {cache_path.name} is for another TensorRT or calibrator" if cache_path.is_file() else ""
        raise CalibrationError(f"INT8 calibration needs data: no --calib source{have}",
                               hint="pass --calib FOLDER|VIDEO|synthetic://")
    buf: dict[str, object] = {}

    def to_device(batch: np.ndarray) -> int:
        if "dev" not in buf:
            buf["dev"] = cuda_pycuda.DeviceBuffer(batch.nbytes)
        cuda_pycuda.copy_to_device(buf["dev"], batch)  # type: ignore[arg-type]
        return int(buf["dev"])  # type: ignore[call-overload]

    def release() -> None:
        dev = buf.pop("dev", None)
        if dev is not None:
            dev.free()  # type: ignore[attr-defined]

    feed = CalibrationFeed(batches, shape=shape, dtype=dtype, cache_path=cache_path, kind=kind,
                           to_device=to_device, trt_version=version, expected=expected)
    return calibrator_class(trt, kind)(feed, release)


def _calibration_batches(bundle, source_uri: str, frames: int, batch_size: int) -> Iterator[np.ndarray]:
    """The precision engineer's reader: the frames inference would see, preprocessed per the manifest."""
    from segrt.calibration.reader import iter_calibration_batches  # noqa: PLC0415 - reads frames lazily

    return iter_calibration_batches(bundle, source_uri, frames, batch_size=batch_size)
