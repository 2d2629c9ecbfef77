"""OpenVINO backend: Intel's CPU runtime, reading the bundle's ONNX files directly.

Runs the FP32 graph and the CPU INT8 Q/DQ graph (``int8-cpu``), whose Q/DQ pairs OpenVINO
turns into its own integer kernels (VNNI/AMX on Intel CPUs that have them). Optional:
``pip install 'segrt[openvino]'``. ``--precision auto`` picks it only where it measures faster
than ONNX Runtime. On a 2-core AMD EPYC with AVX-512 VNNI its oneDNN kernels ran the CPU INT8
graph's convolutions in int8 about 5x faster than its FP32 ones (demo U-Net), where ONNX
Runtime's QLinearConv gained about 1.5x; FP32 graphs ran at about ONNX Runtime's speed.

The inference precision is pinned to f32: OpenVINO would otherwise run FP32 graphs in bf16
on CPUs with AMX, which changes the masks without the accuracy gate having seen it.

Logits come back channel-last in memory (``channel_last``): OpenVINO's CPU plugin computes in a
blocked/NHWC layout and its reorder to a plain NCHW output is slow for a large tensor (LR-ASPP,
21x512x1024 float: about half the graph's time on a 2-core AMD EPYC, in FP32 and INT8 alike).
Asked for NHWC it skips that reorder; the backend returns an (N, C, H, W) *view* of the NHWC
buffer, so callers see the usual shape and values, and :class:`~segrt.runtime.postprocess.MaskDecoder`
takes the argmax over the contiguous channel axis.
"""
from __future__ import annotations

import os
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Mapping, Sequence

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

    def __init__(self, onnx_path: str | os.PathLike[str], *, threads: int | None = None, device: str = "CPU",
                 channel_last: Sequence[str] = ()) -> None:
        super().__init__()
        self.onnx_path = Path(onnx_path)
        if threads is not None and threads < 0:
            raise BackendError(f"threads must be >= 0, got {threads}")
        self.threads = threads
        self.device = device
        self.channel_last = tuple(channel_last)  # 4-D outputs delivered NHWC in memory, NCHW in shape
        self._transposed: tuple[bool, ...] = ()
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
            model = _with_channel_last_outputs(ov, core.read_model(str(self.onnx_path)), self.channel_last)
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

        def nchw(s: TensorSpec, last: bool) -> TensorSpec:
            return TensorSpec(s.name, (s.shape[0], s.shape[3], s.shape[1], s.shape[2]), s.dtype) if last else s

        self._transposed = tuple(p.get_any_name() in self.channel_last and len(p.get_partial_shape()) == 4
                                 for p in self._compiled.outputs)
        self._inputs = tuple(spec(p) for p in self._compiled.inputs)
        self._outputs = tuple(nchw(spec(p), last) for p, last in zip(self._compiled.outputs, self._transposed))
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
        out = {}
        for i, spec in enumerate(self._outputs):
            data = self._request.get_output_tensor(i).data
            out[spec.name] = data.transpose(0, 3, 1, 2) if self._transposed[i] else data  # a view, no copy
        return out

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "device": self.device, "openvino": self._version,
                "threads": self.threads or "default", "onnx": self.onnx_path.name,
                "channel_last": [s.name for s, last in zip(self._outputs, self._transposed) if last]}


def _with_channel_last_outputs(ov, model, names: Sequence[str]):
    """``model`` with its 4-D outputs named in ``names`` delivered as NHWC tensors (the model's
    own layout stays NCHW); other outputs unchanged."""
    wanted = [i for i, p in enumerate(model.outputs)
              if p.get_names() & set(names) and p.get_partial_shape().rank.get_length() == 4]
    if not wanted:
        return model
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    for i in wanted:
        ppp.output(i).model().set_layout(ov.Layout("NCHW"))
        ppp.output(i).tensor().set_layout(ov.Layout("NHWC"))
    return ppp.build()


def _reason(exc: Exception) -> str:
    """The informative line of an OpenVINO exception (its first line is a C++ source location)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("-- "):  # the frontend's "failed operations" list
            return ln[3:][:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]


__all__ = ["OpenVinoBackend", "openvino_available"]
