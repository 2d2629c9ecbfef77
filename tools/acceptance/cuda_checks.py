"""Small cuda-python helpers for the CUDA-only acceptance steps (no TensorRT needed).

The runtime calls go through :mod:`segrt.runtime.cuda_cudart` (``cudart()``, ``check``);
the primary-context checks need the driver API (``cuda.bindings.driver``), wrapped
the same way here. Every name used is listed in :data:`RUNTIME_NAMES` /
:data:`DRIVER_NAMES`, which ``tests/test_acceptance.py`` checks on the installed module.
"""
from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from segrt.errors import BackendUnavailableError, EngineError
from segrt.runtime.cuda_cudart import check, cudart

RUNTIME_NAMES = ("cudaGetDeviceCount", "cudaSetDevice", "cudaMalloc", "cudaFree", "cudaHostAlloc", "cudaFreeHost",
                 "cudaHostAllocDefault", "cudaStreamCreateWithFlags", "cudaStreamNonBlocking", "cudaStreamDestroy",
                 "cudaStreamSynchronize", "cudaStreamIsCapturing", "cudaStreamCaptureStatus", "cudaEventCreate",
                 "cudaEventCreateWithFlags", "cudaEventBlockingSync", "cudaEventRecord", "cudaEventSynchronize",
                 "cudaEventElapsedTime", "cudaEventDestroy", "cudaMemcpyAsync", "cudaMemcpyKind", "cudaMemsetAsync",
                 "cudaGetLastError", "cudaError_t")
DRIVER_NAMES = ("cuInit", "cuDeviceGet", "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease",
                "cuDevicePrimaryCtxGetState", "cuCtxPushCurrent", "cuCtxPopCurrent", "cuCtxGetCurrent",
                "cuGetErrorName", "CUresult")


def driver():
    """``cuda.bindings.driver`` (the driver API of cuda-python)."""
    try:
        from cuda.bindings import driver as drv  # noqa: PLC0415 - lazy
    except ImportError as exc:
        raise BackendUnavailableError("cuda-python is not installed") from exc
    return drv


def dcheck(result, what: str):
    """Unpack a driver-API ``(CUresult, *values)``; EngineError naming the error on failure."""
    drv = driver()
    err, *values = result
    if err != drv.CUresult.CUDA_SUCCESS:
        name = drv.cuGetErrorName(err)[1]
        raise EngineError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def host_array(ptr: int, nbytes: int) -> np.ndarray:
    """A uint8 numpy view of ``nbytes`` of host memory at ``ptr`` (a cudaHostAlloc block)."""
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(int(ptr)))


class PinnedBlock:
    """``nbytes`` of page-locked host memory, its uint8 view, and a device buffer of the same size."""

    def __init__(self, nbytes: int) -> None:
        rt = cudart()
        self.nbytes = int(nbytes)
        self._host = self._dev = None
        self._host = check(rt.cudaHostAlloc(self.nbytes, rt.cudaHostAllocDefault), "cudaHostAlloc")
        self.host = host_array(int(self._host), self.nbytes)
        self._dev = check(rt.cudaMalloc(self.nbytes), "cudaMalloc")

    @property
    def host_ptr(self) -> int:
        return int(self._host)

    @property
    def dev_ptr(self) -> int:
        return int(self._dev)

    def free(self) -> None:
        rt = cudart()
        self.host = None
        if self._dev is not None:
            check(rt.cudaFree(self._dev), "cudaFree")
            self._dev = None
        if self._host is not None:
            check(rt.cudaFreeHost(self._host), "cudaFreeHost")
            self._host = None


@contextmanager
def stream() -> Iterator[object]:
    """A non-blocking CUDA stream for the block, destroyed after it."""
    rt = cudart()
    s = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
    try:
        yield s
    finally:
        check(rt.cudaStreamDestroy(s), "cudaStreamDestroy")


def event(blocking: bool = False):
    rt = cudart()
    if blocking:  # the host thread sleeps in cudaEventSynchronize instead of spinning a core
        return check(rt.cudaEventCreateWithFlags(rt.cudaEventBlockingSync), "cudaEventCreateWithFlags")
    return check(rt.cudaEventCreate(), "cudaEventCreate")


def copy_h2d(block: PinnedBlock, s) -> None:
    rt = cudart()
    check(rt.cudaMemcpyAsync(block.dev_ptr, block.host_ptr, block.nbytes,
                             rt.cudaMemcpyKind.cudaMemcpyHostToDevice, s), "cudaMemcpyAsync H2D")


def copy_d2h(block: PinnedBlock, s) -> None:
    rt = cudart()
    check(rt.cudaMemcpyAsync(block.host_ptr, block.dev_ptr, block.nbytes,
                             rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync D2H")


def is_capturing(s) -> bool:
    rt = cudart()
    status = check(rt.cudaStreamIsCapturing(s), "cudaStreamIsCapturing")
    return status != rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone
