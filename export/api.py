"""``export_bundle``: a model (zoo name, ``package.module:factory`` or ``.onnx``) -> a verified bundle.

Every step happens in a temporary folder inside the output folder: export, graph passes,
verification. Only when all of them succeeded is ``model.onnx`` moved into place and the
manifest written, last. A failure leaves the output folder as it was (a previous bundle there
stays valid), so nothing half-made is ever trusted by ``Bundle.open``.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from segrt.errors import BundleError, ConfigError, ExportError, ManifestError, ModelNotFoundError
from segrt.export.zoo import IMAGENET_MEAN, IMAGENET_STD, SEMANTIC_SIZE, ZooEntry, get_entry
from segrt.runtime.bundle import MANIFEST_NAME, Bundle, onnx_filename
from segrt.runtime.fsutil import ensure_writable_dir, sha256_file
from segrt.runtime.manifest import (
    Artifact,
    InputSpec,
    Manifest,
    OutputSpec,
    PreprocessSpec,
    ShapeRange,
    default_palette,
)

log = logging.getLogger(__name__)

RANDOM_INIT_WARNING = ("no --weights given: {name} is randomly initialised; its output (and any "
                       "accuracy figure) means nothing. Pass --weights to deploy a trained model.")
SEED = 0  # random init is seeded so two exports of the same model give the same graph


@dataclass(frozen=True)
class ModelSpec:
    """User-given config that overrides a model's defaults (and describes an imported ``.onnx``).

    ``onnx_fused``: for ``.onnx`` import, whether the file already follows the fused I/O
    contract (uint8 frame in, mask out); ``None`` detects it from the input dtype.
    """

    classes: tuple[str, ...] | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    color_order: str | None = None
    onnx_fused: bool | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None

    @classmethod
    def coerce(cls, spec: "ModelSpec | Mapping[str, Any] | None") -> "ModelSpec":
        if spec is None:
            return cls()
        if isinstance(spec, ModelSpec):
            return spec
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown spec keys: {', '.join(sorted(unknown))}",
                              hint=f"use {', '.join(cls.__dataclass_fields__)}")
        kw = dict(spec)
        for k in ("classes", "input_size", "mean", "std"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)


# -- argument parsing helpers (shared with the CLI) -------------------------------------------
def parse_size(size: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"256x512"`` or ``(256, 512)`` -> (H, W)."""
    if size is None:
        return None
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", size)
        if not m:
            raise ConfigError(f"--size {size!r} is not HxW", hint="write it like 256x512 (height x width)")
        size = (int(m.group(1)), int(m.group(2)))
    if len(size) != 2 or any(int(v) <= 0 for v in size):
        raise ConfigError(f"size {size!r} is not two positive integers (H, W)", hint="e.g. --size 256x512")
    return int(size[0]), int(size[1])


def read_classes(classes: str | os.PathLike[str] | Sequence[str] | None) -> tuple[str, ...] | None:
    """Class names from a sequence, a names.txt file (one per line) or a comma-separated string."""
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        p = Path(classes)
        if p.is_file():
            try:
                names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read class names from {p}: {exc}",
                                  hint="pass a UTF-8 text file with one class name per line") from exc
            names = [n for n in names if n and not n.startswith("#")]
            if not names:
                raise ConfigError(f"{p} lists no class names", hint="write one class name per line")
            return tuple(names)
        if "," in str(classes):
            return tuple(n.strip() for n in str(classes).split(",") if n.strip())
        raise ConfigError(f"class names file {p} does not exist",
                          hint="pass a names.txt with one class per line, or a comma-separated list")
    names = tuple(str(c) for c in classes)
    if not names:
        raise ConfigError("the class list is empty", hint="give at least one class name")
    return names


# -- model resolution ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    kind: str  # zoo | factory | onnx
    label: str
    entry: ZooEntry | None = None
    factory: Any = None
    onnx_path: Path | None = None
    source: Mapping[str, Any] = field(default_factory=dict)


def _load_factory(spec: str) -> _Target:
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise ModelNotFoundError(f"{spec!r} is not package.module:factory", hint="e.g. mypkg.nets:build_model")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise ModelNotFoundError(f"model file {path} does not exist", hint="check the path before ':'")
            mspec = importlib.util.spec_from_file_location(f"segrt_user_{path.stem}", path)
            module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
            mspec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(mod_name)
    except ModelNotFoundError:
        raise
    except ImportError as exc:
        raise ModelNotFoundError(f"cannot import {mod_name} ({exc})",
                                 hint="install the package or add its folder to PYTHONPATH") from exc
    except Exception as exc:  # noqa: BLE001 - user code may raise anything while importing
        raise ModelNotFoundError(f"importing {mod_name} failed: {type(exc).__name__}: {str(exc)[:160]}",
                                 hint="fix the error in that module") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(attr, names, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"{mod_name} defines: {', '.join(names[:8])}"
        raise ModelNotFoundError(f"{mod_name} has no callable {attr!r}", hint=hint)
    return _Target(kind="factory", label=attr, factory=fn, source={"kind": "factory", "factory": spec})


def _resolve(model: str) -> _Target:
    model = str(model)
    if model.lower().endswith(".onnx"):
        p = Path(model)
        if not p.is_file():
            raise ModelNotFoundError(f"ONNX file {p} does not exist", hint="check the path")
        return _Target(kind="onnx", label=p.stem, onnx_path=p,
                       source={"kind": "onnx", "path": str(p.resolve()), "sha256": sha256_file(p)})
    if ":" in model and not re.match(r"^[A-Za-z]:[\\/]", model):
        return _load_factory(model)
    entry = get_entry(model)
    source = {"kind": "zoo", "model": entry.name, "origin": entry.source, "params": dict(entry.params)}
    if entry.provenance:
        source["provenance"] = dict(entry.provenance)
    return _Target(kind="zoo", label=entry.name, entry=entry, source=source)


def _build_factory_model(fn, num_classes: int | None):
    import torch

    kwargs = {}
    if num_classes is not None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        if "num_classes" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
            kwargs["num_classes"] = num_classes
        else:
            raise ConfigError(f"factory {fn.__name__} takes no num_classes argument",
                              hint="drop --num-classes, or add a num_classes parameter to the factory")
    try:
        model = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - user code
        raise ModelNotFoundError(f"factory {fn.__name__} raised {type(exc).__name__}: {str(exc)[:160]}",
                                 hint="fix the factory or its arguments") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelNotFoundError(f"factory {fn.__name__} returned {type(model).__name__}, not a torch.nn.Module",
                                 hint="return the model instance from the factory")
    return model.eval()


def _is_maskrcnn(model) -> bool:
    try:
        from torchvision.models.detection import MaskRCNN
    except ImportError:
        return False
    return isinstance(model, MaskRCNN)


# -- dynamic shapes ---------------------------------------------------------------------------
def default_shape_range(height: int, width: int, multiple: int, max_batch: int = 4) -> ShapeRange:
    """min = half size, opt = model size, max = double size (multiples of ``multiple``), N in 1..4."""
    def down(v: int) -> int:
        return max(multiple, (v // 2) // multiple * multiple)
    return ShapeRange(min=(1, down(height), down(width)), opt=(1, height, width),
                      max=(max_batch, 2 * height, 2 * width))


# -- the export ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    name: str
    family: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str
    fuse: bool
    dynamic: ShapeRange | None
    multiple: int


def _classes_for(default: tuple[str, ...], classes: tuple[str, ...] | None, num_classes: int | None,
                 where: str) -> tuple[str, ...]:
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


def _check_size(h: int, w: int, multiple: int, label: str) -> None:
    if h % multiple or w % multiple:
        raise ConfigError(f"{label}: input size {h}x{w} is not a multiple of {multiple}",
                          hint=f"pass --size with both sides multiples of {multiple}")


def _prepare_out_dir(out_dir: Path) -> bool:
    """Check ``out_dir`` can receive a bundle; return whether it was created here."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BundleError(f"output {out_dir} is a file, not a folder", hint="pass -o with a folder path")
    created = not out_dir.exists()
    if out_dir.is_dir():
        visible = [p for p in out_dir.iterdir() if not p.name.startswith(".")]
        if visible and not (out_dir / MANIFEST_NAME).is_file():
            raise BundleError(f"output folder {out_dir} is not empty and is not a bundle",
                              hint="pass -o with a new or empty folder, or an existing bundle to replace")
        if (out_dir / MANIFEST_NAME).is_file():
            try:
                Bundle.open(out_dir)
            except ManifestError as exc:
                # Never overwrite a bundle a newer segrt made; an unreadable one may be replaced.
                if "newer" in exc.message:
                    raise BundleError(f"{out_dir} holds a bundle from a newer segrt ({exc.message})",
                                      hint="upgrade segrt, or pass -o with another folder") from exc
        for stale in out_dir.glob(".segrt-export-*"):
            # Left by a killed export (never trusted); an hour old so a concurrent export is spared.
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 3600:
                    shutil.rmtree(stale, ignore_errors=True)
    ensure_writable_dir(out_dir)
    return created


def _install(out_dir: Path, tmp_onnx: Path, manifest: Manifest) -> Bundle:
    """Move the verified ONNX into ``out_dir`` and write the manifest last."""
    old_manifest = out_dir / MANIFEST_NAME
    stale: list[Path] = []
    if old_manifest.is_file():
        with contextlib.suppress(Exception):
            old = Bundle.open(out_dir).manifest
            stale = [out_dir / a.path for a in old.artifacts.values()] + [out_dir / e.path for e in old.engines]
        # From here until the new manifest is written there is no manifest: never a stale one.
        old_manifest.unlink()
    for p in stale:
        if p.name != onnx_filename("fp32"):
            with contextlib.suppress(OSError):
                p.unlink()
    target = out_dir / onnx_filename("fp32")
    os.replace(tmp_onnx, target)
    art = Artifact(precision="fp32", path=target.name, sha256=sha256_file(target),
                   details={"size_bytes": target.stat().st_size})
    return Bundle.create(out_dir, manifest.with_artifact(art))


def _manifest(plan: _Plan, source: Mapping[str, Any], export: Mapping[str, Any]) -> Manifest:
    if plan.fuse:
        inp = InputSpec(name="frame", height=plan.height, width=plan.width, layout="NHWC", dtype="uint8",
                        fused=True, dynamic=plan.dynamic)
    else:
        inp = InputSpec(name="input", height=plan.height, width=plan.width, layout="NCHW", dtype="float32",
                        fused=False, dynamic=plan.dynamic)
    if plan.family == "instances":
        from segrt.export.maskrcnn import INSTANCE_OUTPUTS

        out = OutputSpec(kind="instances", names=INSTANCE_OUTPUTS, num_classes=len(plan.classes))
    elif plan.fuse:
        out = OutputSpec(kind="mask", names=("mask",), num_classes=len(plan.classes))
    else:
        out = OutputSpec(kind="logits", names=("logits",), num_classes=len(plan.classes))
    return Manifest(
        name=plan.name, classes=plan.classes, palette=plan.palette, input=inp,
        preprocess=PreprocessSpec(resize="stretch", mean=plan.mean, std=plan.std, color_order=plan.color_order),
        output=out, source=dict(source), export=dict(export),
    )


def export_bundle(model: str, out_dir: str | os.PathLike[str], *, weights: str | os.PathLike[str] | None = None,
                  num_classes: int | None = None, classes: str | os.PathLike[str] | Sequence[str] | None = None,
                  size: str | Sequence[int] | None = None, fuse: bool = True,
                  dynamic: bool | ShapeRange = False, opset: int = 17, exporter: str = "auto",
                  verify: bool = True, name: str | None = None,
                  spec: ModelSpec | Mapping[str, Any] | None = None) -> Bundle:
    """Export ``model`` into a verified bundle at ``out_dir`` and return it.

    ``model`` is a zoo name (``segrt models``), ``package.module:factory`` (or ``file.py:factory``)
    returning an ``nn.Module``, or an ``.onnx`` file described by ``spec``/``classes``/``size``.
    ``dynamic=True`` exports symbolic N/H/W with a default profile; pass a
    :class:`ShapeRange` to choose it. Raises a :class:`~segrt.errors.SegrtError` subclass on
    any user error, leaving ``out_dir`` untouched.
    """
    t_start = time.perf_counter()
    spec = ModelSpec.coerce(spec)
    out_dir = Path(out_dir)
    target = _resolve(model)
    user_classes = read_classes(classes) if classes is not None else spec.classes
    user_size = parse_size(size) or spec.input_size
    created = _prepare_out_dir(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".segrt-export-", dir=out_dir))
    try:
        if target.kind == "onnx":
            from segrt.export.api_onnx import export_onnx_file

            plan, tmp_onnx, source, export = export_onnx_file(
                target, tmp, name=name, classes=user_classes, num_classes=num_classes, size=user_size,
                spec=spec, fuse=fuse, dynamic=dynamic, verify=verify, opset=opset)
        else:
            plan, tmp_onnx, source, export = _export_torch(
                target, tmp, name=name, weights=weights, classes=user_classes, num_classes=num_classes,
                size=user_size, spec=spec, fuse=fuse, dynamic=dynamic, opset=opset, exporter=exporter,
                verify=verify)
        export = {**export, "seconds_total": round(time.perf_counter() - t_start, 2)}
        bundle = _install(out_dir, tmp_onnx, _manifest(plan, source, export))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only if still empty
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return bundle


def _export_torch(target: _Target, tmp: Path, *, name, weights, classes, num_classes, size, spec: ModelSpec,
                  fuse: bool, dynamic, opset: int, exporter: str, verify: bool):
    import onnx
    import onnxruntime
    import torch

    from segrt.export.fuse import FusedSegmentation, SemanticLogits
    from segrt.export.onnx_from_torch import DynamicAxes, onnx_from_torch
    from segrt.export.verify import verify_onnx_against_torch
    from segrt.export.weights import load_weights

    entry = target.entry
    torch.manual_seed(SEED)
    if entry is not None:
        n_cls = num_classes if num_classes is not None else (len(classes) if classes else entry.num_classes)
        net = entry.build(n_cls)
        family, default_size, multiple = entry.family, entry.input_size, entry.size_multiple
        default_classes, preferred = entry.classes, entry.exporter
        mean, std, color = entry.mean, entry.std, entry.color_order
        weights = weights if weights is not None else entry.weights
        palette = entry.palette
    else:
        n_req = num_classes if num_classes is not None else (len(classes) if classes else None)
        net = _build_factory_model(target.factory, n_req)
        family = "instances" if _is_maskrcnn(net) else "semantic"
        default_size = (320, 480) if family == "instances" else SEMANTIC_SIZE
        multiple = 32 if family == "instances" else 1
        default_classes, palette = None, None
        preferred = "torchscript" if family == "instances" else "dynamo"
        mean, std, color = ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "RGB") if family == "instances" else \
            (IMAGENET_MEAN, IMAGENET_STD, "RGB")
    mean = spec.mean or mean
    std = spec.std or std
    color = spec.color_order or color
    if family == "instances" and (spec.mean or spec.std):
        raise ConfigError("--mean/--std do not apply to Mask R-CNN (it normalises inside the model)",
                          hint="drop --mean/--std")
    h, w = size or default_size
    label = target.label
    _check_size(h, w, multiple, label)
    if family == "instances":
        from segrt.export.maskrcnn import check_instance_size

        check_instance_size(h, w, label)
        if dynamic:
            raise ConfigError(f"{label}: --dynamic is not supported for Mask R-CNN",
                              hint="export at a fixed --size (the detection graph is built per size)")

    # Weights.
    winfo = None
    if weights is not None:
        winfo = load_weights(net, weights)
    else:
        log.warning(RANDOM_INIT_WARNING.format(name=label))

    # Classes: from the user, the zoo, or the model's own output.
    if default_classes is None:
        if family == "instances":
            default_classes = tuple(f"class_{i}" for i in range(int(net.roi_heads.box_predictor.cls_score.out_features)))
        else:
            with torch.no_grad():
                probe = SemanticLogits(net)(torch.zeros(1, 3, h, w))
            if probe.ndim != 4 or tuple(probe.shape[2:]) != (h, w):
                raise ExportError(f"{label} returns {tuple(probe.shape)} for a 1x3x{h}x{w} input; segrt needs "
                                  f"logits (1, C, {h}, {w})", hint="make the model upsample its logits to the input size")
            default_classes = tuple(f"class_{i}" for i in range(int(probe.shape[1])))
    cls_names = _classes_for(default_classes, classes, num_classes, label)
    if palette is None or len(palette) != len(cls_names):
        palette = default_palette(len(cls_names))
    shape_range = None
    if dynamic:
        shape_range = dynamic if isinstance(dynamic, ShapeRange) else default_shape_range(h, w, max(multiple, 8))
        h, w = shape_range.opt[1], shape_range.opt[2]  # the manifest's size is the profile's opt
    plan = _Plan(name=name or label, family=family, classes=cls_names, palette=palette, height=h, width=w,
                 mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),  # type: ignore[arg-type]
                 color_order=color, fuse=fuse, dynamic=shape_range, multiple=multiple)

    # The graph to export.
    if family == "instances":
        from segrt.export.maskrcnn import INSTANCE_OUTPUTS, MaskRCNNExport

        module = MaskRCNNExport(net, fused=fuse).eval()
        example = (torch.zeros(1, h, w, 3, dtype=torch.uint8) if fuse else torch.zeros(1, 3, h, w),)
        in_name, out_names = ("frame" if fuse else "input"), list(INSTANCE_OUTPUTS)
        dyn_axes = None
    else:
        core = SemanticLogits(net).eval()
        with torch.no_grad():
            n_out = int(core(torch.zeros(1, 3, h, w)).shape[1])
        if n_out != len(cls_names):
            raise ConfigError(f"{label} outputs {n_out} classes but {len(cls_names)} class names were given",
                              hint=f"pass --num-classes {n_out} or {n_out} class names")
        if fuse:
            module = FusedSegmentation(core, plan.mean, plan.std, plan.color_order, len(cls_names)).eval()
            example = (torch.from_numpy(np.zeros((1, h, w, 3), np.uint8)),)
            in_name, out_names = "frame", ["mask"]
            axes_in, axes_out = {0: "N", 1: "H", 2: "W"}, {0: "N", 1: "H", 2: "W"}
        else:
            module = core
            example = (torch.zeros(1, 3, h, w),)
            in_name, out_names = "input", ["logits"]
            axes_in, axes_out = {0: "N", 2: "H", 3: "W"}, {0: "N", 2: "H", 3: "W"}
        dyn_axes = (DynamicAxes(inputs={in_name: axes_in}, outputs={out_names[0]: axes_out})
                    if shape_range else None)

    if opset >= 18 and family == "semantic":
        preferred = "dynamo"  # its native opset: no down-conversion
    onnx_path = tmp / onnx_filename("fp32")
    record = onnx_from_torch(module, example, onnx_path, input_names=[in_name], output_names=out_names,
                             opset=opset, exporter=exporter, preferred=preferred, dynamic=dyn_axes)
    export: dict[str, Any] = {**record, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                              "fused": fuse, "dynamic": shape_range.to_dict() if shape_range else None}

    if verify:
        t = time.perf_counter()
        report = verify_onnx_against_torch(onnx_path, module, family=family, fused=fuse, height=h, width=w,
                                           mean=plan.mean, std=plan.std, color_order=plan.color_order)
        if shape_range is not None:
            report["dynamic_shapes"] = _verify_dynamic(onnx_path, module, plan, shape_range)
        if family == "instances" and report["detections"] == 0:
            report = {"shipped": report,
                      "probe": _verify_instance_probe(module, example, tmp, plan, opset, record["exporter"])}
            report.update(_instance_summary(report))
        else:
            report = {**report, **(_instance_summary({"shipped": report}) if family == "instances" else {})}
        report["seconds"] = round(time.perf_counter() - t, 2)
        export["verification"] = report
    else:
        export["verification"] = None
        log.warning("verification skipped (--no-verify): the ONNX was not compared with PyTorch")

    source = {**target.source, "num_classes": len(cls_names), "random_init": winfo is None, "seed": SEED,
              "weights": winfo.to_dict() if winfo else None,
              "params_count": int(sum(p.numel() for p in net.parameters())),
              "family": family}
    return plan, onnx_path, source, export


def _verify_dynamic(onnx_path: Path, module, plan: _Plan, sr: ShapeRange) -> list[dict[str, Any]]:
    """Check the dynamic graph at the profile's min size and at batch 2 of the opt size."""
    from segrt.export.verify import sample_frames, torch_reference, verify_semantic

    frames = [(f"min {sr.min[1]}x{sr.min[2]}", sample_frames(sr.min[1], sr.min[2], kinds=("random",))[0][1]),
              (f"batch {min(2, sr.max[0])}", sample_frames(plan.height, plan.width, batch=min(2, sr.max[0]),
                                                           kinds=("shapes",))[0][1])]
    ref = torch_reference(module, fused=plan.fuse, mean=plan.mean, std=plan.std, color_order=plan.color_order)
    rep = verify_semantic(onnx_path, ref, frames, fused=plan.fuse, mean=plan.mean, std=plan.std,
                          color_order=plan.color_order)
    return rep["per_input"]


def _verify_instance_probe(module, example, tmp: Path, plan: _Plan, opset: int, exporter: str) -> dict[str, Any]:
    """Export a twin with score threshold 0 and verify it: every detection path gets compared."""
    from segrt.export.onnx_from_torch import onnx_from_torch
    from segrt.export.verify import verify_onnx_against_torch
    from segrt.export.maskrcnn import INSTANCE_OUTPUTS

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


def parse_triplet(text: str | Sequence[float] | None, flag: str) -> tuple[float, float, float] | None:
    """``"123.7,116.3,103.5"`` -> three floats (``None`` passes through)."""
    if text is None:
        return None
    parts = re.split(r"[,\s]+", text.strip()) if isinstance(text, str) else list(text)
    try:
        vals = tuple(float(v) for v in parts if v != "")
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise ConfigError(f"{flag} {text!r} is not three numbers", hint=f"write it like {flag} 123.675,116.28,103.53")
    return vals  # type: ignore[return-value]
