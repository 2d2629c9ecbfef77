"""Pick the backend for a bundle: TensorRT when a compatible engine exists, else ONNX Runtime.

``auto`` picks TensorRT when ``tensorrt`` imports, a GPU is visible and the
bundle has an engine for the precision whose provenance matches this machine
(:func:`segrt.runtime.provenance.check_engine`). On a mismatch it rebuilds the
engine (TensorRT and the ONNX are here, every recorded build option kept) or
falls back to ONNX Runtime, and logs which and why; it also opens the TensorRT
backend before handing it over, so a failure at ``open()`` (a refused output,
an engine that does not deserialize, out of GPU memory, a CUDA error) falls back
too. It never crashes over TensorRT. ``tensorrt`` insists: it never falls back
and never rebuilds unless asked (``rebuild=True``); it raises
BackendUnavailableError with what to install, or EngineError with the reason.
"""
from __future__ import annotations

import importlib
import logging
import platform
from typing import Any, Callable, Mapping

from segrt.errors import BackendUnavailableError, ConfigError, EngineError, SegrtError
from segrt.runtime.backends.base import Backend
from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segrt.runtime.bundle import Bundle
from segrt.runtime.fsutil import sha256_file
from segrt.runtime.manifest import CPU_ONLY_PRECISIONS, EngineRecord
from segrt.runtime.provenance import FALLBACK, OK, REBUILD, Decision, MachineInfo, check_engine, engines_for
from segrt.runtime.trt_api import import_tensorrt, jetson_model

log = logging.getLogger("segrt.backend")
BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino")


def probe_machine(device: int = 0) -> tuple[MachineInfo, str]:
    """This machine for the TensorRT backend, and why TensorRT cannot run here ("" if it can)."""
    trt_version = None
    why = ""
    try:
        trt = import_tensorrt()
        trt_version = str(getattr(trt, "__version__", "")) or None
    except BackendUnavailableError as exc:
        why = str(exc)
    gpu_name, cc = None, None
    try:
        from segrt.runtime.cuda_pycuda import device_info  # noqa: PLC0415 - optional
        gpu_name, cc = device_info(device)
    except BackendUnavailableError as exc:
        why = why or str(exc)
        try:  # cuda-python can still name the GPU (then only PyCUDA is missing)
            from segrt.runtime.cuda_cudart import device_count, device_info as cudart_info  # noqa: PLC0415
            if device_count() > device:  # 0 without a driver, whatever the cuda-python version
                gpu_name, cc = cudart_info(device)
        except (BackendUnavailableError, EngineError):
            pass
    if trt_version is not None and gpu_name is None and not why:
        why = "no NVIDIA GPU is visible"
    jetson = jetson_model()
    dla_cores = 0 if not jetson else None
    if jetson and not why:
        from segrt.runtime.backends.tensorrt import dla_core_count  # noqa: PLC0415 - TensorRT lazily
        try:
            dla_cores = dla_core_count(trt)
        except Exception as exc:  # noqa: BLE001 - unknown core count: engines are not refused over it
            log.debug("cannot count DLA cores: %s", exc)
    return MachineInfo(trt_version, gpu_name, cc, cpu_arch=platform.machine(), jetson_model=jetson,
                       dla_cores=dla_cores), why


def decide_engine(bundle: Bundle, precision: str, machine: MachineInfo) -> tuple[EngineRecord | None, Decision]:
    """The best engine of ``precision`` in the bundle and what to do with it (plain, no GPU)."""
    onnx_precision_sha = {p: a.sha256 for p, a in bundle.manifest.artifacts.items()}
    candidates = engines_for(bundle.manifest.engines, precision, machine)
    if not candidates:
        can_build = machine.trt_version is not None and machine.gpu_name is not None
        return None, Decision(REBUILD if can_build else FALLBACK,
                              f"the bundle has no {precision} TensorRT engine")
    best, best_decision = None, None
    for rec in candidates:
        path = bundle.path / rec.path
        engine_sha = sha256_file(path) if path.is_file() else None
        onnx_prec = str((rec.build_options or {}).get("onnx") or precision)
        onnx_sha = None
        art = bundle.manifest.artifacts.get(onnx_prec)
        if art is not None and (bundle.path / art.path).is_file():
            onnx_sha = onnx_precision_sha[onnx_prec]
        d = check_engine(rec, machine, engine_sha256=engine_sha, onnx_sha256=onnx_sha)
        if d.action == OK:
            return rec, d
        if best is None:
            best, best_decision = rec, d
    return best, best_decision  # type: ignore[return-value]


# The engine builder lives in export/ (a layer above). The runtime never imports it at module
# level: engine_builder() looks it up by its module path when a rebuild is needed, whatever was
# imported before; register_engine_builder() lets a caller substitute its own.
ENGINE_BUILDER_MODULE = "segrt.export.engine_from_onnx"
_ENGINE_BUILDER: Callable[..., EngineRecord] | None = None


def register_engine_builder(builder: Callable[..., EngineRecord] | None) -> None:
    """Called by ``segrt.export.engine_from_onnx`` on import; ``None`` unregisters."""
    global _ENGINE_BUILDER
    _ENGINE_BUILDER = builder


def engine_builder() -> Callable[..., EngineRecord]:
    """The function that builds a bundle's engine, imported from ENGINE_BUILDER_MODULE on first use."""
    if _ENGINE_BUILDER is None:
        try:
            importlib.import_module(ENGINE_BUILDER_MODULE)  # registers build_bundle_engine
        except ImportError as exc:
            raise EngineError(f"cannot rebuild engines here: {ENGINE_BUILDER_MODULE} does not import ({exc})",
                              hint="install segrt with its export dependencies, or run segrt build") from exc
    if _ENGINE_BUILDER is None:
        raise EngineError(f"{ENGINE_BUILDER_MODULE} registered no engine builder")
    return _ENGINE_BUILDER


#: build_options keys that say where/what was built, not how: a rebuild needs no argument for them.
_RECORD_ONLY = frozenset({"onnx", "strongly_typed", "builder_flags", "cleared_builder_flags", "tf32", "parser_flags",
                          "profile", "device", "cpu_arch", "jetson_model", "dla_cores", "path"})
_HARDWARE_COMPAT_FLAG = {"NONE": "none", "AMPERE_PLUS": "ampere+", "SAME_COMPUTE_CAPABILITY": "same-cc"}


def rebuild_arguments(options: Mapping[str, Any]) -> dict[str, Any]:
    """``build_bundle_engine`` keyword arguments that rebuild an engine with its recorded options.

    Raises EngineError naming any recorded option it cannot carry over (then the
    engine must be rebuilt by hand), so a rebuild never silently drops one.
    """
    opts = dict(options or {})
    unknown = sorted(k for k in opts if k not in _RECORD_ONLY and k not in (
        "legacy", "calibrator", "calibration_source", "dla_core", "workspace_bytes", "opt_level",
        "version_compatible", "hardware_compat", "timing_cache"))
    if unknown:
        raise EngineError(f"cannot rebuild automatically: recorded build option(s) {unknown} are unknown here",
                          hint="rebuild by hand with segrt build and the same options")
    hw = str(opts.get("hardware_compat") or "NONE")
    if hw not in _HARDWARE_COMPAT_FLAG:
        raise EngineError(f"cannot rebuild automatically: unknown hardware compatibility {hw!r}",
                          hint="rebuild by hand with segrt build")
    legacy = opts.get("legacy")
    if legacy is None:  # records from before "legacy" was written: a calibrator or a weak GPU build
        legacy = opts.get("calibrator") is not None or (
            opts.get("path") == "legacy_calibrator" and opts.get("device") != "DLA")
    args: dict[str, Any] = {
        "legacy": bool(legacy),
        "dla_core": opts.get("dla_core"),
        "opt_level": opts.get("opt_level"),
        "version_compatible": bool(opts.get("version_compatible", False)),
        "hardware_compat": _HARDWARE_COMPAT_FLAG[hw],
        "timing_cache": opts.get("timing_cache"),
        "workspace_gib": (None if opts.get("workspace_bytes") is None
                          else int(opts["workspace_bytes"]) / float(1 << 30)),
    }
    if opts.get("calibrator") is not None:
        args["calibrator"] = str(opts["calibrator"])
        args["calib_source"] = opts.get("calibration_source")  # None: the calibration cache is reused
    return args


def _tensorrt_backend(bundle: Bundle, precision: str, *, device: int, cuda_graph: bool, rebuild: bool,
                      echo: Callable[[str], None]) -> Backend:
    from segrt.runtime.backends.tensorrt import TensorRTBackend  # noqa: PLC0415 - TensorRT lazily

    import_tensorrt()  # BackendUnavailableError with the install hint for this machine
    machine, why = probe_machine(device)
    if why:
        raise BackendUnavailableError(f"TensorRT backend unavailable: {why}")
    rec, decision = decide_engine(bundle, precision, machine)
    if decision.action == FALLBACK:
        raise EngineError(decision.reason, hint=f"build one here: segrt build {bundle.path} --precision {precision}")
    if decision.action == REBUILD:
        if not rebuild:
            raise EngineError(decision.reason, hint=f"rebuild: segrt build {bundle.path} --precision {precision}")
        kwargs = rebuild_arguments(rec.build_options) if rec is not None else {}
        build = engine_builder()
        echo(f"{decision.reason}: building it now (segrt build)")
        rec = build(bundle, precision=precision, device=device, echo=echo, **kwargs)
    elif decision.warning:
        echo(f"warning: {decision.warning}")
    if rec is None:
        raise EngineError(f"no {precision} engine in {bundle.path}", hint=f"segrt build {bundle.path}")
    opts = rec.build_options or {}
    host_code = bool(opts.get("version_compatible", False))
    dla_core = opts.get("dla_core")
    return TensorRTBackend(bundle.path / rec.path, device=device, cuda_graph=cuda_graph,
                           engine_host_code_allowed=host_code, dla_core=None if dla_core is None else int(dla_core))


def _opened(backend: Backend) -> Backend:
    """Open ``backend`` (auto hands TensorRT over opened, so an open() failure can still fall back)."""
    backend.open()
    return backend


def backend_for_bundle(bundle: Bundle, *, backend: str = "auto", precision: str = "fp32",
                       threads: int | None = None, device: int = 0, cuda_graph: bool = False,
                       rebuild: bool | None = None, echo: Callable[[str], None] | None = None,
                       prefer_cpu_int8: bool = True) -> Backend:
    """A backend for ``bundle`` at ``precision``; open it (or use ``with``: ``open()`` is idempotent).

    ``triton://HOST:PORT/MODEL`` sends frames to a Triton server (precision is the server's model).
    ``auto`` returns a TensorRT backend already opened (so that an ``open()`` failure
    falls back to ONNX Runtime here), any other backend unopened. ``rebuild`` (default:
    True for auto, False for tensorrt) lets a stale or missing engine be rebuilt. On a CPU
    backend ``int8`` runs ``int8-cpu`` when the bundle has it (``prefer_cpu_int8``; a
    benchmark that names artifacts exactly turns it off).
    """
    if precision == "auto":
        raise ConfigError("precision 'auto' must be resolved first",
                          hint="segrt.runtime.auto_precision.resolve_auto(bundle) picks it")
    say = echo or log.info
    if backend.startswith("triton://"):  # a remote server runs the model it serves
        from segrt.runtime.backends.triton import TritonBackend

        return TritonBackend(backend)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint="use one of: " + ", ".join(BACKENDS))
    if backend == "openvino":
        from segrt.runtime.backends.openvino import OpenVinoBackend  # noqa: PLC0415 - optional
        cpu_precision = cpu_artifact(bundle, precision, say) if prefer_cpu_int8 else precision
        art = bundle.artifact(cpu_precision)
        if art.details.get("format") == "qoperator":
            raise BackendUnavailableError(
                f"OpenVINO reads Q/DQ graphs, not ONNX Runtime's QOperator format; {art.path} was kept as QOperator "
                "because it ran faster here than the Q/DQ form on every CPU backend", hint="run it with --backend onnxruntime")
        out = bundle.manifest.for_precision(cpu_precision).output
        return OpenVinoBackend(bundle.onnx_path(cpu_precision), threads=threads,
                               channel_last=out.names if out.kind == "logits" else ())
    if backend == "tensorrt":
        return _tensorrt_backend(bundle, precision, device=device, cuda_graph=cuda_graph,
                                 rebuild=bool(rebuild), echo=say)
    if backend == "auto":
        machine, why = probe_machine(device)
        if why:
            log.debug("auto: ONNX Runtime (%s)", why)
        elif precision in CPU_ONLY_PRECISIONS:
            log.debug("auto: %s is a CPU artifact: ONNX Runtime", precision)
        elif any(e.precision == precision for e in bundle.manifest.engines):
            try:
                return _opened(_tensorrt_backend(bundle, precision, device=device, cuda_graph=cuda_graph,
                                                 rebuild=True if rebuild is None else rebuild, echo=say))
            except SegrtError as exc:  # the TensorRT backend closed what it opened
                say(f"TensorRT not used ({exc}): falling back to ONNX Runtime")
        else:
            say(f"no {precision} TensorRT engine in {bundle.path.name}: using ONNX Runtime "
                f"(build one with: segrt build {bundle.path} --precision {precision})")
    cpu_precision = cpu_artifact(bundle, precision, say) if prefer_cpu_int8 else precision
    return OnnxRuntimeBackend(bundle.onnx_path(cpu_precision), threads=threads)


def cpu_artifact(bundle: Bundle, precision: str, say: Callable[[str], None] = log.info) -> str:
    """The artifact a CPU backend runs for ``precision``: ``int8`` means the CPU INT8 graph
    (``int8-cpu``) when the bundle has one that passed its gate; the TensorRT-shaped graph
    (FP16 remainder) is several times slower on a CPU."""
    if precision != "int8":
        return precision
    art = bundle.manifest.artifacts.get("int8-cpu")
    if art is not None and art.accuracy and art.accuracy.get("passed"):
        say("int8 on the CPU: running int8-cpu (FP32 remainder), not the TensorRT-shaped int8 graph")
        return "int8-cpu"
    if "int8" in bundle.manifest.artifacts:
        say(f"int8 on the CPU runs the TensorRT-shaped graph (FP16 remainder, slow here); make the CPU one with: "
            f"segrt quantize {bundle.path} --precision int8 --target cpu")
    return precision
