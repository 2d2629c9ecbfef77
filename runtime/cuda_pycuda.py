"""Every PyCUDA call segrt makes, in one place.

PyCUDA is imported lazily, only here, so ``import segrt.runtime`` works without
it. The TensorRT backend uses the device's *primary* context (the one the CUDA
runtime, TensorRT, PyTorch and CuPy share), retained once and pushed/popped
around each use so any thread can drive it: ``pycuda.autoinit`` would create a
private context current on the importing thread only.

The names used below are PyCUDA's documented API (``doc/driver.rst``), plus
``Stream.handle`` (``src/wrapper/wrap_cudadrv.cpp``); ``tests/test_trt_bindings_api.py``
checks every ``cuda.<name>`` and method used here against that list.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np

from segrt.errors import BackendUnavailableError

PYCUDA_HINT = ("pip install pycuda (it compiles against the local CUDA toolkit: put /usr/local/cuda/bin "
               "on PATH first; CUDA 13 needs pycuda >= 2025.1.2)")
_lock = threading.Lock()
_primary = {}  # device index -> retained primary context


def driver():
    """``pycuda.driver``, initialised; BackendUnavailableError when PyCUDA or the driver is missing."""
    try:
        import pycuda.driver as cuda  # noqa: PLC0415 - lazy: the runtime imports without PyCUDA
    except ImportError as exc:
        raise BackendUnavailableError("PyCUDA is not installed", hint=PYCUDA_HINT) from exc
    try:
        cuda.init()
    except cuda.Error as exc:  # no driver / no device
        raise BackendUnavailableError(f"CUDA driver unavailable: {exc}",
                                      hint="install the NVIDIA driver; check with nvidia-smi") from exc
    return cuda


def device_count() -> int:
    return int(driver().Device.count())


def is_integrated(index: int = 0) -> bool:
    """True for a GPU that shares DRAM with the CPU (Jetson): mapped pinned memory is zero-copy there."""
    cuda = driver()
    dev = cuda.Device(index)
    return bool(dev.get_attribute(cuda.device_attribute.INTEGRATED))


def device_info(index: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability) of device ``index``."""
    cuda = driver()
    if index >= int(cuda.Device.count()):
        raise BackendUnavailableError(f"no CUDA device {index}", hint="check nvidia-smi")
    dev = cuda.Device(index)
    major, minor = dev.compute_capability()
    return str(dev.name()), (int(major), int(minor))


def primary_context(index: int = 0):
    """The device's primary context, retained once per process (not made current)."""
    cuda = driver()
    with _lock:
        ctx = _primary.get(index)
        if ctx is None:
            ctx = cuda.Device(index).retain_primary_context()
            _primary[index] = ctx
    return ctx


@contextlib.contextmanager
def current(ctx) -> Iterator[None]:
    """Make ``ctx`` current on this thread for the block (push / pop)."""
    cuda = driver()
    ctx.push()
    try:
        yield
    finally:
        cuda.Context.pop()


def pagelocked(shape: tuple[int, ...], dtype: np.dtype, *, mapped: bool = False) -> np.ndarray:
    """A page-locked host array (required for truly asynchronous copies).

    ``mapped=True`` also maps it into the device's address space (zero-copy:
    :func:`mapped_device_pointer` gives the address a kernel reads it at).
    """
    cuda = driver()
    if mapped:
        return cuda.pagelocked_empty(shape, dtype, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
    return cuda.pagelocked_empty(shape, dtype)


def mapped_device_pointer(host: np.ndarray) -> int:
    """Device address of a ``pagelocked(..., mapped=True)`` array (its HostAllocation's mapping)."""
    return int(host.base.get_device_pointer())


class DeviceBuffer:
    """Linear device memory of ``nbytes``; ``int(buf)`` is the device pointer."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self._alloc = driver().mem_alloc(max(self.nbytes, 1))

    def __int__(self) -> int:
        return int(self._alloc)

    def free(self) -> None:
        if self._alloc is not None:
            self._alloc.free()
            self._alloc = None


class Stream:
    """One CUDA stream; ``handle`` is the integer cudaStream_t TensorRT takes."""

    def __init__(self) -> None:
        self._stream = driver().Stream()

    @property
    def handle(self) -> int:
        return int(self._stream.handle)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def htod(self, dst: DeviceBuffer, src: np.ndarray) -> None:
        """Async host->device copy of all of ``src`` (which must be page-locked)."""
        driver().memcpy_htod_async(int(dst), src, self._stream)

    def dtoh(self, dst: np.ndarray, src: DeviceBuffer) -> None:
        """Async device->host copy filling ``dst`` (page-locked)."""
        driver().memcpy_dtoh_async(dst, int(src), self._stream)

    def record(self, event: "Event") -> None:
        event._event.record(self._stream)


class Event:
    """A CUDA event for per-stage GPU timing.

    ``blocking=True`` makes ``synchronize()`` sleep until the GPU reaches the
    event instead of spinning a CPU core (``event_flags.BLOCKING_SYNC``); timing
    still works. Use it for the one event a frame waits on.
    """

    def __init__(self, *, blocking: bool = False) -> None:
        cuda = driver()
        flags = cuda.event_flags.BLOCKING_SYNC if blocking else cuda.event_flags.DEFAULT
        self._event = cuda.Event(flags)

    def synchronize(self) -> None:
        self._event.synchronize()

    def ms_until(self, later: "Event") -> float:
        """Milliseconds from this event to ``later`` (both must have completed)."""
        return float(self._event.time_till(later._event))


def copy_to_device(dst: DeviceBuffer, src: np.ndarray) -> None:
    """Synchronous host->device copy (calibration batches; not on the per-frame path)."""
    driver().memcpy_htod(int(dst), np.ascontiguousarray(src))
