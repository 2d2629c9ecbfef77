"""OpenVINO backend: Intel's CPU runtime, reading the bundle's ONNX files directly.

Runs the FP32 graph and the CPU INT8 Q/DQ graph (``int8-cpu``), whose Q/DQ pairs OpenVINO
turns into its own integer kernels (VNNI/AMX on Intel CPUs that have them). Optional:
``pip install 'segrt[openvino]'``. ``--precision auto`` picks it only where it measures faster
than ONNX Runtime (on the AMD EPYC this was written on, ONNX Runtime was faster).

The inference precision is pinned to f32: OpenVINO would otherwise run FP32 graphs in bf16
on CPUs with AMX, which changes the masks without the accuracy gate having seen it.
"""
from __future__ import annotations

import os
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Mapping

import numpy as np

from segrt.errors import BackendError, BackendUnavailableError
from segrt.runtime.backends.base import Backend, TensorSpec

_OV_DTYPES = {"u8": np.uint8, "i8": np.int8, "f32": np.float32, "f16": np.float16, "i32": np.int32,
              "i64": np.int64, "boolean": np.bool_}


def openvino_available() -> bool:
    return find_spec("openvino") is not None


def _ov():
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailableError("OpenVINO is not installed", hint="pip install 'segrt[openvino]'") from exc
    return openvino


class OpenVinoBackend(Backend):
    """Runs an ONNX file with OpenVINO on the CPU (``threads``: inference threads, None = OpenVINO's)."""

    name = "openvino"

    def __init__(self, onnx_path: str | os.PathLike[str], *, threads: int | None = None, device: str = "CPU") -> None:
        super().__init__()
        self.onnx_path = Path(onnx_path)
        if threads is not None and threads < 0:
            raise BackendError(f"threads must be >= 0, got {threads}")
        self.threads = threads
        self.device = device
        self._compiled = None
        self._request = None
        self._input_names: set[str] = set()
        self._version = ""

    def _open(self) -> None:
        ov = _ov()
        if not self.onnx_path.is_file():
            raise BackendError(f"{self.onnx_path} does not exist", hint="check the bundle or re-export it")
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        try:
            model = core.read_model(str(self.onnx_path))
            self._compiled = core.compile_model(model, self.device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses from C++
            raise BackendError(f"OpenVINO cannot load {self.onnx_path}: {_reason(exc)}",
                               hint="the file may be corrupt; or run it with --backend onnxruntime") from exc
        self._request = self._compiled.create_infer_request()
        self._version = str(ov.get_version())

        def spec(port) -> TensorSpec:
            shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
            dtype = np.dtype(_OV_DTYPES.get(port.get_element_type().get_type_name(), np.float32))
            return TensorSpec(port.get_any_name(), shape, dtype)

        self._inputs = tuple(spec(p) for p in self._compiled.inputs)
        self._outputs = tuple(spec(p) for p in self._compiled.outputs)
        self._input_names = {s.name for s in self._inputs}

    def _close(self) -> None:
        self._request = None
        self._compiled = None

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        unknown = [k for k in inputs if k not in self._input_names]
        if unknown or len(inputs) != len(self._input_names):
            raise BackendError(f"inputs {sorted(inputs)} do not match the model's {sorted(self._input_names)}")
        t0 = time.perf_counter()
        try:
            self._request.infer(dict(inputs))
        except Exception as exc:  # RuntimeError from C++ on a wrong shape/type
            raise BackendError(f"OpenVINO failed on {self.onnx_path.name}: {str(exc).strip().splitlines()[0][:300]}") from exc
        self.last_times.compute_ms = (time.perf_counter() - t0) * 1e3
        return {spec.name: self._request.get_output_tensor(i).data for i, spec in enumerate(self._outputs)}

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "device": self.device, "openvino": self._version,
                "threads": self.threads or "default", "onnx": self.onnx_path.name}


def _reason(exc: Exception) -> str:
    """The informative line of an OpenVINO exception (its first line is a C++ source location)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("-- "):  # the frontend's "failed operations" list
            return ln[3:][:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]


__all__ = ["OpenVinoBackend", "openvino_available"]
