"""The PyTorch path of :func:`segrt.export.api.export_bundle`: build, plan, load weights, export, verify.

A zoo entry or a user factory is built (seeded, so two exports give the same graph), planned
(:mod:`segrt.export.plan`), given its weights, wrapped into the graph the plan promises (fused:
uint8 frame in, uint8 mask out) and exported; the ONNX is then checked against PyTorch in ONNX
Runtime (plus the dynamic profile's corners, and for Mask R-CNN a zero-threshold twin when the
shipped graph detects nothing).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from segrt.errors import ConfigError, WeightsError
from segrt.export.plan import (
    ExportPlan,
    batch_only,
    defaults_from_entry,
    defaults_from_module,
    plan_torch_export,
    requested_num_classes,
)
from segrt.export.resolve import ModelTarget, build_factory_model, is_maskrcnn
from segrt.export.spec import ModelSpec
from segrt.export.torchvision_weights import (
    fetch_torchvision_weights,
    names_torchvision_weights,
    resolve_torchvision_weights,
)
from segrt.runtime.bundle import onnx_filename
from segrt.runtime.manifest import ShapeRange

log = logging.getLogger(__name__)

RANDOM_INIT_WARNING = ("no --weights given: {name} is randomly initialised; its output (and any "
                       "accuracy figure) means nothing. Pass --weights to deploy a trained model.")
SEED = 0  # random init is seeded so two exports of the same model give the same graph


def export_torch(target: ModelTarget, tmp: Path, *, name, weights, classes, num_classes, size, spec: ModelSpec,
                 fuse: bool, dynamic, opset: int, exporter: str, verify: bool, max_batch: int | None = None):
    """Export a zoo/factory model into ``tmp``; return ``(plan, onnx_path, source, export)``."""
    import onnx
    import onnxruntime
    import torch

    from segrt.export.onnx_from_torch import onnx_from_torch
    from segrt.export.weights import load_weights

    entry = target.entry
    torch.manual_seed(SEED)
    tv_weights = None
    if names_torchvision_weights(weights):
        if entry is None:
            raise WeightsError(f"--weights {weights} needs a torchvision zoo model, not {target.label}",
                               hint="pass a checkpoint file with --weights")
        tv_weights = resolve_torchvision_weights(entry, weights)
        classes = classes or tv_weights.categories
        spec = dataclasses.replace(spec, mean=spec.mean or tv_weights.mean, std=spec.std or tv_weights.std)
    if entry is not None:
        n_cls = num_classes if num_classes is not None else (len(classes) if classes else entry.num_classes)
        net = entry.build(n_cls)
        defaults = defaults_from_entry(entry)
        weights = weights if weights is not None else entry.weights
    else:
        net = build_factory_model(target.factory, requested_num_classes(classes, num_classes))
        defaults = defaults_from_module("instances" if is_maskrcnn(net) else "semantic")
    label = target.label
    plan = plan_torch_export(net, defaults, label=label, name=name, classes=classes, num_classes=num_classes,
                             size=size, spec=spec, fuse=fuse, dynamic=dynamic,
                             max_batch=max_batch)

    winfo = None
    if tv_weights is not None:
        winfo = load_weights(net, fetch_torchvision_weights(tv_weights))
    elif weights is not None:
        winfo = load_weights(net, weights)
    else:
        log.warning(RANDOM_INIT_WARNING.format(name=label))

    module, example, in_name, out_names, dyn_axes = _graph_module(net, plan, label)
    preferred = defaults.exporter
    if opset >= 18 and plan.family == "semantic":
        preferred = "dynamo"  # its native opset: no down-conversion
    onnx_path = tmp / onnx_filename("fp32")
    record = onnx_from_torch(module, example, onnx_path, input_names=[in_name], output_names=out_names,
                             opset=opset, exporter=exporter, preferred=preferred, dynamic=dyn_axes)
    export: dict[str, Any] = {**record, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                              "fused": fuse, "dynamic": plan.dynamic.to_dict() if plan.dynamic else None}
    if verify:
        export["verification"] = _verification(onnx_path, module, example, tmp, plan, opset, record["exporter"])
    else:
        export["verification"] = None
        log.warning("verification skipped (--no-verify): the ONNX was not compared with PyTorch")
    if verify and entry is not None and entry.source == "mediapipe" and winfo is not None:
        export["tflite_reference"] = _tflite_reference(net, winfo.path, plan)

    source = {**target.source, "num_classes": plan.num_classes, "random_init": winfo is None, "seed": SEED,
              "weights": ({**winfo.to_dict(), **(tv_weights.to_dict() if tv_weights else {})} if winfo else None),
              "params_count": int(sum(p.numel() for p in net.parameters())),
              "family": plan.family}
    return plan, onnx_path, source, export


def _tflite_reference(net, tflite_path: str, plan: ExportPlan) -> dict[str, Any]:
    """The PyTorch port against the TFLite interpreter on real photos; a mismatch fails the export."""
    from segrt.errors import BackendUnavailableError, VerificationError
    from segrt.export.mediapipe_verify import verify_against_tflite

    try:
        report = verify_against_tflite(net, tflite_path, plan.height, plan.width)
    except BackendUnavailableError as exc:
        log.warning("the port was not checked against TFLite: %s", exc)
        return {"skipped": str(exc)}
    if not report["passed"]:
        raise VerificationError(f"the PyTorch port differs from TFLite on {tflite_path}: max |p diff| "
                                f"{report['max_abs_prob_diff']:.2e}, mask agreement "
                                f"{100 * report['mask_agreement']:.3f}%",
                                hint="the .tflite is not the selfie segmenter this port implements")
    return report


def _graph_module(net, plan: ExportPlan, label: str):
    """The module to export with its example input, I/O names and dynamic axes, as the plan says."""
    import torch

    from segrt.export.fuse import FusedSegmentation, SemanticLogits
    from segrt.export.onnx_from_torch import DynamicAxes

    h, w, fuse = plan.height, plan.width, plan.fuse
    if plan.family == "instances":
        from segrt.export.maskrcnn import INSTANCE_OUTPUTS, MaskRCNNExport

        module = MaskRCNNExport(net, fused=fuse, max_detections=plan.max_detections).eval()
        example = (torch.zeros(1, h, w, 3, dtype=torch.uint8) if fuse else torch.zeros(1, 3, h, w),)
        return module, example, ("frame" if fuse else "input"), list(INSTANCE_OUTPUTS), None
    core = SemanticLogits(net).eval()
    with torch.no_grad():
        n_out = int(core(torch.zeros(1, 3, h, w)).shape[1])
    if n_out != plan.num_classes:
        raise ConfigError(f"{label} outputs {n_out} classes but {plan.num_classes} class names were given",
                          hint=f"pass --num-classes {n_out} or {n_out} class names")
    if fuse:
        module = FusedSegmentation(core, plan.mean, plan.std, plan.color_order, plan.num_classes).eval()
        example = (torch.from_numpy(np.zeros((1, h, w, 3), np.uint8)),)
        in_name, out_names = "frame", ["mask"]
        axes_in, axes_out = {0: "N", 1: "H", 2: "W"}, {0: "N", 1: "H", 2: "W"}
        if batch_only(plan.dynamic):
            axes_in, axes_out = {0: "N"}, {0: "N"}
    else:
        module = core
        example = (torch.zeros(1, 3, h, w),)
        in_name, out_names = "input", ["logits"]
        axes_in, axes_out = {0: "N", 2: "H", 3: "W"}, {0: "N", 2: "H", 3: "W"}
        if batch_only(plan.dynamic):
            axes_in, axes_out = {0: "N"}, {0: "N"}
    dyn_axes = (DynamicAxes(inputs={in_name: axes_in}, outputs={out_names[0]: axes_out})
                if plan.dynamic else None)
    return module, example, in_name, out_names, dyn_axes


def _verification(onnx_path: Path, module, example, tmp: Path, plan: ExportPlan, opset: int,
                  exporter: str) -> dict[str, Any]:
    """The exported graph vs PyTorch in ONNX Runtime, as recorded in the manifest."""
    from segrt.export.verify import verify_onnx_against_torch

    t = time.perf_counter()
    report = verify_onnx_against_torch(onnx_path, module, family=plan.family, fused=plan.fuse, height=plan.height,
                                       width=plan.width, mean=plan.mean, std=plan.std, color_order=plan.color_order)
    if plan.dynamic is not None:
        from segrt.export.verify_batch import verify_batch_items

        if not batch_only(plan.dynamic):
            report["dynamic_shapes"] = _verify_dynamic(onnx_path, module, plan, plan.dynamic)
        report["batch_items"] = verify_batch_items(onnx_path, plan.dynamic.max[0], fused=plan.fuse,
                                                   height=plan.height, width=plan.width)
    if plan.family == "instances" and report["detections"] == 0:
        report = {"shipped": report, "probe": _verify_instance_probe(module, example, tmp, plan, opset, exporter)}
        report.update(_instance_summary(report))
    else:
        report = {**report, **(_instance_summary({"shipped": report}) if plan.family == "instances" else {})}
    report["seconds"] = round(time.perf_counter() - t, 2)
    return report


def _verify_dynamic(onnx_path: Path, module, plan: ExportPlan, sr: ShapeRange) -> list[dict[str, Any]]:
    """Check the dynamic graph at the profile's min size and at batch 2 of the opt size."""
    from segrt.export.verify import sample_frames, torch_reference, verify_semantic

    frames = [(f"min {sr.min[1]}x{sr.min[2]}", sample_frames(sr.min[1], sr.min[2], kinds=("random",))[0][1]),
              (f"batch {min(2, sr.max[0])}", sample_frames(plan.height, plan.width, batch=min(2, sr.max[0]),
                                                           kinds=("shapes",))[0][1])]
    ref = torch_reference(module, fused=plan.fuse, mean=plan.mean, std=plan.std, color_order=plan.color_order)
    rep = verify_semantic(onnx_path, ref, frames, fused=plan.fuse, mean=plan.mean, std=plan.std,
                          color_order=plan.color_order)
    return rep["per_input"]


def _verify_instance_probe(module, example, tmp: Path, plan: ExportPlan, opset: int, exporter: str) -> dict[str, Any]:
    """Export a twin with score threshold 0 and verify it: every detection path gets compared."""
    from segrt.export.maskrcnn import INSTANCE_OUTPUTS
    from segrt.export.onnx_from_torch import onnx_from_torch
    from segrt.export.verify import verify_onnx_against_torch

    heads = module.roi_heads
    saved = heads.score_thresh
    heads.score_thresh = 0.0
    try:
        probe = tmp / "probe.onnx"
        onnx_from_torch(module, example, probe, input_names=[("frame" if plan.fuse else "input")],
                        output_names=list(INSTANCE_OUTPUTS), opset=opset, exporter=exporter,
                        passes=())
        rep = verify_onnx_against_torch(probe, module, family="instances", fused=plan.fuse,
                                        height=plan.height, width=plan.width)
        rep["graph"] = "probe (box_score_thresh=0)"
        probe.unlink()
    finally:
        heads.score_thresh = saved
    return rep


def _instance_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """Headline numbers for instances: from the probe when the shipped graph detected nothing."""
    src = report.get("probe") or report["shipped"]
    return {"detections_compared": src["detections"], "matched_pct": src["matched_pct"],
            "box_max_abs_diff_px": src["box_max_abs_diff_px"], "score_max_abs_diff": src["score_max_abs_diff"],
            "mask_prob_max_abs_diff": src["mask_prob_max_abs_diff"],
            "method": ("shipped graph checked on sample frames; it detected nothing (random init), so a twin "
                       "exported with box_score_thresh=0 was checked on the same frames"
                       if report.get("probe") else src["method"])}
