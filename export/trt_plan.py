"""The TensorRT build plan: every decision about an engine build, as plain data.

``plan_build(BuildRequest) -> BuildPlan`` decides, from the TensorRT version,
the precision, which ONNX files the bundle has, DLA and the legacy opt-in:
which ONNX to parse, strong or weak typing, which network/parser/builder flags,
which calibrator, the optimisation profile, and refuses what the version cannot
do with a one-line reason. ``engine_from_onnx`` then only translates the plan
into TensorRT calls. Nothing here imports TensorRT, so all of it is tested on a
machine without a GPU.

Facts behind the rules (TensorRT sources, NVIDIA's 10.x->11.x migration guide,
and the string tables of the compiled bindings 10.3 / 10.16 / 11.4):

* 11.x is always strongly typed: ``BuilderFlag.FP16/INT8``, the INT8 calibrators,
  ``int8_calibrator`` and ``set_calibration_profile`` are gone. Precision comes
  from the ONNX (FP16 cast, INT8 Q/DQ).
* 10.x: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` opts in to strong typing
  (a strongly typed network rejects precision builder flags). Weak typing plus
  FP16/INT8 flags and a calibrator is the legacy path, deprecated since 10.1/10.12.
* ``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY`` arrived in 10.9 (absent
  from the 10.3 bindings); hardware compatibility is a discrete-GPU feature.
* DLA (Orin only): min = opt = max shapes; FP16 or INT8 only. 10.x needs the
  FP16/INT8 builder flags (weak typing); 11.0-11.3 have no DLA; 11.4.1 builds DLA
  from an FP16-typed ONNX with ``OnnxParserFlag.ADJUST_FOR_DLA``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from segrt.errors import BundleError, ConfigError, EngineError
from segrt.runtime.manifest import ENGINE_PRECISIONS as PRECISIONS, InputSpec
from segrt.runtime.trt_api import version_text

MIN_TRT = (10, 0)
MIN_TRT_DLA_11 = (11, 4, 1)
MIN_TRT_SAME_CC = (10, 9)
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}
CALIBRATORS = ("entropy", "minmax")
DEFAULT_OPT_LEVEL = 3


@dataclass(frozen=True)
class ProfileShapes:
    """One optimisation-profile entry: full input shapes (in the graph's layout)."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def to_dict(self) -> dict[str, object]:
        return {"input": self.input_name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class BuildRequest:
    """What the user asked for (``segrt build`` flags) plus what the machine/bundle has."""

    trt_version: tuple[int, ...]
    precision: str
    input: InputSpec
    available_onnx: frozenset[str] = frozenset({"fp32"})  # precisions with an ONNX in the bundle
    legacy: bool = False
    calibrator: str = "entropy"
    dla_core: int | None = None
    workspace_gib: float | None = None
    opt_level: int | None = None
    version_compatible: bool = False
    hardware_compat: str = "none"
    jetson: bool = False
    onnx_input_shape: tuple[int, ...] | None = None  # as parsed; -1 for dynamic axes


@dataclass(frozen=True)
class BuildPlan:
    """What engine_from_onnx does. Flag fields hold enum *member names*."""

    trt_version: tuple[int, ...]
    precision: str
    onnx_precision: str                 # which bundle ONNX to parse
    path: str                           # "strongly_typed" or "legacy_calibrator"
    strongly_typed: bool
    network_flags: tuple[str, ...]      # NetworkDefinitionCreationFlag members
    builder_flags: tuple[str, ...]      # BuilderFlag members
    parser_flags: tuple[str, ...]       # OnnxParserFlag members
    calibrator: str | None              # "entropy" / "minmax" (legacy INT8 only)
    profile: ProfileShapes | None
    calibration_shape: tuple[int, ...] | None
    device: str                         # "GPU" or "DLA"
    dla_core: int | None
    workspace_bytes: int | None
    opt_level: int
    hardware_compat: str                # HardwareCompatibilityLevel member
    notes: tuple[str, ...] = field(default_factory=tuple)
    cleared_builder_flags: tuple[str, ...] = ()  # BuilderFlag members switched off (TF32 for fp32)
    legacy: bool = False                # --legacy-calibrator asked for (DLA on 10.x is weak without it)

    def options(self) -> dict[str, object]:
        """The build options recorded in the manifest's EngineRecord."""
        return {
            "path": self.path,
            "onnx": self.onnx_precision,
            "strongly_typed": self.strongly_typed,
            "builder_flags": list(self.builder_flags),
            "cleared_builder_flags": list(self.cleared_builder_flags),
            "tf32": "TF32" not in self.cleared_builder_flags,
            "legacy": self.legacy,
            "parser_flags": list(self.parser_flags),
            "calibrator": self.calibrator,
            "profile": self.profile.to_dict() if self.profile else None,
            "device": self.device,
            "dla_core": self.dla_core,
            "workspace_bytes": self.workspace_bytes,
            "opt_level": self.opt_level,
            "version_compatible": "VERSION_COMPATIBLE" in self.builder_flags,
            "hardware_compat": self.hardware_compat,
        }


def full_shape(nhw: Sequence[int], spec: InputSpec) -> tuple[int, int, int, int]:
    """(N, H, W) -> the graph's full input shape for its layout and channel count."""
    n, h, w = (int(x) for x in nhw)
    return (n, h, w, spec.channels) if spec.layout == "NHWC" else (n, spec.channels, h, w)


def profile_shapes(spec: InputSpec, onnx_shape: Sequence[int] | None = None) -> ProfileShapes | None:
    """The optimisation profile for the input.

    A manifest ``dynamic`` range gives min/opt/max over (N, H, W). An ONNX with
    dynamic axes but no range in the manifest gets a fixed profile at the
    manifest's size (TensorRT needs a profile for any -1 axis). A static ONNX
    needs none, whatever the manifest says (TensorRT rejects a profile on
    fixed axes that differs from them).
    """
    if onnx_shape is not None and all(int(d) >= 0 for d in onnx_shape):
        return None
    if spec.dynamic is not None:
        r = spec.dynamic
        return ProfileShapes(spec.name, full_shape(r.min, spec), full_shape(r.opt, spec), full_shape(r.max, spec))
    if onnx_shape is not None and any(int(d) < 0 for d in onnx_shape):
        s = tuple(spec.shape)
        if len(onnx_shape) != len(s):
            raise EngineError(f"ONNX input {spec.name!r} has rank {len(onnx_shape)}, manifest says {s}",
                              hint="re-export the bundle")
        return ProfileShapes(spec.name, s, s, s)
    return None


def check_profile(profile: ProfileShapes) -> None:
    """min <= opt <= max on every axis, all positive, same rank."""
    if not len(profile.min) == len(profile.opt) == len(profile.max):
        raise ConfigError(f"profile for {profile.input_name!r}: min/opt/max ranks differ")
    for lo, mid, hi in zip(profile.min, profile.opt, profile.max):
        if lo <= 0 or not lo <= mid <= hi:
            raise ConfigError(f"profile for {profile.input_name!r}: need 0 < min <= opt <= max, "
                              f"got {profile.min} / {profile.opt} / {profile.max}")


def plan_build(req: BuildRequest) -> BuildPlan:
    """Decide the build. Raises EngineError/ConfigError/BundleError with the fix on refusal."""
    v = tuple(req.trt_version)
    vtxt = version_text(v)
    if req.precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {req.precision!r}", hint="use fp32, fp16 or int8")
    if v[:2] < MIN_TRT:
        raise EngineError(f"TensorRT {vtxt} is too old: segrt builds with TensorRT >= 10.0",
                          hint="on a Jetson use JetPack 6 or later; on a desktop pip install -U tensorrt")
    major = v[0]
    notes: list[str] = []

    if req.calibrator not in CALIBRATORS:
        raise ConfigError(f"unknown calibrator {req.calibrator!r}", hint="use entropy or minmax")
    if req.hardware_compat not in HARDWARE_COMPAT:
        raise ConfigError(f"unknown hardware compatibility {req.hardware_compat!r}",
                          hint="use none, ampere+ or same-cc")
    if req.workspace_gib is not None and not req.workspace_gib > 0:
        raise ConfigError(f"--workspace must be positive GiB, got {req.workspace_gib}")
    opt_level = DEFAULT_OPT_LEVEL if req.opt_level is None else int(req.opt_level)
    if not 0 <= opt_level <= 5:
        raise ConfigError(f"--opt-level must be 0..5, got {req.opt_level}")
    if req.dla_core is not None and req.dla_core < 0:
        raise ConfigError(f"--dla-core must be >= 0, got {req.dla_core}")

    # -- legacy (weak typing + builder flags + calibrator): TensorRT 10.x only -----------
    if req.legacy and major >= 11:
        raise EngineError(
            f"--legacy-calibrator needs TensorRT 10.x; TensorRT {vtxt} removed weak typing, the FP16/INT8 "
            "builder flags and the INT8 calibrators",
            hint=f"build from the precision-typed ONNX instead: segrt quantize BUNDLE --precision {req.precision}")
    if req.legacy and req.precision == "fp32":
        raise ConfigError("--legacy-calibrator applies to fp16 and int8 only",
                          hint="drop --legacy-calibrator for an fp32 engine")

    dla = req.dla_core is not None
    if dla:
        if req.precision == "fp32":
            raise EngineError("DLA runs FP16 or INT8 only", hint="use --precision fp16 or int8 with --dla-core")
        if major >= 11 and v < MIN_TRT_DLA_11:
            raise EngineError(f"TensorRT {vtxt} has no DLA support (11.0-11.4.0 dropped it; 11.4.1 on "
                              "JetPack >= 7.2.2 restores it for AGX Orin)",
                              hint="drop --dla-core, or use JetPack's TensorRT 10.x")
        if req.hardware_compat != "none" or req.version_compatible:
            raise EngineError("DLA engines cannot be version- or hardware-compatible",
                              hint="drop --version-compatible / --hardware-compat with --dla-core")
        if req.legacy and req.calibrator == "minmax":
            raise ConfigError("DLA needs the entropy calibrator (IInt8EntropyCalibrator2); "
                              "--calibrator minmax is refused with --dla-core",
                              hint="drop --calibrator minmax (entropy is the default)")

    # Weak typing is used by the legacy opt-in, and by DLA on 10.x (which needs the flags).
    weak = req.legacy or (dla and major < 11)
    if dla and major < 11 and not req.legacy:
        notes.append("DLA on TensorRT 10.x needs the FP16/INT8 builder flags: building weakly typed")

    # -- which ONNX ------------------------------------------------------------------
    if weak and (req.legacy or req.precision == "fp16"):
        onnx_precision = "fp32"            # flags choose the precision from the FP32 graph
    else:
        onnx_precision = req.precision     # strongly typed, or DLA-10.x INT8 from the Q/DQ graph
    if onnx_precision not in req.available_onnx:
        hint = f"make it with: segrt quantize BUNDLE --precision {onnx_precision}"
        if onnx_precision != "fp32" and major < 11:
            hint += " (or, on TensorRT 10.x, build from model.onnx with --legacy-calibrator)"
        if onnx_precision == "fp32":
            hint = "re-export the bundle: segrt export MODEL"
        raise BundleError(f"the bundle has no {onnx_precision} ONNX to build a {req.precision} engine from",
                          hint=hint)

    # -- flags -----------------------------------------------------------------------
    network_flags: tuple[str, ...] = ()
    if not weak and major < 11:
        network_flags = ("STRONGLY_TYPED",)   # 11.x: always strongly typed, the flag is ignored
    builder_flags: list[str] = []
    calibrator = None
    if weak:
        if req.precision in ("fp16", "int8"):
            builder_flags.append("FP16")      # FP16 also as INT8's fallback precision
        if req.precision == "int8":
            builder_flags.append("INT8")
            if req.legacy:
                calibrator = req.calibrator
    parser_flags: tuple[str, ...] = ()
    if dla:
        builder_flags.append("GPU_FALLBACK")  # layers DLA cannot run (ArgMax/TopK) go to the GPU
        if major >= 11:
            parser_flags = ("ADJUST_FOR_DLA",)
    if req.version_compatible:
        builder_flags.append("VERSION_COMPATIBLE")
        notes.append("version-compatible engine: embeds a lean runtime, runs slower; the runtime "
                     "deserializes it with engine_host_code_allowed")

    hw = HARDWARE_COMPAT[req.hardware_compat]
    if hw != "NONE":
        if req.jetson:
            raise EngineError("--hardware-compat is a discrete-GPU feature, not for Jetson",
                              hint="build on the Jetson that runs the engine and drop --hardware-compat")
        if hw == "SAME_COMPUTE_CAPABILITY" and v[:2] < MIN_TRT_SAME_CC:
            raise EngineError(f"--hardware-compat same-cc needs TensorRT >= 10.9, this is {vtxt}",
                              hint="use --hardware-compat ampere+ or upgrade TensorRT")

    # -- shapes ----------------------------------------------------------------------
    profile = profile_shapes(req.input, req.onnx_input_shape)
    if profile is None and req.input.dynamic is not None and req.onnx_input_shape is not None:
        notes.append(f"the ONNX input {req.input.name!r} is static {tuple(req.onnx_input_shape)}: "
                     "the manifest's dynamic range adds no optimisation profile")
    if profile is not None:
        check_profile(profile)
        if dla and not profile.is_static:
            raise EngineError("DLA needs static shapes (min = opt = max); the bundle's input is dynamic",
                              hint="re-export with a fixed size, or build without --dla-core")
    calibration_shape = None
    if calibrator is not None:
        calibration_shape = calibration_shape_for(req.input, profile)
    # FP32 means FP32: TensorRT enables TF32 for FP32 convolutions/matmuls on Ampere+ by default.
    cleared = ("TF32",) if req.precision == "fp32" else ()

    workspace = int(req.workspace_gib * (1 << 30)) if req.workspace_gib is not None else None
    return BuildPlan(
        trt_version=v, precision=req.precision, onnx_precision=onnx_precision,
        path="legacy_calibrator" if weak else "strongly_typed", strongly_typed=not weak,
        network_flags=network_flags, builder_flags=tuple(builder_flags), parser_flags=parser_flags,
        calibrator=calibrator, profile=profile, calibration_shape=calibration_shape,
        device="DLA" if dla else "GPU", dla_core=req.dla_core, workspace_bytes=workspace,
        opt_level=opt_level, hardware_compat=hw, notes=tuple(notes), cleared_builder_flags=cleared,
        legacy=req.legacy,
    )


def calibration_shape_for(spec: InputSpec, profile: ProfileShapes | None) -> tuple[int, ...]:
    """The one shape calibration batches have and the calibration profile is set to.

    Batches come from the calibration reader at the manifest's size (the frames
    inference sees), so the calibration profile uses that size too, with the
    profile's OPT batch; it must lie inside the profile's min..max.
    """
    manifest_shape = tuple(int(d) for d in spec.shape)
    if profile is None:
        return manifest_shape
    shape = (int(profile.opt[0]),) + manifest_shape[1:]
    if len(shape) != len(profile.min) or any(not lo <= d <= hi for d, lo, hi in zip(shape, profile.min, profile.max)):
        raise ConfigError(f"calibration runs at the manifest's size {shape}, outside the profile "
                          f"{profile.min}..{profile.max} of {spec.name!r}",
                          hint="make the manifest's dynamic range include the model size")
    return shape


def check_hardware_compat(level: str, compute_capability: tuple[int, int]) -> None:
    """AMPERE_PLUS engines must be built on an Ampere-or-newer GPU (SM >= 8.0)."""
    if level == "AMPERE_PLUS" and tuple(compute_capability) < (8, 0):
        raise EngineError(f"--hardware-compat ampere+ needs an Ampere or newer GPU to build on, this one is "
                          f"SM {compute_capability[0]}.{compute_capability[1]}",
                          hint="drop --hardware-compat")


# -- names -------------------------------------------------------------------------------
def gpu_slug(gpu_name: str, compute_capability: tuple[int, int]) -> str:
    """``"NVIDIA GeForce RTX 4090", (8, 9)`` -> ``"geforce-rtx-4090-sm89"``."""
    name = re.sub(r"^nvidia\s+", "", gpu_name.strip(), flags=re.I)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"
    return f"{slug}-sm{compute_capability[0]}{compute_capability[1]}"


def engine_filename(precision: str, gpu_name: str, compute_capability: tuple[int, int],
                    trt_version: Sequence[int], dla_core: int | None = None) -> str:
    """``model.<precision>.<gpu-slug>.trt<ver>.engine`` (``-dla<N>`` after the slug for DLA)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}")
    slug = gpu_slug(gpu_name, compute_capability) + (f"-dla{dla_core}" if dla_core is not None else "")
    return f"model.{precision}.{slug}.trt{version_text(trt_version)}.engine"


def timing_cache_filename(gpu_name: str, compute_capability: tuple[int, int], trt_version: Sequence[int]) -> str:
    """One timing cache per GPU and TensorRT version (caches are not portable across either)."""
    return f"timing.{gpu_slug(gpu_name, compute_capability)}.trt{version_text(trt_version)}.cache"


def inspector_filename(engine_name: str) -> str:
    """The engine inspector's per-layer JSON saved beside the engine."""
    stem = engine_name[: -len(".engine")] if engine_name.endswith(".engine") else engine_name
    return stem + ".layers.json"
