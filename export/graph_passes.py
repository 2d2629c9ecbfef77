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

Measured and not applied (benchmarks/export_table.py prints the first):

* ONNX Runtime's offline "basic" optimisation never reduces the node count after these passes
  (FCN-ResNet50 130 -> 130, LR-ASPP 153 -> 173), and its output is tied to one ORT version.
* onnxsim 0.8.1 (not a dependency): LR-ASPP 153 -> 153 nodes, DeepLabV3+-MobileNet (dynamic)
  196 -> 191, Mask R-CNN 1986 -> 641 (shape arithmetic the onnxscript optimizer cannot fold
  there, see above); ONNX Runtime latency unchanged within noise on all three. TensorRT folds
  shape arithmetic itself when it parses the graph, so no simplifier is used.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from segrt.errors import ExportError

log = logging.getLogger(__name__)

DEFAULT_PASSES = ("check", "optimize", "shape_inference", "trt_resize")


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
                reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
                log.info("onnxscript optimizer output rejected on %s, graph left as exported: %s", path.name, reason)
                records.append({"pass": "optimize", "tool": "onnxscript.optimizer", "nodes": count_nodes(model),
                                "skipped": f"{type(exc).__name__}: {reason}"})
                continue
            model = optimized
            records.append({"pass": "optimize", "tool": "onnxscript.optimizer", "nodes": count_nodes(model)})
        elif name == "shape_inference":
            model = onnx.shape_inference.infer_shapes(model, check_type=True, data_prop=True)
            records.append({"pass": "shape_inference", "nodes": count_nodes(model)})
        elif name == "trt_resize":
            stats = trt_resize_pass(model)
            records.append({"pass": "trt_resize", "nodes": count_nodes(model), **stats})
        else:
            raise ValueError(f"unknown graph pass {name!r}")
    onnx.save(model, str(path))
    return records
