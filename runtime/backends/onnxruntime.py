"""ONNX Runtime backend: the embedded default, CPU everywhere, CUDA/TensorRT providers when present."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from segrt.errors import BackendError, BackendUnavailableError, first_line
from segrt.runtime.backends.base import Backend, TensorSpec

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}
# "WeightBiasQuantization" turns a float conv bias behind Q/DQ into an int32 bias with
# scale = input_scale * weight_scale computed in the scales' dtype; with the FP16 scales of
# segrt's INT8 graphs that underflows to 0 and every output is garbage (ORT 1.32). TensorRT
# never runs it; a no-op for graphs without Q/DQ. Every session on a segrt artifact uses this.
ORT_DISABLED_OPTIMIZERS = ("WeightBiasQuantization",)
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise BackendUnavailableError("onnxruntime is not installed", hint="pip install onnxruntime") from exc
    return onnxruntime


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def choose_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Requested providers that exist, in order, always ending with the CPU provider.

    ``None`` means the best available (TensorRT > CUDA > CPU)."""
    wanted = list(requested) if requested else list(PREFERRED_PROVIDERS)
    missing = [p for p in wanted if p not in available and p != "CPUExecutionProvider"]
    if requested and missing:
        raise BackendUnavailableError(
            f"ONNX Runtime providers not available here: {', '.join(missing)} (have: {', '.join(available)})",
            hint="install onnxruntime-gpu for CUDA/TensorRT providers",
        )
    chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX file with ONNX Runtime.

    ``threads`` sets intra-op threads (``None``: ONNX Runtime's default, one per core).
    ``spinning`` lets idle worker threads busy-wait for work. Off by default: in a
    pipeline the spinning threads steal the cores that capture, preprocessing and
    rendering need (measured on the 2-core test machine: raw CPU per frame 170 ms
    with spinning vs 104 ms without, and higher pipeline throughput).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike[str], *, threads: int | None = None,
                 providers: Sequence[str] | None = ("CPUExecutionProvider",),
                 optimization: str = "all", spinning: bool = False) -> None:
        super().__init__()
        self.onnx_path = Path(onnx_path)
        if threads is not None and threads < 0:
            raise BackendError(f"threads must be >= 0, got {threads}")
        self.threads = threads
        self.requested_providers = tuple(providers) if providers else None
        self.optimization = optimization
        self.spinning = spinning
        self._session = None
        self._output_names: list[str] = []

    def _open(self) -> None:
        ort = _ort()
        if not self.onnx_path.is_file():
            raise BackendError(f"{self.onnx_path} does not exist", hint="check the bundle or re-export it")
        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.optimization]
        so.log_severity_level = 3
        spin = "1" if self.spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        providers = choose_providers(self.requested_providers, available_providers())
        try:
            self._session = ort.InferenceSession(str(self.onnx_path), sess_options=so, providers=providers,
                                                 disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))
        except Exception as exc:  # ORT raises its own non-exported exception types
            first = first_line(exc, 400)
            hint = ("ONNX Runtime refused or could not find the model's external data file: keep it beside the "
                    ".onnx file, inside the bundle folder" if "external data" in first.lower()
                    else "the file may be corrupt or truncated; re-export the bundle")
            raise BackendError(f"ONNX Runtime cannot load {self.onnx_path}: {first}", hint=hint) from exc

        def spec(a) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) else -1 for d in a.shape)
            return TensorSpec(a.name, shape, np.dtype(_ORT_DTYPES.get(a.type, np.float32)))

        self._inputs = tuple(spec(a) for a in self._session.get_inputs())
        self._outputs = tuple(spec(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self._outputs]

    def _close(self) -> None:
        self._session = None

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session is not None else []

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        try:
            outs = self._session.run(self._output_names, dict(inputs))
        except Exception as exc:  # ORT's exception classes are not importable by name
            raise BackendError(f"ONNX Runtime failed on {self.onnx_path.name}: {first_line(exc, 400)}") from exc
        self.last_times.compute_ms = (time.perf_counter() - t0) * 1e3
        return dict(zip(self._output_names, outs))

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "providers": self.providers,
                "intra_op_threads": self.threads or "default", "spinning": self.spinning,
                "onnx": self.onnx_path.name}
