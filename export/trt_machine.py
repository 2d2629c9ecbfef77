"""The machine a TensorRT engine is built on: which GPU, on which device, on which platform.

* :func:`gpu_identity`: (GPU name, compute capability), through PyCUDA or cuda-python.
* :func:`on_device`: run a build on the CUDA device asked for (``--device N``); TensorRT
  builds on the device of the current context, so every build pushes that device's
  primary context (or calls cudaSetDevice when only cuda-python is present).
* :func:`machine_provenance`: CPU architecture, Jetson module and DLA core count,
  recorded beside the engine (every Orin module reports GPU "Orin", SM 8.7).
"""
from __future__ import annotations

import contextlib
import platform
from typing import Iterator

from segrt.errors import BackendUnavailableError, EngineError
from segrt.runtime.backends.tensorrt import dla_core_count
from segrt.runtime.trt_api import jetson_model


def gpu_identity(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability): PyCUDA when present, else cuda-python."""
    try:
        from segrt.runtime.cuda_pycuda import device_info  # noqa: PLC0415
        return device_info(device)
    except BackendUnavailableError as first:
        try:
            from segrt.runtime.cuda_cudart import device_count, device_info as cudart_info  # noqa: PLC0415
            if device_count() > device:
                return cudart_info(device)
        except (BackendUnavailableError, EngineError):
            pass
        raise BackendUnavailableError("no NVIDIA GPU is visible here", hint=first.hint) from first


@contextlib.contextmanager
def on_device(device: int) -> Iterator[None]:
    """Run the block on CUDA device ``device``: TensorRT builds on the current context's device.

    PyCUDA present: push the device's primary context (the one TensorRT's runtime calls use).
    Otherwise cuda-python's cudaSetDevice. Without either: BackendUnavailableError.
    """
    from segrt.runtime import cuda_cudart, cuda_pycuda  # noqa: PLC0415 - GPU only

    try:
        ctx = cuda_pycuda.primary_context(device)
    except BackendUnavailableError as no_pycuda:
        try:
            cuda_cudart.set_device(device)
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"cannot select CUDA device {device}: {exc.message}",
                                          hint=no_pycuda.hint) from exc
        yield
        return
    with cuda_pycuda.current(ctx):
        yield


def machine_provenance(trt) -> dict[str, object]:
    """Where an engine was built, beyond the GPU: CPU architecture, Jetson module, DLA cores.

    Every Orin module reports the GPU name "Orin" and SM 8.7, and a plan is not
    portable across platforms, so these are recorded and checked before running.
    """
    jetson = jetson_model()
    return {"cpu_arch": platform.machine(), "jetson_model": jetson,
            "dla_cores": dla_core_count(trt) if jetson else 0}
