"""Pick the backend for a bundle: TensorRT when a compatible engine exists, else ONNX Runtime.

``auto`` picks TensorRT when ``tensorrt`` imports, a GPU is visible and the
bundle has an engine for the precision whose provenance matches this machine
(:func:`segrt.runtime.provenance.check_engine`). On a mismatch it rebuilds the
engine (TensorRT and the ONNX are here) or falls back to ONNX Runtime, and logs
which and why; it never crashes over TensorRT. ``tensorrt`` insists: it raises
BackendUnavailableError with what to install, or EngineError.
"""
from __future__ import annotations

import logging
from typing import Callable

from segrt.errors import BackendUnavailableError, BundleError, ConfigError, EngineError
from segrt.runtime.backends.base import Backend
from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segrt.runtime.bundle import Bundle
from segrt.runtime.fsutil import sha256_file
from segrt.runtime.manifest import EngineRecord
from segrt.runtime.provenance import FALLBACK, OK, REBUILD, Decision, MachineInfo, check_engine, engines_for
from segrt.runtime.trt_api import import_tensorrt

log = logging.getLogger("segrt.backend")
BACKENDS = ("auto", "onnxruntime", "tensorrt")


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
            if device_count() > device:
                gpu_name, cc = cudart_info(device)
        except (BackendUnavailableError, EngineError):
            pass
    if trt_version is not None and gpu_name is None and not why:
        why = "no NVIDIA GPU is visible"
    return MachineInfo(trt_version, gpu_name, cc), why


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


# The engine builder lives in export/ (a layer above); it registers itself here on import
# so the runtime can rebuild a stale engine without importing the layer above it.
_ENGINE_BUILDER: Callable[..., EngineRecord] | None = None


def register_engine_builder(builder: Callable[..., EngineRecord] | None) -> None:
    """Called by ``segrt.export.engine_from_onnx`` on import; ``None`` unregisters."""
    global _ENGINE_BUILDER
    _ENGINE_BUILDER = builder


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
        echo(f"{decision.reason}: building it now (segrt build)")
        if _ENGINE_BUILDER is None:
            raise EngineError(decision.reason, hint=f"rebuild: segrt build {bundle.path} --precision {precision}")
        opts = dict(rec.build_options) if rec is not None else {}
        rec = _ENGINE_BUILDER(bundle, precision=precision, device=device, echo=echo,
                                  dla_core=opts.get("dla_core"),
                                  version_compatible=bool(opts.get("version_compatible", False)))
    elif decision.warning:
        echo(f"warning: {decision.warning}")
    if rec is None:
        raise EngineError(f"no {precision} engine in {bundle.path}", hint=f"segrt build {bundle.path}")
    host_code = bool((rec.build_options or {}).get("version_compatible", False))
    return TensorRTBackend(bundle.path / rec.path, device=device, cuda_graph=cuda_graph,
                           engine_host_code_allowed=host_code)


def backend_for_bundle(bundle: Bundle, *, backend: str = "auto", precision: str = "fp32",
                       threads: int | None = None, device: int = 0, cuda_graph: bool = False,
                       rebuild: bool = True, echo: Callable[[str], None] | None = None) -> Backend:
    """An unopened backend for ``bundle`` at ``precision``; open it (or use ``with``)."""
    say = echo or log.info
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint="use one of: " + ", ".join(BACKENDS))
    if backend == "tensorrt":
        return _tensorrt_backend(bundle, precision, device=device, cuda_graph=cuda_graph, rebuild=rebuild, echo=say)
    if backend == "auto":
        machine, why = probe_machine(device)
        if why:
            log.debug("auto: ONNX Runtime (%s)", why)
        elif any(e.precision == precision for e in bundle.manifest.engines):
            try:
                return _tensorrt_backend(bundle, precision, device=device, cuda_graph=cuda_graph,
                                         rebuild=rebuild, echo=say)
            except (BackendUnavailableError, EngineError, BundleError) as exc:
                say(f"TensorRT not used ({exc}): falling back to ONNX Runtime")
        else:
            say(f"no {precision} TensorRT engine in {bundle.path.name}: using ONNX Runtime "
                f"(build one with: segrt build {bundle.path} --precision {precision})")
    return OnnxRuntimeBackend(bundle.onnx_path(precision), threads=threads)
