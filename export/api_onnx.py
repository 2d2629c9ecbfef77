"""The ``.onnx`` import path of :func:`segrt.export.api.export_bundle`.

The file is checked (a corrupt or truncated one fails with its name), its I/O form detected
(or taken from ``spec.onnx_fused``), renamed to the contract names, fused unless ``fuse=False``,
cleaned with the same graph passes as a PyTorch export, and verified: the new graph against
the original file, both in ONNX Runtime, on the same frames (the original gets the CPU
preprocessing in numpy). The user's spec (classes, size, mean/std, colour order) goes into
the manifest; a size or class count that contradicts the graph's static shapes is refused.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from segrt.export.graph_passes import DEFAULT_PASSES, run_passes
from segrt.export.onnx_import import fuse_onnx, load_onnx, onnx_io, rename_io
from segrt.export.plan import plan_onnx_import
from segrt.export.resolve import ModelTarget
from segrt.export.spec import ModelSpec
from segrt.runtime.bundle import onnx_filename



def _onnx_reference(model: onnx.ModelProto, fused: bool, mean, std, color_order):
    """frame -> logits from the original graph in ONNX Runtime."""
    from segrt.export.verify import expose_argmax_input, normalise_frames, ort_session

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    in_name = next(i.name for i in m.graph.input if i.name not in inits)
    logits_name = expose_argmax_input(m) if fused else m.graph.output[0].name
    sess = ort_session(m)

    def run(frame: np.ndarray) -> np.ndarray:
        x = frame if fused else normalise_frames(frame, mean, std, color_order)
        return sess.run([logits_name], {in_name: x})[0].astype(np.float32)
    return run


def export_onnx_file(target: ModelTarget, tmp: Path, *, name, classes, num_classes, size, spec: ModelSpec,
                     fuse: bool, dynamic, verify: bool, opset: int):
    """Import ``target.onnx_path`` into ``tmp``; return ``(plan, onnx_path, source, export)``."""
    from segrt.export.verify import sample_frames, verify_semantic

    t0 = time.perf_counter()
    path: Path = target.onnx_path
    original = load_onnx(path)
    io = onnx_io(original, path)
    fused_in = io.fused
    plan = plan_onnx_import(io, path=path, label=target.label, name=name, classes=classes,
                            num_classes=num_classes, size=size, spec=spec, fuse=fuse, dynamic=dynamic)
    h, w = plan.height, plan.width
    mean, std, color = plan.mean, plan.std, plan.color_order
    shape_range = plan.dynamic
    cls_names = plan.classes

    model = onnx.ModelProto()
    model.CopyFrom(original)
    if fused_in:
        rename_io(model, io, "frame", "mask")
        if io.output_type != TensorProto.UINT8:
            # The contract's mask is uint8: cast the integer class ids (8x less D2H than int64).
            out = model.graph.output[0]
            out.name = "segrt_mask_ids"
            for node in model.graph.node:
                for k, o in enumerate(node.output):
                    if o == "mask":
                        node.output[k] = "segrt_mask_ids"
            model.graph.node.append(helper.make_node("Cast", ["segrt_mask_ids"], ["mask"], to=TensorProto.UINT8))
            shape = [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim]
            model.graph.value_info.append(out)
            del model.graph.output[:]
            model.graph.output.append(helper.make_tensor_value_info("mask", TensorProto.UINT8, shape))
    else:
        rename_io(model, io, "input", "logits")
        if fuse:
            io2 = onnx_io(model, path)
            model = fuse_onnx(model, io2, mean=mean, std=std, color_order=color, num_classes=len(cls_names))
    out_path = tmp / onnx_filename("fp32")
    onnx.save(model, str(out_path))
    passes = run_passes(out_path, DEFAULT_PASSES)
    export: dict[str, Any] = {
        "exporter": "onnx-import", "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                                                default=None),
        "requested_opset": opset, "onnx": onnx.__version__, "passes": passes, "fused": fuse,
        "fused_by_segrt": fuse and not fused_in, "imported_io": "fused" if fused_in else "unfused",
        "dynamic": shape_range.to_dict() if shape_range else None,
    }
    import onnxruntime

    export["onnxruntime"] = onnxruntime.__version__
    if verify:
        t = time.perf_counter()
        frames = sample_frames(h, w)
        ref = _onnx_reference(original, fused_in, mean, std, color)
        report = verify_semantic(out_path, ref, frames, fused=fuse, mean=mean, std=std, color_order=color,
                                 method="ONNX Runtime: bundle graph vs the imported file (numpy preprocessing)")
        report["seconds"] = round(time.perf_counter() - t, 2)
        export["verification"] = report
    else:
        export["verification"] = None
    export["seconds"] = round(time.perf_counter() - t0, 2)
    source = {**target.source, "num_classes": len(cls_names), "spec_given": {
        "mean": spec.mean is not None, "std": spec.std is not None, "color_order": spec.color_order is not None}}
    return plan, out_path, source, export
