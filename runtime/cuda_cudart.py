"""The cuda-python (``cuda.bindings.runtime``) calls segrt makes: CUDA graph capture and a device query.

PyCUDA has no stream-capture API, so the optional CUDA graph of the TensorRT
backend is captured with the CUDA runtime through cuda-python, on the same
stream handle. Every call returns ``(err, *values)``; :func:`check` turns a
non-success into an EngineError. ``cuda.bindings`` imports without a GPU, so
``tests/test_trt_bindings_api.py`` checks each name used here on the installed module.

Capture rules (as trtexec): run the engine once outside capture (warm-up), then
capture one ``execute_async_v3``; re-capture after any input-shape or address
change; data-dependent output shapes cannot be captured.
"""
from __future__ import annotations

import logging
from typing import Callable

from segrt.errors import BackendUnavailableError, EngineError

log = logging.getLogger("segrt.cuda")

CUDA_PYTHON_HINT = ("pip install cuda-python (major version = your CUDA major: 12 on JetPack 6, "
                    "13 on JetPack 7 / desktop cu13)")


def cudart():
    """``cuda.bindings.runtime`` (cuda-python >= 12.x); the old ``from cuda import cudart`` is gone in 13."""
    try:
        from cuda.bindings import runtime  # noqa: PLC0415 - lazy
    except ImportError as exc:
        raise BackendUnavailableError("cuda-python is not installed (needed for CUDA graphs)",
                                      hint=CUDA_PYTHON_HINT) from exc
    return runtime


def check(result, what: str):
    """Unpack ``(err, *values)``; raise EngineError naming the CUDA error on failure."""
    rt = cudart()
    err, *values = result
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise EngineError(f"{what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


#: What cuda-python raises instead of returning an error code when it cannot load the driver:
#: 12.x raises ``RuntimeError: Failed to dlopen libcuda.so.1`` (13.x returns cudaErrorInsufficientDriver).
NO_DRIVER_ERRORS = (RuntimeError, OSError)


def device_count() -> int:
    """Number of CUDA devices the runtime sees (0 without a driver, whatever the cuda-python version)."""
    rt = cudart()
    try:
        err, n = rt.cudaGetDeviceCount()
    except NO_DRIVER_ERRORS as exc:
        log.debug("cudaGetDeviceCount: %s", exc)
        return 0
    return int(n) if err == rt.cudaError_t.cudaSuccess else 0


def device_info(index: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, compute capability) from cudaGetDeviceProperties."""
    rt = cudart()
    try:
        result = rt.cudaGetDeviceProperties(index)
    except NO_DRIVER_ERRORS as exc:
        raise BackendUnavailableError(f"CUDA driver unavailable: {exc}",
                                      hint="install the NVIDIA driver; check with nvidia-smi") from exc
    prop = check(result, "cudaGetDeviceProperties")
    name = prop.name
    name = name.split(b"\x00", 1)[0].decode() if isinstance(name, (bytes, bytearray)) else str(name)
    return name, (int(prop.major), int(prop.minor))


def set_device(index: int) -> None:
    """Make ``index`` the CUDA runtime's device on this thread (cudaSetDevice: its primary context)."""
    rt = cudart()
    try:
        result = rt.cudaSetDevice(int(index))
    except NO_DRIVER_ERRORS as exc:
        raise BackendUnavailableError(f"CUDA driver unavailable: {exc}",
                                      hint="install the NVIDIA driver; check with nvidia-smi") from exc
    try:
        check(result, f"cudaSetDevice({index})")
    except EngineError as exc:
        raise BackendUnavailableError(str(exc), hint="check the device index with nvidia-smi") from exc


def clear_error() -> str:
    """Reset the runtime's last (non-sticky) error with cudaGetLastError; return its name ("" if none)."""
    rt = cudart()
    (err,) = rt.cudaGetLastError()
    if err == rt.cudaError_t.cudaSuccess:
        return ""
    name = rt.cudaGetErrorName(err)[1]
    return name.decode() if isinstance(name, bytes) else str(name)


def capture_or_none(stream_handle: int, enqueue: Callable[[], bool], what: str) -> "CudaGraph | None":
    """A captured graph of ``enqueue()`` on the stream, or None when capture fails.

    A failed capture (refused, invalidated by an op that cannot be captured,
    or ``enqueue`` returning False) is not an error for the caller: the work
    already ran once outside capture. It clears the CUDA error
    (cudaGetLastError, as trtexec does), logs one warning naming the cause,
    and returns None so the caller runs without a graph from then on.
    """
    graph = CudaGraph(stream_handle)
    try:
        graph.capture(enqueue)
    except EngineError as exc:
        graph.release()
        cleared = clear_error()
        log.warning("CUDA graph capture of %s failed (%s%s); running without a CUDA graph", what, exc.message,
                    f", cleared {cleared}" if cleared else "")
        return None
    return graph


class CudaGraph:
    """One captured ``execute_async_v3`` replayed with cudaGraphLaunch on ``stream_handle``."""

    def __init__(self, stream_handle: int) -> None:
        self._rt = cudart()
        self._stream = self._rt.cudaStream_t(int(stream_handle))
        self._graph = None
        self._exec = None

    def capture(self, enqueue) -> None:
        """Capture what ``enqueue()`` puts on the stream. ``enqueue`` returns TensorRT's bool."""
        rt = self._rt
        self.release()
        check(rt.cudaStreamBeginCapture(self._stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            ok = enqueue()
        finally:
            # Always end the capture, even on failure, or the stream stays in capture mode.
            graph = check(rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        if not ok:
            if graph is not None:
                rt.cudaGraphDestroy(graph)
            raise EngineError("TensorRT could not enqueue the engine inside a CUDA graph capture",
                              hint="run without --cuda-graph")
        self._graph = graph
        self._exec = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    @property
    def ready(self) -> bool:
        return self._exec is not None

    def launch(self) -> None:
        check(self._rt.cudaGraphLaunch(self._exec, self._stream), "cudaGraphLaunch")

    def release(self) -> None:
        rt = self._rt
        if self._exec is not None:
            rt.cudaGraphExecDestroy(self._exec)
            self._exec = None
        if self._graph is not None:
            rt.cudaGraphDestroy(self._graph)
            self._graph = None
