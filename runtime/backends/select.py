"""Pick the backend for a bundle: TensorRT when a compatible engine exists, else ONNX Runtime.

The TensorRT branch (provenance check, rebuild or fall back with a message) is
filled in by the TensorRT backend work; until an engine exists, ``auto`` means
ONNX Runtime.
"""
from __future__ import annotations

import logging

from segrt.errors import ConfigError
from segrt.runtime.backends.base import Backend
from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segrt.runtime.bundle import Bundle

log = logging.getLogger("segrt.backend")
BACKENDS = ("auto", "onnxruntime", "tensorrt")


def backend_for_bundle(bundle: Bundle, *, backend: str = "auto", precision: str = "fp32",
                       threads: int | None = None) -> Backend:
    """An unopened backend for ``bundle`` at ``precision``; open it (or use ``with``)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint="use one of: " + ", ".join(BACKENDS))
    if backend == "tensorrt":
        from segrt.errors import BackendUnavailableError
        raise BackendUnavailableError("the TensorRT backend is not available in this build",
                                      hint="use --backend onnxruntime")
    return OnnxRuntimeBackend(bundle.onnx_path(precision), threads=threads)
