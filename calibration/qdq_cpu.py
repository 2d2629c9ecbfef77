"""The CPU INT8 variant (``int8-cpu``): Q/DQ with an FP32 remainder, typed for the instruction set.

segrt's ``int8`` artifact is shaped for TensorRT's strongly typed builder (symmetric INT8,
Q/DQ on inputs only, the remainder in FP16). ONNX Runtime on a CPU has no fast FP16 kernels
and cannot fuse input-only Q/DQ into its integer kernels, so on a CPU that graph is several
times slower than FP32. The CPU variant is built from the *same* calibration ranges:

* activations U8 and weights S8 per output channel on x86 (ONNX Runtime's U8S8 kernels, with
  or without VNNI); S8/S8 on ARM (its S8S8 dot-product kernels);
* Q/DQ on the inputs *and outputs* of the quantized ops and an int32 bias, so ONNX Runtime
  fuses ``DQ -> Conv -> Q`` into ``QLinearConv`` (and OpenVINO reads the pairs natively);
* everything else in FP32, including the fused pre/post-processing (uint8 frame in, uint8
  mask out): the I/O contract of the bundle is unchanged;
* a Resize that makes the logits (LR-ASPP's full-resolution bilinear upsample) stays FP32
  (:func:`float_logits_resize`);
* in either ONNX Runtime format, QDQ or QOperator: :func:`faster_format` times both on this
  machine (the Q/DQ graph on OpenVINO too, when installed) and keeps the format of the fastest.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

from segrt.calibration.collect import CalibrationRanges
from segrt.calibration.graph import FLOAT_TYPES, index_graph, op_counts
from segrt.calibration.qdq import (
    DEFAULT_QUANT_OPS,
    _check_ort_supports_cache,
    _count_quantized,
    _quiet_ort_logging,
    auto_excluded_nodes,
)
from segrt.errors import CalibrationError
from segrt.runtime.machine import CpuInfo

FORMATS = ("qdq", "qoperator")
# The CPU graph quantizes what ONNX Runtime has integer kernels for, so activations stay 8-bit
# from one conv to the next (pooling, concatenation, resizing and activations in between); with
# the TensorRT op list alone every one of them is a DQ -> float -> Q round trip. Measured on the
# demo U-Net at 256x512 here (AMD EPYC, loaded): FP32 117 ms, TensorRT op list 83 ms, this list 71 ms.
CPU_QUANT_OPS: tuple[str, ...] = DEFAULT_QUANT_OPS + (
    "MaxPool", "Concat", "Resize", "Relu", "Clip", "Mul", "Sigmoid", "HardSigmoid", "HardSwish",
)
TARGETS = ("cpu", "tensorrt", "both")
LOGITS_RESIZE_REASON = ("resizes the logits: kept FP32 (8-bit logits tie the argmax, and an 8-bit resize at "
                        "full resolution was slower than the FP32 one in ONNX Runtime and OpenVINO here)")
CPU_PRECISION = "int8-cpu"


@dataclass(frozen=True)
class CpuQuantTypes:
    """Activation and weight integer types for one instruction set, and why."""

    activation: str  # "uint8" or "int8"
    weight: str
    reason: str


def cpu_quant_types(cpu: CpuInfo) -> CpuQuantTypes:
    """U8 activations / S8 weights on x86 (VNNI or not); S8/S8 on ARM."""
    if cpu.is_arm:
        return CpuQuantTypes("int8", "int8", f"{cpu.arch}: ONNX Runtime's S8S8 dot-product kernels")
    vnni = "VNNI" if cpu.has_vnni else "no VNNI"
    return CpuQuantTypes("uint8", "int8", f"{cpu.arch} ({vnni}): ONNX Runtime's U8S8 kernels")


@dataclass(frozen=True)
class CpuInt8Conversion:
    model: onnx.ModelProto
    format: str
    types: CpuQuantTypes
    excluded: tuple[str, ...]
    requested_excluded: tuple[str, ...]
    quantized_nodes: int
    kept_float: tuple[str, ...] = ()  # quantizable nodes kept FP32 for speed (float_logits_resize)

    def details(self) -> dict:
        ops = op_counts(self.model)
        return {
            "target": "cpu", "format": self.format, "remainder": "fp32", "remainder_note": None,
            "activation_type": self.types.activation, "weight_type": self.types.weight,
            "types_reason": self.types.reason, "per_channel": True,
            "symmetric": self.types.activation == "int8",
            "quantized_nodes": self.quantized_nodes, "excluded_by_fallback": list(self.requested_excluded),
            "excluded_total": len(self.excluded), "kept_float": {n: LOGITS_RESIZE_REASON for n in self.kept_float},
            "qdq_nodes": ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0),
            "qlinear_nodes": sum(v for k, v in ops.items() if k.startswith("QLinear") or k == "ConvInteger"),
        }


def cpu_int8_conversion(model: onnx.ModelProto, ranges: CalibrationRanges, types: CpuQuantTypes, *,
                        fmt: str = "qdq", exclude_nodes: Iterable[str] = (),
                        op_types: Sequence[str] = DEFAULT_QUANT_OPS) -> CpuInt8Conversion:
    """Quantize the prepared FP32 ``model`` (see :func:`segrt.calibration.qdq.prepare_fp32`) for a CPU."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if fmt not in FORMATS:
        raise CalibrationError(f"unknown CPU INT8 format {fmt!r}", hint="use qdq or qoperator")
    _check_ort_supports_cache()
    requested = tuple(dict.fromkeys(exclude_nodes))
    kept_float = tuple(float_logits_resize(model)) if any(op == "Resize" for op in op_types) else ()
    excluded = tuple(dict.fromkeys(list(auto_excluded_nodes(model)) + list(kept_float) + list(requested)))
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    extra = {
        "ActivationSymmetric": types.activation == "int8",
        "WeightSymmetric": True,
        "DedicatedQDQPair": False,
    }
    with tempfile.TemporaryDirectory(prefix="segrt-qdq-cpu-") as tmp:
        src, dst, cache = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx"), Path(tmp, "ranges.json")
        onnx.save(model, str(src))
        _write_ort_cache(ranges, types, cache)
        with _quiet_ort_logging():
            quantize_static(
                str(src), str(dst), calibration_data_reader=None,
                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=list(op_types), per_channel=True, reduce_range=False,
                activation_type=qtype[types.activation], weight_type=qtype[types.weight],
                nodes_to_exclude=list(excluded), calibrate_method=CalibrationMethod.MinMax,
                extra_options=extra, calibration_cache_path=str(cache),
            )
        q = onnx.load(str(dst))
    quantized = (_count_quantized(q, op_types) if fmt == "qdq"
                 else sum(1 for n in q.graph.node if n.op_type.startswith("QLinear") or n.op_type == "ConvInteger"))
    return CpuInt8Conversion(q, fmt, types, excluded, requested, quantized, kept_float)


def logits_tensors(model: onnx.ModelProto) -> list[str]:
    """The class-score tensors: the input of the fused ArgMax (found walking back from each mask
    output through casts and reshapes), or a float graph output when the graph returns logits."""
    from segrt.calibration.unfuse import MASK_TAIL_OPS

    index = index_graph(model)
    out = []
    for t in index.graph_outputs:
        node = index.producer.get(t)
        while node is not None and node.op_type in MASK_TAIL_OPS:
            node = index.producer.get(node.input[0])
        if node is not None and node.op_type == "ArgMax":
            out.append(node.input[0])
        elif index.elem_type.get(t) in FLOAT_TYPES:
            out.append(t)
    return list(dict.fromkeys(out))


def float_logits_resize(model: onnx.ModelProto) -> dict[str, str]:
    """Resize nodes that produce the logits, with the reason they stay FP32.

    Measured on LR-ASPP at 512x1024 (2-core AMD EPYC, AVX-512 VNNI): quantized, its 21-channel
    full-resolution upsample ran as an 8-bit Resize plus a Q and a DQ of 44 MB (ONNX Runtime
    about 19 ms against 14 ms in FP32; OpenVINO's 8-bit Interpolate 19 ms against 7 ms), and
    8-bit logits make argmax ties that FP32 does not have."""
    index = index_graph(model)
    out = {}
    for t in logits_tensors(model):
        node = index.producer.get(t)
        if node is not None and node.op_type == "Resize":
            out[node.name] = LOGITS_RESIZE_REASON
    return out


def _write_ort_cache(ranges: CalibrationRanges, types: CpuQuantTypes, path: Path) -> None:
    """The shared ranges as ONNX Runtime's cache: one-sided for U8 activations (a post-ReLU
    tensor gets all 256 levels), symmetric for S8."""
    if types.activation == "int8":
        ranges.write_ort_cache(path)
        return
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data
    data = {k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for k, (lo, hi) in ranges.one_sided_ranges().items()}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)


def _cpu_session(model: onnx.ModelProto, threads: int | None):
    """An ONNX Runtime CPU session opened as the runtime opens one."""
    import onnxruntime as ort

    from segrt.runtime.backends.onnxruntime import ORT_DISABLED_OPTIMIZERS

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))


OPENVINO_QDQ = "qdq/openvino"  # the timing key of the Q/DQ graph on OpenVINO (it cannot read QOperator)


def interleaved_ms(models: Mapping[str, onnx.ModelProto], feed: Mapping[str, np.ndarray], *,
                   threads: int | None = None, openvino: bool | None = None) -> dict[str, float]:
    """Median ONNX Runtime CPU ms of each model on ``feed``, timed in alternating rounds; with
    OpenVINO installed (``openvino`` None) also the ``qdq`` model on OpenVINO, as ``qdq/openvino``."""
    from segrt.runtime.auto_precision import interleaved_medians
    from segrt.runtime.backends.openvino import OpenVinoBackend, openvino_available

    calls = {k: (lambda s=s: s.run(None, dict(feed))) for k, s in
             ((k, _cpu_session(m, threads)) for k, m in models.items())}
    if not (openvino_available() if openvino is None else openvino) or "qdq" not in models:
        return interleaved_medians(calls)
    with tempfile.TemporaryDirectory(prefix="segrt-qdq-ov-") as tmp:
        path = Path(tmp, "qdq.onnx")
        onnx.save(models["qdq"], str(path))
        with OpenVinoBackend(path, threads=threads) as ov:
            calls[OPENVINO_QDQ] = lambda: ov.infer(dict(feed))
            return interleaved_medians(calls)


def format_of(timing_key: str) -> str:
    """``qdq/openvino`` -> ``qdq``: the graph format a timing key stands for."""
    return timing_key.split("/", 1)[0]


def faster_format(build: Callable[[str], CpuInt8Conversion], feed: Mapping[str, np.ndarray], *,
                  threads: int | None = None,
                  timer: Callable[..., dict[str, float]] = interleaved_ms) -> tuple[CpuInt8Conversion, dict[str, float]]:
    """Build the QDQ and QOperator graphs, time both here (interleaved; the QDQ graph also on
    OpenVINO when installed, which reads only Q/DQ), keep the format of the fastest run and
    return it with the timings. QOperator is kept only when it beats Q/DQ on every CPU backend:
    on the 2-core AMD EPYC here ONNX Runtime ran LR-ASPP's QOperator graph within noise of its
    Q/DQ graph, while OpenVINO ran the Q/DQ graph 1.5x faster than either."""
    built = {fmt: build(fmt) for fmt in FORMATS}
    ms = {k: round(v, 2) for k, v in timer({f: c.model for f, c in built.items()}, feed, threads=threads).items()}
    best = format_of(min(ms, key=lambda k: ms[k]))
    return built[best], ms


__all__ = ["CPU_PRECISION", "float_logits_resize", "logits_tensors", "CPU_QUANT_OPS", "FORMATS", "TARGETS", "CpuQuantTypes", "CpuInt8Conversion", "cpu_quant_types",
           "cpu_int8_conversion", "faster_format", "format_of", "interleaved_ms", "OPENVINO_QDQ"]
