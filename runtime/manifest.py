"""The bundle manifest (``segrt.json``): frozen, typed, validated once on load.

The runtime reads everything it needs from here (input layout, preprocessing,
output kind, classes) and never from CLI defaults. Each dataclass has a
``to_dict``/``from_dict`` pair; ``from_dict`` is the single validation point.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from segrt.errors import ManifestError
from segrt.runtime.redact import redacted_tree

SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu", "fp32-unfused", "int8-cpu-unfused")
# Artifacts made for one kind of device: ``int8-cpu`` (FP32 remainder, U8/S8 Q/DQ) is ONNX
# Runtime/OpenVINO on a CPU; TensorRT never builds it; ``*-unfused`` are the fused graphs without
# their pre/post (the runtime does it), for CPUs where that is faster. The others run anywhere.
CPU_ONLY_PRECISIONS = ("int8-cpu", "fp32-unfused", "int8-cpu-unfused")
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
OUTPUT_KINDS = ("mask", "logits", "instances")
RESIZE_POLICIES = ("stretch", "letterbox")
COLOR_ORDERS = ("BGR", "RGB")
LAYOUTS = ("NHWC", "NCHW")
DTYPES = ("uint8", "float32", "float16")


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(d, Mapping):
        raise ManifestError(f"{where}: expected an object, got {type(d).__name__}")
    if key not in d:
        raise ManifestError(f"{where}: missing field '{key}'")
    return d[key]


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ManifestError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return value


def _pos_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ManifestError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _floats3(value: Any, where: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ManifestError(f"{where}: expected 3 numbers, got {value!r}")
    try:
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: expected 3 numbers, got {value!r}") from exc


@dataclass(frozen=True)
class ShapeRange:
    """Dynamic-shape profile for the (N, H, W) of the input: min, opt, max."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            v = getattr(self, name)
            if len(v) != 3 or any(int(x) <= 0 for x in v):
                raise ManifestError(f"input.dynamic.{name}: expected 3 positive ints (N,H,W), got {v!r}")
        for i in range(3):
            if not self.min[i] <= self.opt[i] <= self.max[i]:
                raise ManifestError(f"input.dynamic: need min <= opt <= max on every axis, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ShapeRange":
        return cls(*(tuple(int(x) for x in _req(d, k, "input.dynamic")) for k in ("min", "opt", "max")))  # type: ignore[arg-type]


@dataclass(frozen=True)
class InputSpec:
    """What the graph's input is.

    Fused graphs take ``uint8`` NHWC frames in ``color_order`` of the camera (BGR);
    unfused ones take normalised float NCHW in the model's colour order.
    """

    name: str
    height: int
    width: int
    layout: str = "NHWC"
    dtype: str = "uint8"
    channels: int = 3
    fused: bool = True
    batch: int = 1
    dynamic: ShapeRange | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ManifestError("input.name: must not be empty")
        _pos_int(self.height, "input.height")
        _pos_int(self.width, "input.width")
        _pos_int(self.channels, "input.channels")
        _pos_int(self.batch, "input.batch")
        _choice(self.layout, LAYOUTS, "input.layout")
        _choice(self.dtype, DTYPES, "input.dtype")

    @property
    def max_batch(self) -> int:
        """The largest batch the graph takes: its profile's max N, else the static batch."""
        return int(self.dynamic.max[0]) if self.dynamic is not None else self.batch

    @property
    def shape(self) -> tuple[int, int, int, int]:
        if self.layout == "NHWC":
            return (self.batch, self.height, self.width, self.channels)
        return (self.batch, self.channels, self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["dynamic"] = self.dynamic.to_dict() if self.dynamic else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InputSpec":
        dyn = d.get("dynamic") if isinstance(d, Mapping) else None
        return cls(
            name=str(_req(d, "name", "input")),
            height=_req(d, "height", "input"),
            width=_req(d, "width", "input"),
            layout=d.get("layout", "NHWC"),
            dtype=d.get("dtype", "uint8"),
            channels=d.get("channels", 3),
            fused=bool(d.get("fused", True)),
            batch=d.get("batch", 1),
            dynamic=ShapeRange.from_dict(dyn) if dyn else None,
        )


@dataclass(frozen=True)
class PreprocessSpec:
    """Preprocessing parameters. mean/std are on the 0..255 scale, in ``color_order``."""

    resize: str = "stretch"
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    color_order: str = "RGB"
    pad_value: int = 0

    def __post_init__(self) -> None:
        _choice(self.resize, RESIZE_POLICIES, "preprocess.resize")
        _choice(self.color_order, COLOR_ORDERS, "preprocess.color_order")
        _floats3(self.mean, "preprocess.mean")
        std = _floats3(self.std, "preprocess.std")
        if any(s <= 0 for s in std):
            raise ManifestError(f"preprocess.std: must be positive, got {self.std!r}")
        if not 0 <= int(self.pad_value) <= 255:
            raise ManifestError(f"preprocess.pad_value: must be 0..255, got {self.pad_value!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessSpec":
        if not isinstance(d, Mapping):
            raise ManifestError("preprocess: expected an object")
        return cls(
            resize=d.get("resize", "stretch"),
            mean=_floats3(d.get("mean", cls.mean), "preprocess.mean"),
            std=_floats3(d.get("std", cls.std), "preprocess.std"),
            color_order=d.get("color_order", "RGB"),
            pad_value=int(d.get("pad_value", 0)),
        )


@dataclass(frozen=True)
class OutputSpec:
    """What the graph returns.

    * ``mask``: one uint8 tensor ``names[0]`` of shape (N, H, W), class ids.
    * ``logits``: one float tensor (N, C, H, W); the runtime does the argmax.
    * ``instances``: ``boxes`` (K,4 xyxy, input pixels), ``labels`` (K,), ``scores`` (K,),
      ``masks`` (K,1,28,28 probabilities); the runtime pastes the masks.
    """

    kind: str
    names: tuple[str, ...]
    num_classes: int

    def __post_init__(self) -> None:
        _choice(self.kind, OUTPUT_KINDS, "output.kind")
        if not self.names:
            raise ManifestError("output.names: must list at least one tensor")
        _pos_int(self.num_classes, "output.num_classes")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": list(self.names), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OutputSpec":
        return cls(
            kind=_req(d, "kind", "output"),
            names=tuple(str(n) for n in _req(d, "names", "output")),
            num_classes=_req(d, "num_classes", "output"),
        )


@dataclass(frozen=True)
class Artifact:
    """One ONNX file of the bundle at one precision, with its checksum and accuracy report."""

    precision: str
    path: str  # relative to the bundle directory
    sha256: str
    accuracy: Mapping[str, Any] | None = None  # gate report vs FP32 (and labels)
    details: Mapping[str, Any] = field(default_factory=dict)  # e.g. excluded nodes, method

    def __post_init__(self) -> None:
        _choice(self.precision, PRECISIONS, "artifacts[].precision")
        parts = self.path.replace("\\", "/").split("/")
        if not self.path or self.path.startswith(("/", "\\")) or ".." in parts:
            raise ManifestError(f"artifacts[].path: must be inside the bundle, got {self.path!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "path": self.path,
            "sha256": self.sha256,
            "accuracy": dict(self.accuracy) if self.accuracy is not None else None,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Artifact":
        return cls(
            precision=_req(d, "precision", "artifacts[]"),
            path=str(_req(d, "path", "artifacts[]")),
            sha256=str(_req(d, "sha256", "artifacts[]")),
            accuracy=d.get("accuracy"),
            details=d.get("details") or {},
        )


@dataclass(frozen=True)
class EngineRecord:
    """A TensorRT engine in the bundle and the provenance it was built with."""

    precision: str
    path: str
    sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    onnx_sha256: str
    build_options: Mapping[str, Any] = field(default_factory=dict)
    built_at: str = ""
    layer_precisions: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice(self.precision, ENGINE_PRECISIONS, "engines[].precision")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        d["build_options"] = dict(self.build_options)
        d["layer_precisions"] = dict(self.layer_precisions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EngineRecord":
        cc = _req(d, "compute_capability", "engines[]")
        return cls(
            precision=_req(d, "precision", "engines[]"),
            path=str(_req(d, "path", "engines[]")),
            sha256=str(_req(d, "sha256", "engines[]")),
            trt_version=str(_req(d, "trt_version", "engines[]")),
            gpu_name=str(_req(d, "gpu_name", "engines[]")),
            compute_capability=(int(cc[0]), int(cc[1])),
            onnx_sha256=str(_req(d, "onnx_sha256", "engines[]")),
            build_options=d.get("build_options") or {},
            built_at=str(d.get("built_at", "")),
            layer_precisions=d.get("layer_precisions") or {},
        )


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to run a bundle, and how each artifact was made."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # BGR per class, for drawing
    input: InputSpec
    preprocess: PreprocessSpec
    output: OutputSpec
    artifacts: Mapping[str, Artifact] = field(default_factory=dict)  # precision -> artifact
    engines: tuple[EngineRecord, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)  # model origin: zoo name, weights, params
    export: Mapping[str, Any] = field(default_factory=dict)  # exporter, opset, verification numbers
    calibration: Mapping[str, Any] | None = None  # provenance of the INT8 calibration set
    # ``--precision auto`` decisions measured per machine: fingerprint -> {choice, ms, artifacts, ...}
    speed: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.name:
            raise ManifestError("name: must not be empty")
        if not self.classes:
            raise ManifestError("classes: must list at least one class")
        if len(self.palette) != len(self.classes):
            raise ManifestError(
                f"palette: has {len(self.palette)} colours for {len(self.classes)} classes"
            )
        for c in self.palette:
            if len(c) != 3 or any(not 0 <= int(v) <= 255 for v in c):
                raise ManifestError(f"palette: colour {c!r} is not three 0..255 values")
        if self.output.kind != "instances" and self.output.num_classes != len(self.classes):
            raise ManifestError(
                f"output.num_classes={self.output.num_classes} but {len(self.classes)} class names"
            )
        for key, art in self.artifacts.items():
            if key != art.precision:
                raise ManifestError(f"artifacts: key {key!r} holds a {art.precision} artifact")

    def for_precision(self, precision: str) -> "Manifest":
        """The manifest as the runtime needs it for one artifact: an artifact with its own I/O
        (``details.io``: an unfused twin of a fused graph) brings its input and output spec."""
        art = self.artifacts.get(precision)
        io = art.details.get("io") if art is not None else None
        if not io:
            return self
        return dataclasses.replace(self, input=InputSpec.from_dict(io["input"]),
                                   output=OutputSpec.from_dict(io["output"]))

    def with_artifact(self, artifact: Artifact) -> "Manifest":
        arts = dict(self.artifacts)
        arts[artifact.precision] = artifact
        return dataclasses.replace(self, artifacts=arts)

    def with_engine(self, engine: EngineRecord) -> "Manifest":
        keep = tuple(e for e in self.engines if e.path != engine.path)
        return dataclasses.replace(self, engines=keep + (engine,))

    def replace(self, **changes: Any) -> "Manifest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "classes": list(self.classes),
            "palette": [list(c) for c in self.palette],
            "input": self.input.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "output": self.output.to_dict(),
            # Provenance records may name URIs (a calibration stream, a weights URL): stored redacted.
            "artifacts": redacted_tree({k: a.to_dict() for k, a in sorted(self.artifacts.items())}),
            "engines": redacted_tree([e.to_dict() for e in self.engines]),
            "source": redacted_tree(dict(self.source)),
            "export": redacted_tree(dict(self.export)),
            "calibration": redacted_tree(dict(self.calibration)) if self.calibration is not None else None,
            "speed": {k: dict(v) for k, v in sorted(self.speed.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        if not isinstance(d, Mapping):
            raise ManifestError("manifest: expected a JSON object")
        version = d.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ManifestError(f"schema_version: expected an integer, got {version!r}")
        if version < 1:
            raise ManifestError(f"schema_version {version} is not a segrt manifest version (they start at 1)",
                                hint="re-export the bundle with segrt export")
        if version > SCHEMA_VERSION:
            raise ManifestError(
                f"schema_version {version} is newer than this segrt understands ({SCHEMA_VERSION})",
                hint="upgrade segrt: pip install -U segrt",
            )
        try:
            arts = {str(k): Artifact.from_dict(v) for k, v in (d.get("artifacts") or {}).items()}
            return cls(
                schema_version=version,
                name=str(_req(d, "name", "manifest")),
                classes=tuple(str(c) for c in _req(d, "classes", "manifest")),
                palette=tuple(tuple(int(v) for v in c) for c in _req(d, "palette", "manifest")),  # type: ignore[misc]
                input=InputSpec.from_dict(_req(d, "input", "manifest")),
                preprocess=PreprocessSpec.from_dict(d.get("preprocess") or {}),
                output=OutputSpec.from_dict(_req(d, "output", "manifest")),
                artifacts=arts,
                engines=tuple(EngineRecord.from_dict(e) for e in d.get("engines") or ()),
                source=d.get("source") or {},
                export=d.get("export") or {},
                calibration=d.get("calibration"),
                speed={str(k): v for k, v in (d.get("speed") or {}).items() if isinstance(v, Mapping)},
            )
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise ManifestError(f"manifest: malformed field ({exc})") from exc


def plain_json(obj: Any, *, nonfinite_as_none: bool = False) -> Any:
    """``obj`` in plain JSON types: Mappings as dicts with str keys, tuples as lists, numpy scalars
    as Python numbers (accuracy reports and artifact details hold all three); with
    ``nonfinite_as_none``, NaN and infinities as None (strict JSON for other tools)."""
    if isinstance(obj, Mapping):
        return {str(k): plain_json(v, nonfinite_as_none=nonfinite_as_none) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v, nonfinite_as_none=nonfinite_as_none) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if nonfinite_as_none and isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """A distinct, deterministic BGR colour per class (Pascal VOC's bit-interleaving scheme)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((b, g, r))
    return tuple(out)
