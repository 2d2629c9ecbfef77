"""INT8 Q/DQ ONNX from FP32 and calibration ranges, shaped for TensorRT's strongly typed builder.

Quantization itself is ONNX Runtime's ``quantize_static`` (QDQ format) fed with the ranges
of :mod:`segrt.calibration.collect` through its range cache, with the settings TensorRT
needs:

* INT8 activations and weights, **symmetric** (zero point 0): ``ActivationSymmetric`` and
  ``WeightSymmetric``; weights per output channel (``per_channel``; the DequantizeLinear
  carries ``axis`` and one scale per output channel);
* Q/DQ on the *inputs* of the quantized ops only (``OpTypesToExcludeOutputQuantization``):
  TensorRT fuses a conv's output quantization from its consumer's input Q/DQ; quantizing
  outputs as well would add re-quantization layers;
* biases left in floating point (``QuantizeBias=False``): TensorRT folds the bias in
  higher precision and does not expect an int32 bias Q/DQ;
* the fused pre/postprocessing (uint8 Cast, Transpose, normalisation; ArgMax and the
  uint8 cast of the mask) and shape arithmetic are excluded, as are nodes the sensitivity
  fallback removed.

The non-quantized remainder: ONNX Runtime leaves it in FP32, and a strongly typed
TensorRT network then runs it in FP32 (FP32 islands between INT8 layers, with reformat
layers: the usual reason INT8 ends up no faster than FP16). So by default
(``remainder="fp16"``) the Q/DQ graph is passed through the FP16 pass: the remainder runs
in FP16 with the same FP32 exceptions as the FP16 artifact, and the Q/DQ nodes take FP16
inputs and FP16 scales so each DequantizeLinear feeds its consumer FP16 directly
(what ModelOpt's ``high_precision_dtype="fp16"`` produces). FP16 Q/DQ needs opset >= 19, so
the graph is upgraded to opset 19 first (TensorRT 10.x parses up to 20); if the upgrade is
impossible the remainder stays FP32 and the artifact details say why.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import onnx

from segrt.calibration.collect import CalibrationRanges
from segrt.calibration.fp16 import DEFAULT_KEEP_FP32_OPS, fp16_conversion
from segrt.calibration.graph import (
    ai_onnx_opset,
    ensure_node_names,
    hoist_constants,
    index_graph,
    op_counts,
    postprocess_nodes,
    preprocess_nodes,
    shape_nodes,
)
from segrt.errors import CalibrationError, first_line
from segrt.runtime.versions import at_least

log = logging.getLogger("segrt.calibration.qdq")

# Ops that get Q/DQ on their inputs: the weighted ops TensorRT runs in INT8, plus the ops it
# fuses with them (the residual Add, pooling). Element-wise activations follow in FP16.
DEFAULT_QUANT_OPS: tuple[str, ...] = (
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool",
)
# The ops the sensitivity fallback ranks: where almost all INT8 error comes from.
WEIGHTED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FP16_QDQ_OPSET = 19
REMAINDERS = ("fp16", "fp32")


def prepare_fp32(model: onnx.ModelProto, *, min_opset: int | None = None) -> tuple[onnx.ModelProto, str | None]:
    """A normalised copy of ``model`` every INT8 step uses: constants as initializers, unique
    node names, opset raised to ``min_opset`` when asked. Returns (model, upgrade problem)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    problem = None
    if min_opset is not None and ai_onnx_opset(m) < min_opset:
        try:
            m = onnx.version_converter.convert_version(m, min_opset)
        except Exception as exc:  # the converter raises bare RuntimeErrors from C++
            problem = f"cannot upgrade opset {ai_onnx_opset(model)} -> {min_opset}: {first_line(exc)}"
            m = onnx.ModelProto()
            m.CopyFrom(model)
    hoist_constants(m)
    ensure_node_names(m)
    return m, problem


def auto_excluded_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Nodes never quantized, with the reason: fused pre/postprocessing and shape arithmetic."""
    index = index_graph(model)
    out = {}
    for name in shape_nodes(index):
        out[name] = "shape computation"
    for name in preprocess_nodes(index):
        out[name] = "fused preprocessing"
    for name in postprocess_nodes(index):
        out[name] = "fused postprocessing"
    return out


def quantizable_nodes(model: onnx.ModelProto, op_types: Iterable[str] = WEIGHTED_OPS,
                      exclude: Iterable[str] = ()) -> list[str]:
    """Names of nodes of ``op_types`` that would be quantized (not excluded), in graph order."""
    ops, ex = set(op_types), set(exclude)
    return [n.name for n in model.graph.node if n.op_type in ops and n.name not in ex]


@dataclass(frozen=True)
class Int8Conversion:
    """The Q/DQ model and what went into it."""

    model: onnx.ModelProto
    excluded: tuple[str, ...]  # every node excluded (auto + requested)
    requested_excluded: tuple[str, ...]
    remainder: str  # "fp16" or "fp32"
    remainder_note: str | None
    quantized_nodes: int  # nodes of the op types that got Q/DQ inputs
    fp16: dict | None = None  # the FP16 pass summary when remainder == "fp16"
    ops: dict = field(default_factory=dict)

    def details(self) -> dict:
        return {
            "remainder": self.remainder, "remainder_note": self.remainder_note,
            "quantized_nodes": self.quantized_nodes, "excluded_by_fallback": list(self.requested_excluded),
            "excluded_total": len(self.excluded), "fp16_pass": self.fp16, "opset": ai_onnx_opset(self.model),
            "qdq_nodes": self.ops.get("QuantizeLinear", 0) + self.ops.get("DequantizeLinear", 0),
        }


class _DropOrtNoise(logging.Filter):
    """quantize_static logs advice about its own pre-processing script on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "pre-process" not in msg and "pre-processing" not in msg


@contextlib.contextmanager
def _quiet_ort_logging():
    root = logging.getLogger()
    f = _DropOrtNoise()
    root.addFilter(f)
    handlers = list(root.handlers)
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)
        for h in handlers:
            h.removeFilter(f)


# quantize_static(calibration_cache_path=...) (precomputed ranges): verified on 1.30 and 1.32;
# 1.27-1.28 have the parameter but quantize worse, older releases lack it (1.23.2, the newest
# wheel for Python 3.10 / JetPack 6, among them).
ORT_FOR_PRECOMPUTED_RANGES = (1, 30)


def precomputed_ranges_unsupported() -> str | None:
    """Why this onnxruntime cannot quantize with precomputed ranges, or None when it can."""
    import onnxruntime

    have = str(onnxruntime.__version__)
    if at_least(have, ORT_FOR_PRECOMPUTED_RANGES):
        return None
    need = ".".join(map(str, ORT_FOR_PRECOMPUTED_RANGES))
    return f"INT8 quantization with precomputed ranges needs onnxruntime >= {need}; this is {have}"


def _check_ort_supports_cache() -> None:
    why = precomputed_ranges_unsupported()
    if why:
        need = ".".join(map(str, ORT_FOR_PRECOMPUTED_RANGES))
        raise CalibrationError(why, hint=f"pip install -U 'onnxruntime>={need}' (Python >= 3.11; on JetPack 6, "
                                         "quantize on a desktop and copy the bundle)")
    from onnxruntime.quantization import quantize_static
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        import onnxruntime
        raise CalibrationError(
            f"onnxruntime {onnxruntime.__version__} has no quantize_static(calibration_cache_path=...)",
            hint="reinstall onnxruntime >= 1.30")


def int8_conversion(model: onnx.ModelProto, ranges: CalibrationRanges, *, exclude_nodes: Iterable[str] = (),
                    op_types: Sequence[str] = DEFAULT_QUANT_OPS, per_channel: bool = True,
                    remainder: str = "fp16", keep_fp32_ops: Iterable[str] = DEFAULT_KEEP_FP32_OPS,
                    prepared: bool = False, workdir: str | None = None) -> Int8Conversion:
    """Quantize ``model`` to INT8 Q/DQ with ``ranges``; see the module docstring.

    ``prepared=True`` says ``model`` already went through :func:`prepare_fp32` (the caller
    calibrated that exact graph); otherwise it is prepared here.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if remainder not in REMAINDERS:
        raise CalibrationError(f"unknown remainder precision {remainder!r}", hint="use fp16 or fp32")
    _check_ort_supports_cache()
    note = None
    if prepared:
        m = model
    else:
        m, note = prepare_fp32(model, min_opset=FP16_QDQ_OPSET if remainder == "fp16" else None)
    if remainder == "fp16" and ai_onnx_opset(m) < FP16_QDQ_OPSET:
        note = note or f"opset {ai_onnx_opset(m)} < {FP16_QDQ_OPSET}: FP16 Q/DQ scales need opset 19"
        remainder = "fp32"
    requested = tuple(dict.fromkeys(exclude_nodes))
    auto = auto_excluded_nodes(m)
    excluded = tuple(dict.fromkeys(list(auto) + list(requested)))
    known = {n.name for n in m.graph.node}
    unknown = [n for n in requested if n not in known]
    if unknown:
        raise CalibrationError(f"cannot exclude unknown nodes {unknown[:5]}", hint="node names come from the FP32 ONNX")
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        # ORT would otherwise enlarge weight scales (up to 1000x here) so that an int32 bias
        # scale stays representable; with the bias in float that only destroys the weights.
        "QDQDisableWeightAdjustForInt32Bias": True,
        "OpTypesToExcludeOutputQuantization": list(op_types),
        "DedicatedQDQPair": False,
    }
    with tempfile.TemporaryDirectory(prefix="segrt-qdq-", dir=workdir) as tmp:
        src, dst, cache = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx"), Path(tmp, "ranges.json")
        onnx.save(m, str(src))
        ranges.write_ort_cache(cache)
        with _quiet_ort_logging():
            quantize_static(
                str(src), str(dst), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(op_types), per_channel=per_channel, reduce_range=False,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=list(excluded), calibrate_method=CalibrationMethod.MinMax,
                extra_options=extra, calibration_cache_path=str(cache),
            )
        q = onnx.load(str(dst))
    # ORT may leave value_info from its own shape inference; the graph stays valid without it.
    quantized = _count_quantized(q, op_types)
    fp16_summary = None
    if remainder == "fp16":
        conv = fp16_conversion(q, keep_fp32_ops=keep_fp32_ops)
        q = conv.model
        fp16_summary = conv.summary()
    return Int8Conversion(model=q, excluded=excluded, requested_excluded=requested, remainder=remainder,
                          remainder_note=note, quantized_nodes=quantized, fp16=fp16_summary, ops=op_counts(q))


def _count_quantized(model: onnx.ModelProto, op_types: Iterable[str]) -> int:
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    ops = set(op_types)
    return sum(1 for n in model.graph.node if n.op_type in ops and any(x in dq_out for x in n.input))


def int8_onnx_from_fp32(model: onnx.ModelProto, ranges: CalibrationRanges, *, exclude_nodes: Iterable[str] = (),
                        op_types: Sequence[str] = DEFAULT_QUANT_OPS, per_channel: bool = True,
                        remainder: str = "fp16") -> onnx.ModelProto:
    """The INT8 Q/DQ model (I/O names and types unchanged). See :func:`int8_conversion`."""
    return int8_conversion(model, ranges, exclude_nodes=exclude_nodes, op_types=op_types,
                           per_channel=per_channel, remainder=remainder).model
