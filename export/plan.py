"""Planning an export: a model plus the user's flags -> one frozen :class:`ExportPlan`.

The plan is everything the bundle promises about the model before a graph exists: family,
class names and palette, input size (and the dynamic profile), preprocessing (mean/std,
colour order) and whether the graph is fused. It is decided once, here, from a zoo entry, a
user factory's module or an imported ``.onnx``'s I/O; the exporters read it and
:func:`manifest_from_plan` turns it into the manifest. Every refusal of a user flag that
contradicts the model (size, class count, mean/std) is raised from this module.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from segrt.errors import ConfigError, ExportError
from segrt.export.spec import ModelSpec
from segrt.export.zoo import IMAGENET_MEAN, IMAGENET_STD, INSTANCE_SIZE, SEMANTIC_SIZE, ZooEntry
from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, ShapeRange, default_palette

log = logging.getLogger(__name__)

Triplet = tuple[float, float, float]


@dataclass(frozen=True)
class ModelDefaults:
    """What a model brings before the user's flags: from a zoo entry or a user factory's module."""

    family: str  # semantic | instances
    input_size: tuple[int, int]
    multiple: int
    classes: tuple[str, ...] | None  # None: read from the model's own output
    palette: tuple[tuple[int, int, int], ...] | None
    mean: Triplet
    std: Triplet
    color_order: str
    exporter: str  # preferred exporter for --exporter auto


@dataclass(frozen=True)
class ExportPlan:
    """The decided export: what the graph takes and returns, and what the manifest says."""

    name: str
    family: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    height: int
    width: int
    mean: Triplet
    std: Triplet
    color_order: str
    fuse: bool
    dynamic: ShapeRange | None
    multiple: int
    max_detections: int | None = None  # Mask R-CNN only; None = the model's box_detections_per_img

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def defaults_from_entry(entry: ZooEntry) -> ModelDefaults:
    return ModelDefaults(family=entry.family, input_size=entry.input_size, multiple=entry.size_multiple,
                         classes=entry.classes, palette=entry.palette, mean=entry.mean, std=entry.std,
                         color_order=entry.color_order, exporter=entry.exporter)


def defaults_from_module(family: str) -> ModelDefaults:
    """A user factory's model: Mask R-CNN normalises inside itself; the rest gets ImageNet's."""
    if family == "instances":
        return ModelDefaults(family=family, input_size=INSTANCE_SIZE, multiple=32, classes=None, palette=None,
                             mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), color_order="RGB",
                             exporter="torchscript")
    return ModelDefaults(family=family, input_size=SEMANTIC_SIZE, multiple=1, classes=None, palette=None,
                         mean=IMAGENET_MEAN, std=IMAGENET_STD, color_order="RGB", exporter="dynamo")


def requested_num_classes(classes: tuple[str, ...] | None, num_classes: int | None) -> int | None:
    """The class count the user asked for, if any (``--num-classes`` wins over the names' count)."""
    if num_classes is not None:
        return num_classes
    return len(classes) if classes else None


def classes_for(default: tuple[str, ...], classes: tuple[str, ...] | None, num_classes: int | None,
                where: str) -> tuple[str, ...]:
    """The class names: the user's, ``class_i`` for a new ``--num-classes``, else the default."""
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise ConfigError(f"--num-classes {num_classes} but {len(classes)} class names given",
                          hint="make them agree, or pass only one of them")
    if classes is not None:
        return classes
    if num_classes is not None:
        if num_classes < 1:
            raise ConfigError(f"--num-classes must be >= 1, got {num_classes}")
        if num_classes == len(default):
            return default
        return tuple(f"class_{i}" for i in range(num_classes))
    return default


def check_size(h: int, w: int, multiple: int, label: str) -> None:
    if h % multiple or w % multiple:
        raise ConfigError(f"{label}: input size {h}x{w} is not a multiple of {multiple}",
                          hint=f"pass --size with both sides multiples of {multiple}")


def default_shape_range(height: int, width: int, multiple: int, max_batch: int = 4) -> ShapeRange:
    """min = half size, opt = model size, max = double size (multiples of ``multiple``), N in 1..4."""
    def down(v: int) -> int:
        return max(multiple, (v // 2) // multiple * multiple)
    return ShapeRange(min=(1, down(height), down(width)), opt=(1, height, width),
                      max=(max_batch, 2 * height, 2 * width))


def batch_range(height: int, width: int, max_batch: int) -> ShapeRange:
    """A batch axis only: N in 1..max_batch at the fixed size (opt = max: servers batch up to it)."""
    if max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, got {max_batch}", hint="pass --max-batch 8, say")
    return ShapeRange(min=(1, height, width), opt=(max_batch, height, width), max=(max_batch, height, width))


def batch_only(sr: ShapeRange | None) -> bool:
    """Whether a profile varies the batch alone (H and W fixed): the graph then has a symbolic N only."""
    return sr is not None and sr.min[1:] == sr.max[1:]


def _classes_from_module(net, family: str, h: int, w: int, label: str) -> tuple[str, ...]:
    """``class_i`` names for the channels the model itself returns (one forward pass for semantic)."""
    if family == "instances":
        return tuple(f"class_{i}" for i in range(int(net.roi_heads.box_predictor.cls_score.out_features)))
    import torch

    from segrt.export.fuse import SemanticLogits

    with torch.no_grad():
        probe = SemanticLogits(net)(torch.zeros(1, 3, h, w))
    if probe.ndim != 4 or tuple(probe.shape[2:]) != (h, w):
        raise ExportError(f"{label} returns {tuple(probe.shape)} for a 1x3x{h}x{w} input; segrt needs "
                          f"logits (1, C, {h}, {w})", hint="make the model upsample its logits to the input size")
    return tuple(f"class_{i}" for i in range(int(probe.shape[1])))


def _triplet(values) -> Triplet:
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def plan_torch_export(net, defaults: ModelDefaults, *, label: str, name: str | None,
                      classes: tuple[str, ...] | None, num_classes: int | None, size: tuple[int, int] | None,
                      spec: ModelSpec, fuse: bool, dynamic: bool | ShapeRange,
                      max_batch: int | None = None) -> ExportPlan:
    """The plan for a PyTorch model ``net`` (built, weights not needed: only shapes are read).

    ``max_batch`` alone gives a batch axis 1..N at the fixed size; with ``dynamic`` it is the
    default profile's largest batch.
    """
    family = defaults.family
    if family == "instances" and (spec.mean or spec.std):
        raise ConfigError("--mean/--std do not apply to Mask R-CNN (it normalises inside the model)",
                          hint="drop --mean/--std")
    h, w = size or defaults.input_size
    check_size(h, w, defaults.multiple, label)
    if family == "instances":
        from segrt.export.maskrcnn import check_instance_size

        check_instance_size(h, w, label)
        if dynamic or max_batch:
            raise ConfigError(f"{label}: --dynamic and --max-batch are not supported for Mask R-CNN",
                              hint="export at a fixed --size (the detection graph is built per size)")
    if spec.max_detections is not None:
        if family != "instances":
            raise ConfigError(f"{label}: --max-detections applies to Mask R-CNN only",
                              hint="drop --max-detections for semantic models")
        if int(spec.max_detections) < 1:
            raise ConfigError(f"--max-detections {spec.max_detections} must be at least 1")
    default_classes = defaults.classes if defaults.classes is not None else \
        _classes_from_module(net, family, h, w, label)
    cls_names = classes_for(default_classes, classes, num_classes, label)
    palette = spec.palette or defaults.palette
    if palette is None or len(palette) != len(cls_names):
        palette = default_palette(len(cls_names))
    shape_range = None
    if dynamic:
        shape_range = dynamic if isinstance(dynamic, ShapeRange) else \
            default_shape_range(h, w, max(defaults.multiple, 8), max_batch=max_batch or 4)
        h, w = shape_range.opt[1], shape_range.opt[2]  # the manifest's size is the profile's opt
    elif max_batch:
        shape_range = batch_range(h, w, max_batch)
    return ExportPlan(name=name or label, family=family, classes=cls_names, palette=palette, height=h, width=w,
                      mean=_triplet(spec.mean or defaults.mean), std=_triplet(spec.std or defaults.std),
                      color_order=spec.color_order or defaults.color_order, fuse=fuse, dynamic=shape_range,
                      multiple=defaults.multiple, max_detections=spec.max_detections)


def plan_onnx_import(io, *, path: Path, label: str, name: str | None, classes: tuple[str, ...] | None,
                     num_classes: int | None, size: tuple[int, int] | None, spec: ModelSpec, fuse: bool,
                     dynamic: bool | ShapeRange) -> ExportPlan:
    """The plan for an imported ``.onnx`` whose I/O ``io`` (:class:`~segrt.export.onnx_import.OnnxIO`) was read."""
    from onnx import TensorProto

    if spec.onnx_fused is not None and spec.onnx_fused != io.fused:
        said = "fused" if spec.onnx_fused else "unfused"
        raise ConfigError(f"{path} was declared {said} but its input is "
                          f"{TensorProto.DataType.Name(io.input_type)} {list(io.input_shape)}",
                          hint="fused means uint8 [N,H,W,3] in and a mask out; unfused means float [N,3,H,W] "
                               "in and logits out; drop the flag to detect it")
    if spec.max_detections is not None:
        raise ConfigError(f"{path}: --max-detections applies to a Mask R-CNN exported from PyTorch",
                          hint="drop --max-detections when importing an .onnx")
    if io.fused and not fuse:
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
    default = tuple(f"class_{i}" for i in range(num_classes if num_classes else len(classes)))  # type: ignore[arg-type]
    cls_names = classes_for(default, classes, num_classes, path.name)
    if io.num_classes is not None and io.num_classes != len(cls_names):
        raise ConfigError(f"{path} outputs {io.num_classes} classes but {len(cls_names)} were given",
                          hint=f"pass --num-classes {io.num_classes} or {io.num_classes} class names")
    if spec.mean is None or spec.std is None:
        log.warning("%s: no --mean/--std given; assuming ImageNet's (%s / %s, RGB)", path.name,
                    IMAGENET_MEAN, IMAGENET_STD)
    shape_range = None
    if dynamic:
        if not io.dynamic:
            raise ConfigError(f"{path} has static shapes; --dynamic needs symbolic N/H/W in the graph",
                              hint="re-export the ONNX with dynamic axes, or drop --dynamic")
        shape_range = dynamic if isinstance(dynamic, ShapeRange) else default_shape_range(h, w, 8)
    palette = spec.palette if spec.palette and len(spec.palette) == len(cls_names) else \
        default_palette(len(cls_names))
    return ExportPlan(name=name or label, family="semantic", classes=cls_names, palette=palette, height=h, width=w,
                      mean=_triplet(spec.mean or IMAGENET_MEAN), std=_triplet(spec.std or IMAGENET_STD),
                      color_order=spec.color_order or "RGB", fuse=fuse, dynamic=shape_range, multiple=1)


def manifest_from_plan(plan: ExportPlan, source: Mapping[str, Any], export: Mapping[str, Any]) -> Manifest:
    """The bundle manifest the plan promises (artifacts are added when the ONNX is installed)."""
    if plan.fuse:
        inp = InputSpec(name="frame", height=plan.height, width=plan.width, layout="NHWC", dtype="uint8",
                        fused=True, dynamic=plan.dynamic)
    else:
        inp = InputSpec(name="input", height=plan.height, width=plan.width, layout="NCHW", dtype="float32",
                        fused=False, dynamic=plan.dynamic)
    if plan.family == "instances":
        from segrt.export.maskrcnn import INSTANCE_OUTPUTS

        out = OutputSpec(kind="instances", names=INSTANCE_OUTPUTS, num_classes=plan.num_classes)
    elif plan.fuse:
        out = OutputSpec(kind="mask", names=("mask",), num_classes=plan.num_classes)
    else:
        out = OutputSpec(kind="logits", names=("logits",), num_classes=plan.num_classes)
    return Manifest(
        name=plan.name, classes=plan.classes, palette=plan.palette, input=inp,
        preprocess=PreprocessSpec(resize="stretch", mean=plan.mean, std=plan.std, color_order=plan.color_order),
        output=out, source=dict(source), export=dict(export),
    )
