"""The ``.onnx`` import path of :func:`segrt.export.api.export_bundle`.

The file is checked (a corrupt or truncated one fails with its name), its I/O form detected
(or taken from ``spec.onnx_fused``), renamed to the contract names, fused unless ``fuse=False``,
cleaned with the same graph passes as a PyTorch export, and verified: the new graph against
the original file, both in ONNX Runtime, on the same frames (the original gets the CPU
preprocessing in numpy). The user's spec (classes, size, mean/std, colour order) goes into
the manifest; a size or class count that contradicts the graph's static shapes is refused.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from segrt.errors import ConfigError
from segrt.export.graph_passes import DEFAULT_PASSES, run_passes
from segrt.export.onnx_import import fuse_onnx, load_onnx, onnx_io, rename_io
from segrt.export.zoo import IMAGENET_MEAN, IMAGENET_STD
from segrt.runtime.bundle import onnx_filename
from segrt.runtime.manifest import ShapeRange, default_palette

log = logging.getLogger(__name__)


def _onnx_reference(model: onnx.ModelProto, fused: bool, mean, std, color_order):
    """frame -> logits from the original graph in ONNX Runtime."""
    from segrt.export.verify import _expose_argmax_input, _session, normalise_frames

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    in_name = next(i.name for i in m.graph.input if i.name not in inits)
    logits_name = _expose_argmax_input(m) if fused else m.graph.output[0].name
    sess = _session(m)

    def run(frame: np.ndarray) -> np.ndarray:
        x = frame if fused else normalise_frames(frame, mean, std, color_order)
        return sess.run([logits_name], {in_name: x})[0].astype(np.float32)
    return run


def export_onnx_file(target, tmp: Path, *, name, classes, num_classes, size, spec, fuse: bool,
                     dynamic, verify: bool, opset: int):
    from segrt.export.api import _Plan, _classes_for, default_shape_range
    from segrt.export.verify import sample_frames, verify_semantic

    t0 = time.perf_counter()
    path: Path = target.onnx_path
    original = load_onnx(path)
    io = onnx_io(original, path)
    fused_in = io.fused
    if spec.onnx_fused is not None and spec.onnx_fused != fused_in:
        said = "fused" if spec.onnx_fused else "unfused"
        raise ConfigError(f"{path} was declared {said} but its input is "
                          f"{TensorProto.DataType.Name(io.input_type)} {list(io.input_shape)}",
                          hint="fused means uint8 [N,H,W,3] in and a mask out; unfused means float [N,3,H,W] "
                               "in and logits out; drop the flag to detect it")
    if fused_in and not fuse:
        raise ConfigError(f"{path} is already fused (uint8 frame in, mask out); --no-fuse cannot undo that",
                          hint="drop --no-fuse, or import the model's unfused ONNX")
    # Size: the graph's static size, or the user's (which must agree with it).
    if size is not None and io.size is not None and tuple(size) != io.size:
        raise ConfigError(f"{path} has a static input size {io.size[0]}x{io.size[1]}, not {size[0]}x{size[1]}",
                          hint=f"pass --size {io.size[0]}x{io.size[1]} or drop --size")
    hw = size or io.size
    if hw is None:
        raise ConfigError(f"{path} has a dynamic input size", hint="pass --size HxW (the size to run it at)")
    h, w = hw
    # Classes: the user's, or the graph's static logits channels.
    if classes is None and num_classes is None:
        if io.num_classes is None:
            raise ConfigError(f"{path}: cannot tell the number of classes from the graph",
                              hint="pass --classes names.txt or --num-classes N")
        num_classes = io.num_classes
    default = tuple(f"class_{i}" for i in range(num_classes if num_classes else len(classes)))
    cls_names = _classes_for(default, classes, num_classes, path.name)
    if io.num_classes is not None and io.num_classes != len(cls_names):
        raise ConfigError(f"{path} outputs {io.num_classes} classes but {len(cls_names)} were given",
                          hint=f"pass --num-classes {io.num_classes} or {io.num_classes} class names")
    if spec.mean is None or spec.std is None:
        log.warning("%s: no --mean/--std given; assuming ImageNet's (%s / %s, RGB)", path.name,
                    IMAGENET_MEAN, IMAGENET_STD)
    mean = tuple(float(v) for v in (spec.mean or IMAGENET_MEAN))
    std = tuple(float(v) for v in (spec.std or IMAGENET_STD))
    color = spec.color_order or "RGB"
    shape_range = None
    if dynamic:
        if not io.dynamic:
            raise ConfigError(f"{path} has static shapes; --dynamic needs symbolic N/H/W in the graph",
                              hint="re-export the ONNX with dynamic axes, or drop --dynamic")
        shape_range = dynamic if isinstance(dynamic, ShapeRange) else default_shape_range(h, w, 8)
    palette = spec.palette if spec.palette and len(spec.palette) == len(cls_names) else default_palette(len(cls_names))

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
    plan = _Plan(name=name or target.label, family="semantic", classes=cls_names, palette=palette, height=h, width=w,
                 mean=mean, std=std, color_order=color, fuse=fuse, dynamic=shape_range, multiple=1)  # type: ignore[arg-type]
    return plan, out_path, source, export
