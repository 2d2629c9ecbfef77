"""Build a TensorRT engine from a bundle's ONNX, save it with its provenance and layer report.

All decisions live in :mod:`segrt.export.trt_plan` (tested without a GPU). This
module only translates a :class:`~segrt.export.trt_plan.BuildPlan` into
TensorRT calls, in small functions each marked with the code path it belongs to
(``TRT_PATHS`` below says which TensorRT releases each path claims; the binding
conformance test checks every TensorRT name used here against NVIDIA's compiled
bindings of those releases). None of it has run on a GPU yet. The paths:

* ``strongly_typed``  the default on every version: precision comes from the ONNX.
* ``legacy_calibrator``  TensorRT 10.x only: weak typing, FP16/INT8 builder flags,
  entropy/min-max calibrator with a calibration cache.
* ``dla_adjust``  11.4.1: ``OnnxParserFlag.ADJUST_FOR_DLA`` for DLA from an FP16-typed ONNX.
* ``same_cc``  ``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY`` (TensorRT >= 10.9).
* ``common``  what every version shares (builder, parser, config, profile, timing cache,
  DLA device, inspector).

The engine inspector's per-layer JSON is saved beside the engine and summarised
(layers running in FP32 / FP16 / INT8) by :func:`layer_precisions_from_inspector`,
a plain function that reads both the 10.x and the 11.x schema.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from segrt.errors import EngineError
from segrt.export.trt_plan import (BuildPlan, BuildRequest, check_hardware_compat, engine_filename,
                                   inspector_filename, plan_build, timing_cache_filename)
from segrt.runtime.bundle import Bundle
from segrt.runtime.fsutil import sha256_file, write_bytes_atomic
from segrt.runtime.manifest import EngineRecord
from segrt.runtime.provenance import make_record
from segrt.runtime.trt_api import import_tensorrt, jetson_model, tensorrt_version, trt_path, version_text
from segrt.runtime.backends.select import register_engine_builder
from segrt.runtime.backends.tensorrt import process_logger
from segrt.export.trt_machine import gpu_identity, machine_provenance, on_device

if TYPE_CHECKING:  # annotations only
    import tensorrt as trt

log = logging.getLogger("segrt.build")

TRT_PATHS = {
    "common": ("10.3", "10.16", "11.4"),
    "strongly_typed": ("10.3", "10.16", "11.4"),
    "legacy_calibrator": ("10.3", "10.16"),
    "dla_adjust": ("10.16", "11.4"),
    "same_cc": ("10.16", "11.4"),
}


# -- inspector JSON -> per-precision layer counts (plain; both schemas) ---------------------
_FLOAT_KINDS = ("int4", "fp4", "fp8", "int8", "bf16", "fp16", "fp32")


def _dtype_kind(text: str) -> str | None:
    """Classify one tensor's data type text from the inspector.

    10.x gives ``"Format/Datatype": "Row major linear FP32 format"`` (or, without an
    execution context, short names such as ``"Half"``); 11.x a separate
    ``"DataType": "Float"``. Returns fp32/fp16/bf16/int8/fp8/int4/fp4, ``"int"``
    for index types (Int32/Int64/UInt8/Bool), or None when unknown.
    """
    t = str(text).lower().replace("-", "").replace(" ", "")
    if not t:
        return None
    if "uint8" in t or "int32" in t or "int64" in t or "bool" in t:
        return "int"
    if "int4" in t:
        return "int4"
    if "fp4" in t or "e2m1" in t:
        return "fp4"
    if "fp8" in t or "e4m3" in t:
        return "fp8"
    if "int8" in t:
        return "int8"
    if "bf16" in t or "bfloat" in t:
        return "bf16"
    if "fp16" in t or "half" in t:
        return "fp16"
    if "fp32" in t or "float" in t:
        return "fp32"
    return None


def inspector_schema(info: Mapping[str, Any]) -> str:
    """``"10.x"`` (flat ``Bindings`` list), ``"11.x"`` (``I/O Tensors`` objects) or ``"unknown"``."""
    if "I/O Tensors" in info:
        return "11.x"
    if "Bindings" in info:
        return "10.x"
    return "unknown"


def _tensor_kinds(layer: Mapping[str, Any]) -> list[str]:
    kinds = []
    for key in ("Inputs", "Outputs"):
        for t in layer.get(key) or ():
            if not isinstance(t, Mapping):
                continue
            text = t.get("DataType")               # 11.x
            if text is None:
                text = t.get("Format/Datatype", "")  # 10.x
            k = _dtype_kind(text)
            if k:
                kinds.append(k)
    return kinds


def layer_precision(layer: Mapping[str, Any] | str) -> str:
    """The precision a layer computes in: the lowest float/quantized type among its tensors.

    An INT8 convolution with a fused DQ has INT8 inputs and FP16/FP32 outputs:
    it counts as INT8. Layers with only index tensors (shape math) are "other";
    a layer listed by name only (profiling verbosity below DETAILED) is "unknown".
    """
    if not isinstance(layer, Mapping):
        return "unknown"
    kinds = _tensor_kinds(layer)
    for k in _FLOAT_KINDS:
        if k in kinds:
            return k
    return "other" if kinds else "unknown"


def layer_precisions_from_inspector(info: str | Mapping[str, Any]) -> dict[str, int]:
    """Count layers per precision from ``get_engine_information(JSON)`` output.

    Returns e.g. ``{"layers": 57, "fp32": 3, "fp16": 10, "int8": 40, "other": 4, "reformat": 6}``;
    ``reformat`` counts the Reformat layers TensorRT inserted between precisions/formats
    (many of them is a common reason INT8 is no faster than FP16).
    """
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except json.JSONDecodeError as exc:
            raise EngineError(f"engine inspector returned invalid JSON ({exc})") from exc
    if not isinstance(info, Mapping) or not isinstance(info.get("Layers"), list):
        raise EngineError("engine inspector JSON has no 'Layers' list")
    counts: dict[str, int] = {"layers": 0}
    for layer in info["Layers"]:
        counts["layers"] += 1
        p = layer_precision(layer)
        counts[p] = counts.get(p, 0) + 1
        if isinstance(layer, Mapping) and str(layer.get("LayerType", "")).lower() == "reformat":
            counts["reformat"] = counts.get("reformat", 0) + 1
    return counts


def precision_summary(counts: Mapping[str, int]) -> str:
    """One line: ``57 layers: 40 INT8, 10 FP16, 3 FP32, 4 other (6 reformat)``."""
    parts = [f"{counts[k]} {k.upper()}" for k in ("int8", "fp8", "int4", "fp4", "fp16", "bf16", "fp32")
             if counts.get(k)]
    for k in ("other", "unknown"):
        if counts.get(k):
            parts.append(f"{counts[k]} {k}")
    line = f"{counts.get('layers', 0)} layers: " + (", ".join(parts) or "none")
    if counts.get("reformat"):
        line += f" ({counts['reformat']} reformat)"
    return line


def onnx_input_shape(onnx_path: Path, input_name: str) -> tuple[int, ...] | None:
    """The ONNX graph input's shape, -1 for symbolic/unknown axes (read without TensorRT)."""
    import onnx  # noqa: PLC0415 - only when building

    model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name == input_name:
            dims = inp.type.tensor_type.shape.dim
            return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims)
    return None


# -- the thin TensorRT part ------------------------------------------------------------
@trt_path("common")
def _builder(trt, plan: BuildPlan, logger: trt.ILogger) -> tuple:
    builder = trt.Builder(logger)  # the process logger already registered the plugins (ROIAlign_TRT etc.)
    if plan.device == "DLA" and plan.dla_core is not None and plan.dla_core >= int(builder.num_DLA_cores):
        raise EngineError(f"--dla-core {plan.dla_core}: this device has {int(builder.num_DLA_cores)} DLA core(s)",
                          hint="DLA exists on Jetson Orin only; drop --dla-core elsewhere")
    return builder, builder.create_builder_config()


@trt_path("strongly_typed")
def _network_strongly_typed(trt, builder: trt.Builder, plan: BuildPlan) -> trt.INetworkDefinition:
    flags = 0
    if "STRONGLY_TYPED" in plan.network_flags:  # 10.x opt-in; 11.x is always strongly typed
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return builder.create_network(flags)


@trt_path("legacy_calibrator")
def _network_weakly_typed(trt, builder: trt.Builder) -> trt.INetworkDefinition:
    return builder.create_network(0)  # 10.x: explicit batch is implied, weak typing is the default


@trt_path("common")
def _parse(trt, network: trt.INetworkDefinition, logger: trt.ILogger, onnx_path: Path,
           adjust: Callable | None = None) -> trt.OnnxParser:
    parser = trt.OnnxParser(network, logger)
    if adjust is not None:
        adjust(parser)
    if not parser.parse_from_file(os.fspath(onnx_path)):  # handles external-data ONNX
        errors = [str(parser.get_error(i)) for i in range(int(parser.num_errors))]
        raise EngineError(f"TensorRT cannot parse {onnx_path.name}: " + ("; ".join(errors[:3]) or "unknown error"),
                          hint="check the ONNX opset (<= 20 for TensorRT 10.3) and unsupported ops")
    return parser


@trt_path("dla_adjust")
def _adjust_for_dla(trt, parser: trt.OnnxParser) -> None:
    parser.set_flag(trt.OnnxParserFlag.ADJUST_FOR_DLA)


@trt_path("common")
def _configure_common(trt, builder: trt.Builder, config: trt.IBuilderConfig, plan: BuildPlan,
                      timing_blob: bytes) -> None:
    if plan.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_bytes))
    config.builder_optimization_level = int(plan.opt_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer types in the inspector
    if "TF32" in plan.cleared_builder_flags:  # fp32: no TF32 convolutions/matmuls on Ampere+ (on by default)
        config.clear_flag(trt.BuilderFlag.TF32)
    if plan.profile is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(plan.profile.input_name, plan.profile.min, plan.profile.opt, plan.profile.max)
        config.add_optimization_profile(profile)
    if plan.device == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(plan.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if "VERSION_COMPATIBLE" in plan.builder_flags:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if plan.hardware_compat == "AMPERE_PLUS":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    cache = config.create_timing_cache(timing_blob)
    config.set_timing_cache(cache, True)  # ignore a mismatched cache rather than fail


@trt_path("same_cc")
def _configure_same_cc(trt, config: trt.IBuilderConfig) -> None:
    config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY


@trt_path("legacy_calibrator")
def _configure_weak_typing(trt, builder: trt.Builder, config: trt.IBuilderConfig, plan: BuildPlan,
                           calibrator: trt.IInt8Calibrator | None) -> None:
    if "FP16" in plan.builder_flags:
        config.set_flag(trt.BuilderFlag.FP16)
    if "INT8" in plan.builder_flags:
        config.set_flag(trt.BuilderFlag.INT8)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        if plan.profile is not None:
            # Calibration runs at the shape of the calibration batches (trt_plan.calibration_shape_for).
            shape = plan.calibration_shape
            profile = builder.create_optimization_profile()
            profile.set_shape(plan.profile.input_name, shape, shape, shape)
            config.set_calibration_profile(profile)


@trt_path("common")
def _build(trt, builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig) -> tuple:
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (see the TensorRT log above)")
    timing = config.get_timing_cache()
    return bytes(memoryview(serialized)), bytes(memoryview(timing.serialize())) if timing is not None else b""


@trt_path("common")
def _inspect(trt, plan_bytes: bytes, logger: trt.ILogger, host_code: bool) -> str:
    runtime = trt.Runtime(logger)
    if host_code:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan_bytes)
    if engine is None:
        raise EngineError("the engine just built does not deserialize (see the TensorRT log above)")
    inspector = engine.create_engine_inspector()
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


@trt_path("common")
@contextlib.contextmanager
def _verbosity(trt, logger: trt.ILogger, verbose: bool) -> Iterator[None]:
    """VERBOSE on the process-wide logger for the block (never a new logger: the plugin library
    keeps a pointer to the one it was given)."""
    before = logger.min_severity
    if verbose:
        logger.min_severity = trt.Logger.VERBOSE
    try:
        yield
    finally:
        logger.min_severity = before


def serialize_engine(trt, plan: BuildPlan, onnx_path: Path, *, timing_blob: bytes = b"",
                     calibrator=None, verbose: bool = False) -> tuple[bytes, bytes, str]:
    """Build per ``plan``: returns (engine plan bytes, timing cache bytes, inspector JSON)."""
    logger = process_logger(trt)
    with _verbosity(trt, logger, verbose):
        return _serialize(trt, plan, onnx_path, logger, timing_blob, calibrator)


def _serialize(trt, plan: BuildPlan, onnx_path: Path, logger, timing_blob: bytes,
               calibrator) -> tuple[bytes, bytes, str]:
    builder, config = _builder(trt, plan, logger)
    if plan.strongly_typed:
        network = _network_strongly_typed(trt, builder, plan)
    else:
        network = _network_weakly_typed(trt, builder)
    adjust = (lambda p: _adjust_for_dla(trt, p)) if "ADJUST_FOR_DLA" in plan.parser_flags else None
    _parse(trt, network, logger, onnx_path, adjust)
    _configure_common(trt, builder, config, plan, timing_blob)
    if plan.hardware_compat == "SAME_COMPUTE_CAPABILITY":
        _configure_same_cc(trt, config)
    if not plan.strongly_typed:
        _configure_weak_typing(trt, builder, config, plan, calibrator)
    engine_bytes, timing = _build(trt, builder, network, config)
    info = _inspect(trt, engine_bytes, logger, "VERSION_COMPATIBLE" in plan.builder_flags)
    return engine_bytes, timing, info


# -- the library function the CLI calls -------------------------------------------------
def build_bundle_engine(bundle: Bundle, *, precision: str = "fp16", legacy: bool = False,
                        calibrator: str = "entropy", calib_source: str | None = None, calib_frames: int = 200,
                        workspace_gib: float | None = None, dla_core: int | None = None,
                        timing_cache: str | os.PathLike[str] | None = None, opt_level: int | None = None,
                        version_compatible: bool = False, hardware_compat: str = "none",
                        device: int = 0, verbose: bool = False,
                        echo: Callable[[str], None] = log.info) -> EngineRecord:
    """Build ``bundle``'s engine at ``precision`` on this GPU; record it in the manifest.

    Writes ``model.<precision>.<gpu>.trt<ver>.engine``, its inspector JSON beside
    it, and the timing cache (per GPU and TensorRT version). Raises
    BackendUnavailableError without TensorRT or a GPU, EngineError when the
    version cannot do what was asked.
    """
    trt = import_tensorrt()
    version = tensorrt_version(trt)
    gpu_name, cc = gpu_identity(device)
    m = bundle.manifest
    req = BuildRequest(
        trt_version=version, precision=precision, input=m.input, available_onnx=frozenset(m.artifacts),
        legacy=legacy, calibrator=calibrator, dla_core=dla_core, workspace_gib=workspace_gib,
        opt_level=opt_level, version_compatible=version_compatible, hardware_compat=hardware_compat,
        jetson=jetson_model() is not None,
    )
    onnx_path = bundle.onnx_path(plan_build(req).onnx_precision, verify=True)
    plan = plan_build(dataclasses.replace(req, onnx_input_shape=onnx_input_shape(onnx_path, m.input.name)))
    check_hardware_compat(plan.hardware_compat, cc)
    for note in plan.notes:
        echo(f"note: {note}")

    cache_path = Path(timing_cache) if timing_cache else bundle.path / timing_cache_filename(gpu_name, cc, version)
    timing_blob = cache_path.read_bytes() if cache_path.is_file() else b""

    calib = None
    if plan.calibrator is not None:
        from segrt.calibration.trt_legacy import legacy_calibrator  # noqa: PLC0415 - 10.x legacy only
        calib = legacy_calibrator(trt, bundle, kind=plan.calibrator, source_uri=calib_source,
                                  frames=calib_frames, shape=plan.calibration_shape, device=device)
    echo(f"building {precision} engine with TensorRT {version_text(version)} on {gpu_name} "
         f"(SM {cc[0]}.{cc[1]}, {plan.path.replace('_', ' ')}) from {onnx_path.name}")
    with on_device(device):  # every build, calibrated or not, runs on the device asked for
        try:
            engine_bytes, timing, info = serialize_engine(trt, plan, onnx_path, timing_blob=timing_blob,
                                                          calibrator=calib, verbose=verbose)
        except EngineError as exc:
            if calib is not None and calib.feed.error is not None:
                # the calibrator's own error (swallowed by TensorRT) says more than "failed to build"
                raise calib.feed.error from exc
            raise
        finally:
            if calib is not None:
                calib.release()
        provenance = machine_provenance(trt)
    if calib is not None:
        calib.feed.finish()  # TensorRT swallowed a callback error, or stopped feeding early

    name = engine_filename(precision, gpu_name, cc, version, plan.dla_core)
    engine_path = bundle.path / name
    write_bytes_atomic(engine_path, engine_bytes)
    write_bytes_atomic(bundle.path / inspector_filename(name), info.encode())
    if timing:
        write_bytes_atomic(cache_path, timing)
    counts = layer_precisions_from_inspector(info)
    echo(f"{name}: {precision_summary(counts)}")
    options = plan.options()
    options.update(provenance)
    options["timing_cache"] = str(cache_path)
    if plan.calibrator is not None:
        options["calibration_source"] = calib_source
    record = make_record(precision=precision, path=name, sha256=sha256_file(engine_path),
                         trt_version=version_text(version), gpu_name=gpu_name, compute_capability=cc,
                         onnx_sha256=m.artifacts[plan.onnx_precision].sha256, build_options=options,
                         layer_precisions=counts)
    bundle.update(bundle.manifest.with_engine(record))
    return record


# Let the runtime rebuild a stale engine (provenance mismatch) without importing export/.
register_engine_builder(build_bundle_engine)
