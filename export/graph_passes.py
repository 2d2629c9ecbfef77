"""Clean-up passes on an exported ONNX graph, each recorded with the node count it left.

* ``check``: ``onnx.checker`` (full check, so a broken export fails here, not on a Jetson).
* ``optimize``: onnxscript's optimizer: constant folding, dead-node and Identity removal,
  function inlining. The dynamo exporter already runs it; on TorchScript exports it removes
  the Identity/Constant clutter (LR-ASPP 215 -> 153 nodes, U-Net 66 -> 49). On Mask R-CNN it
  emits a dangling tensor inside the RPN (onnxscript 0.7.2), so its output is validated and
  rejected when invalid, keeping the exported graph (recorded as ``skipped``).
* ``shape_inference``: ``onnx.shape_inference`` with data propagation, so every tensor has a
  shape for TensorRT's parser and for the INT8 pass.
* ``trt_resize``: makes Resize nodes TensorRT-friendly: ``pytorch_half_pixel`` becomes
  ``half_pixel`` where the output size is provably > 1 (the only case where they differ), and
  antialiased resizes are refused (TensorRT has no antialias).
* ``trt_mask_cast``: ``ArgMax -> Cast(UINT8)`` becomes ``ArgMax -> Cast(FLOAT) -> Cast(UINT8)``.
  TensorRT imports ArgMax as TopK with INT64 indices, and TensorRT 10.3's ``NvInferRuntimeBase.h``
  documents UINT8 conversions only to and from FLOAT/HALF; going through FLOAT is documented on
  every release segrt claims. Class ids < 256 are exact in float32, so the mask is unchanged.

When onnxscript's output is rejected (Mask R-CNN), ONNX Runtime's offline *basic* level
folds instead (``fold`` record): constant folding and redundant-node removal, standard ops
only, checked like any pass; Mask R-CNN 1986 -> 732 nodes, outputs bit-identical in ONNX
Runtime. Folding is what NVIDIA's own recipe does before TensorRT (``polygraphy surgeon
sanitize --fold-constants``).

Measured and not applied (benchmarks/export_table.py prints the node counts):

* ONNX Runtime's basic level *after* onnxscript's pass: no semantic zoo graph gets smaller
  (FCN-ResNet50 130 -> 130, DeepLabV3+-ResNet50 155 -> 151, LR-ASPP 153 -> 173).
* onnxsim 0.8.1 (not a dependency): LR-ASPP 153 -> 153 nodes, DeepLabV3+-MobileNet (dynamic)
  196 -> 191, Mask R-CNN 1986 -> 641; ONNX Runtime latency unchanged within noise on all
  three, so no simplifier is used.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from segrt.errors import ExportError, first_line

log = logging.getLogger(__name__)

DEFAULT_PASSES = ("check", "optimize", "shape_inference", "trt_resize", "trt_mask_cast")


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _static_spatial_gt1(model: onnx.ModelProto, tensor: str) -> bool:
    for vi in list(model.graph.value_info) + list(model.graph.output):
        if vi.name == tensor:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) < 3:
                return False
            return all(d.HasField("dim_value") and d.dim_value > 1 for d in dims[2:])
    return False


def trt_resize_pass(model: onnx.ModelProto) -> dict[str, int]:
    """Rewrite/lint Resize nodes for TensorRT; returns counts. Needs shape inference first."""
    stats = {"resize": 0, "rewritten_to_half_pixel": 0}
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        stats["resize"] += 1
        if int(_attr(node, "antialias", 0)):
            raise ExportError(f"Resize node {node.name!r} uses antialiasing, which TensorRT does not support",
                              hint="use F.interpolate(..., antialias=False) in the model")
        mode = _attr(node, "coordinate_transformation_mode", b"half_pixel")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "pytorch_half_pixel" and _static_spatial_gt1(model, node.output[0]):
            _set_attr(node, "coordinate_transformation_mode", "half_pixel")
            stats["rewritten_to_half_pixel"] += 1
    return stats


def trt_mask_cast_pass(model: onnx.ModelProto) -> dict[str, int]:
    """Route every ``ArgMax -> Cast(to=UINT8)`` through FLOAT (see the module docstring); returns counts."""
    graph = model.graph
    argmax_outputs = {o for n in graph.node if n.op_type == "ArgMax" for o in n.output}
    nodes = list(graph.node)
    rewritten = 0
    out = []
    for node in nodes:
        if (node.op_type == "Cast" and int(_attr(node, "to", 0)) == onnx.TensorProto.UINT8
                and node.input[0] in argmax_outputs):
            via = f"{node.input[0]}_as_float"
            out.append(helper.make_node("Cast", [node.input[0]], [via], to=onnx.TensorProto.FLOAT,
                                        name=f"{node.name or via}_to_float"))
            node.input[0] = via
            rewritten += 1
        out.append(node)
    if rewritten:
        del graph.node[:]
        graph.node.extend(out)
    return {"argmax_uint8_casts": rewritten}


def _domains(graph: onnx.GraphProto) -> set[str]:
    used = set()
    for node in graph.node:
        used.add(node.domain or "")
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                used |= _domains(a.g)
            for g in a.graphs:
                used |= _domains(g)
    return used


def ort_basic_fold(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """Constant folding + redundant-node removal by ONNX Runtime's *basic* level, saved offline.

    Basic-level rewrites produce standard ONNX ops only; we still refuse the result if any
    node left the default domain or it fails the checker. Returns None when refused.
    """
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="segrt-fold-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(src))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(dst)
        so.log_severity_level = 3
        try:
            ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
            folded = onnx.load(str(dst))
        except Exception as exc:  # noqa: BLE001 - fall back to the unfolded graph
            log.info("ONNX Runtime basic folding failed: %s", exc)
            return None
    used = _domains(folded.graph)
    if used - {"", "ai.onnx"}:
        log.info("ONNX Runtime basic folding introduced domains %s; not used", sorted(used))
        return None
    # ORT declares every domain it knows; keep only the ones the graph uses.
    keep = [o for o in folded.opset_import if (o.domain or "") in used or o.domain in ("", "ai.onnx")]
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    folded.ir_version = model.ir_version
    try:
        onnx.checker.check_model(folded, full_check=True)
    except Exception as exc:  # noqa: BLE001
        log.info("ONNX Runtime basic folding output invalid: %s", exc)
        return None
    return folded


def count_nodes(model: onnx.ModelProto) -> int:
    return len(model.graph.node)


def run_passes(path: str | Path, passes: tuple[str, ...] = DEFAULT_PASSES) -> list[dict[str, Any]]:
    """Apply ``passes`` to the ONNX file in place; return one record per pass."""
    path = Path(path)
    # onnxscript/onnx_ir log every pass at INFO; the CLI runs at INFO, so quieten them.
    for noisy in ("onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    model = onnx.load(str(path))
    records: list[dict[str, Any]] = [{"pass": "export", "nodes": count_nodes(model)}]
    for name in passes:
        if name == "check":
            try:
                onnx.checker.check_model(model, full_check=True)
            except onnx.checker.ValidationError as exc:
                first = str(exc).strip().splitlines()[0]
                raise ExportError(f"the exported graph {path.name} is invalid ONNX: {first[:200]}",
                                  hint="try --exporter torchscript or --exporter dynamo") from exc
            records.append({"pass": "check", "nodes": count_nodes(model)})
        elif name == "optimize":
            import onnxscript.optimizer

            try:
                optimized = onnxscript.optimizer.optimize(model)
                # The optimizer can emit a dangling tensor on graphs with If subgraphs (seen on
                # Mask R-CNN); never ship that: validate, and keep the exported graph if invalid.
                onnx.checker.check_model(optimized, full_check=True)
            except Exception as exc:  # noqa: BLE001 - an optimizer bug must not fail a valid export
                reason = first_line(exc)
                log.info("onnxscript optimizer output rejected on %s: %s", path.name, reason)
                records.append({"pass": "optimize", "tool": "onnxscript.optimizer", "nodes": count_nodes(model),
                                "skipped": f"{type(exc).__name__}: {reason}"})
                folded = ort_basic_fold(model)
                if folded is not None:
                    model = folded
                    records.append({"pass": "fold", "tool": "onnxruntime basic (fallback)",
                                    "nodes": count_nodes(model)})
                continue
            model = optimized
            records.append({"pass": "optimize", "tool": "onnxscript.optimizer", "nodes": count_nodes(model)})
        elif name == "shape_inference":
            model = onnx.shape_inference.infer_shapes(model, check_type=True, data_prop=True)
            records.append({"pass": "shape_inference", "nodes": count_nodes(model)})
        elif name == "trt_resize":
            stats = trt_resize_pass(model)
            records.append({"pass": "trt_resize", "nodes": count_nodes(model), **stats})
        elif name == "trt_mask_cast":
            stats = trt_mask_cast_pass(model)
            records.append({"pass": "trt_mask_cast", "nodes": count_nodes(model), **stats})
        else:
            raise ValueError(f"unknown graph pass {name!r}")
    onnx.save(model, str(path))
    return records
