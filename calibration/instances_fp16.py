"""FP16 Mask R-CNN: the backbone, FPN and heads in FP16; detection logic stays FP32.

Only convolutions, their ReLUs, pooling, the FPN's upsampling and the residual/FPN additions
between them compute in FP16 (an allow-list, so nothing new slips in). Everything else keeps
FP32: RoiAlign, NonMaxSuppression, TopK, box decoding (the Gemm heads' deltas onwards),
score thresholds, and all shape arithmetic. The conversion itself is
:func:`segrt.calibration.fp16.fp16_conversion`; this module only chooses the nodes. Compare
the result with FP32 through :func:`segrt.calibration.detection_gate.detection_agreement`.
"""
from __future__ import annotations

from typing import Iterable

import onnx

from segrt.calibration.fp16 import Fp16Conversion, fp16_conversion

FP16_OPS = frozenset({"Conv", "ConvTranspose", "Relu", "MaxPool", "Resize"})


def fp16_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes allowed to compute in FP16: :data:`FP16_OPS`, and Adds fed only by them."""
    producer = {out: n for n in model.graph.node for out in n.output}
    low: set[str] = set()
    for n in model.graph.node:  # topological order: an Add's producers are decided first
        if n.op_type in FP16_OPS or (n.op_type == "Add" and all(
                i in producer and (producer[i].op_type in FP16_OPS or producer[i].name in low)
                for i in n.input)):
            low.add(n.name)
    return low


def instances_fp16_from_fp32(model: onnx.ModelProto, keep_fp32_nodes: Iterable[str] = ()) -> Fp16Conversion:
    """The FP16 Mask R-CNN graph (same I/O) with only :func:`fp16_nodes` in FP16, less ``keep_fp32_nodes``
    (the sensitivity fallback's exclusions)."""
    if any(not n.name for n in model.graph.node):
        raise ValueError("every node needs a name to choose FP16 nodes (the exporters name them)")
    low = fp16_nodes(model) - set(keep_fp32_nodes)
    return fp16_conversion(model, keep_fp32_nodes=[n.name for n in model.graph.node if n.name not in low])
