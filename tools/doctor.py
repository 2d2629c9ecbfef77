"""``segrt doctor``: what this machine can run, and a self-test of every backend present.

:func:`machine_report` collects facts (GPU and driver, TensorRT, the CUDA bindings,
ONNX Runtime providers, OpenCV's GStreamer support, cameras, Jetson model and power
mode) without importing torch. :func:`selftest` runs what this machine can:

* always: a tiny segmentation ONNX made with the onnx helper API (no torch) run by
  ONNX Runtime and compared pixel for pixel with its numpy reference;
* FP16 / INT8 through ONNX Runtime when the calibration modules are present;
* a short synthetic stream through :mod:`segrt.runtime.pipeline` when it exists;
* with TensorRT and a GPU: an engine per precision, the same reference check, and a stream.

Every check reports pass / fail / skip with a reason; nothing here raises for a
missing optional component.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segrt.runtime.trt_api import jetson_model, l4t_release, tensorrt_install_hint
from segrt.tools.doctor_opencv import gstreamer_support, opencv_report  # noqa: F401 - gstreamer_support re-exported

PASS, FAIL, SKIP = "pass", "fail", "skip"
SIZE = (32, 48)  # the tiny model's H, W: the self-test stays well under a second per check on a CPU


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


# -- facts ---------------------------------------------------------------------------
def cameras(pattern: str = "/dev/video*") -> list[str]:
    return sorted(glob.glob(pattern))


def _module_version(name: str) -> tuple[str | None, str]:
    """(version, "") when ``name`` imports, else (None, reason)."""
    if importlib.util.find_spec(name.split(".")[0]) is None:
        return None, "not installed"
    try:
        mod = __import__(name, fromlist=["_"])
    except Exception as exc:  # a broken optional install must not stop the doctor
        return None, f"installed but not importable: {type(exc).__name__}: {exc}"
    return str(getattr(mod, "__version__", "") or "unknown"), ""


def machine_report() -> dict[str, Any]:
    """Facts about this machine (JSON-ready)."""
    from segrt.tools import envinfo

    jetson = jetson_model()
    rep: dict[str, Any] = {"gpus": envinfo.gpu_info(), "jetson": None}
    if jetson:
        info = envinfo.jetson_info() or {}
        rep["jetson"] = {"model": jetson, "l4t": l4t_release(), "power_mode": info.get("power_mode")}

    v, why = _module_version("tensorrt")
    rep["tensorrt"] = {"version": v, "status": "ok" if v else why,
                       "hint": "" if v else tensorrt_install_hint(jetson)}
    v, why = _module_version("pycuda")
    pycuda = {"version": envinfo.dist_version("pycuda") or v, "status": "ok" if v else why}
    if v:
        try:
            from segrt.runtime import cuda_pycuda
            pycuda["devices"] = cuda_pycuda.device_count()
        except Exception as exc:  # driver missing: report, do not fail
            pycuda["devices"] = 0
            pycuda["status"] = f"imports, but CUDA is unusable: {exc}"
    cp: dict[str, Any] = {"version": envinfo.dist_version("cuda-bindings", "cuda-python")}
    try:
        from segrt.runtime import cuda_cudart
        cp["devices"] = cuda_cudart.device_count()
        cp["status"] = "ok"
    except Exception as exc:
        cp["status"] = f"unavailable: {exc}"
    rep["cuda_bindings"] = {"pycuda": pycuda, "cuda_python": cp}

    try:
        import onnxruntime as ort
        rep["onnxruntime"] = {"version": ort.__version__, "providers": list(ort.get_available_providers())}
    except ImportError:
        rep["onnxruntime"] = {"version": None, "providers": []}
    rep["opencv"] = opencv_report()
    rep["cameras"] = cameras()
    return rep


# -- self-test ---------------------------------------------------------------------------
def _timed(name: str, fn: Callable[[], tuple[str, str] | tuple[str, str, dict]]) -> Check:
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # the doctor reports every failure as a line, never a traceback
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return Check(name, FAIL, f"{type(exc).__name__}: {exc} ({Path(tb.filename).name}:{tb.lineno})",
                     time.perf_counter() - t0)
    status, detail, *rest = out
    return Check(name, status, detail, time.perf_counter() - t0, rest[0] if rest else {})


def _frames(seed: int = 0) -> list[np.ndarray]:
    h, w = SIZE
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    grad = np.stack([xx * 255 // w, yy * 255 // h, 255 - xx * 255 // w], -1).astype(np.uint8)[None]
    return [rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8), grad, np.zeros((1, h, w, 3), np.uint8)]


def mask_agreement(backend, frames: list[np.ndarray]) -> float:
    """Fraction of pixels whose class equals the tiny model's numpy reference (an exact logit tie
    counts either way: TensorRT's TopK does not document which class it picks)."""
    from segrt.tools.tiny_model import mask_agreement_with_ties

    with backend:
        return float(np.mean([mask_agreement_with_ties(backend.infer(f)["mask"], f) for f in frames]))


def _fp16_onnx(bundle) -> tuple[str, str]:
    if importlib.util.find_spec("segrt.calibration.fp16") is None:
        return SKIP, "segrt.calibration.fp16 is not in this build"
    import onnx

    from segrt.calibration.fp16 import fp16_onnx_from_fp32

    model = fp16_onnx_from_fp32(onnx.load(os.fspath(bundle.onnx_path("fp32"))))
    art = bundle.save_onnx("fp16", model, details={"made_by": "segrt doctor"})
    return PASS, f"made {art.path}"


def _int8_onnx(bundle, frames: list[np.ndarray]) -> tuple[str, str]:
    """INT8 Q/DQ of the tiny model with the project's calibration (ranges on ONNX Runtime, then Q/DQ)."""
    missing = [m for m in ("segrt.calibration.collect", "segrt.calibration.qdq") if importlib.util.find_spec(m) is None]
    if missing:
        return SKIP, f"{', '.join(missing)} not in this build"
    from segrt.calibration.qdq import precomputed_ranges_unsupported

    why = precomputed_ranges_unsupported()
    if why:
        return SKIP, why
    import onnx

    from segrt.calibration.collect import calibrate_ranges, tensors_to_calibrate
    from segrt.calibration.qdq import DEFAULT_QUANT_OPS, int8_onnx_from_fp32, prepare_fp32

    fp32, _ = prepare_fp32(onnx.load(os.fspath(bundle.onnx_path("fp32"))))
    name = bundle.manifest.input.name
    ranges = calibrate_ranges(fp32, ({name: f} for f in frames), tensors_to_calibrate(fp32, DEFAULT_QUANT_OPS))
    model = int8_onnx_from_fp32(fp32, ranges, remainder="fp32")
    art = bundle.save_onnx("int8", model, details={"made_by": "segrt doctor", "calibration_frames": len(frames)})
    qdq = sum(1 for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    return PASS, f"made {art.path} ({qdq} Q/DQ nodes, {len(frames)} calibration frames)"


def selftest(workdir: str | os.PathLike[str] | None = None, *, echo: Callable[[str], None] | None = None,
             stream_frames: int = 8) -> list[Check]:
    """Run every check this machine can; skipped ones say why."""
    from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from segrt.tools.tiny_model import tiny_bundle

    checks: list[Check] = []

    def add(c: Check) -> None:
        checks.append(c)
        if echo:
            echo(format_check(c))

    tmp = tempfile.TemporaryDirectory(prefix="segrt-doctor-") if workdir is None else None
    root = Path(workdir) if workdir is not None else Path(tmp.name)  # type: ignore[union-attr]
    try:
        h, w = SIZE
        bundle = tiny_bundle(root / "tiny", h, w, fused=True)
        frames = _frames()
        add(Check("tiny model", PASS, f"onnx helper graph, {h}x{w}, fused uint8 in / mask out (no torch)"))

        def ort_check(precision: str):
            def run():
                agree = mask_agreement(OnnxRuntimeBackend(bundle.onnx_path(precision), threads=1), frames)
                need = 1.0 if precision == "fp32" else 0.98
                return (PASS if agree >= need else FAIL), f"{agree:.2%} pixels match the reference (need {need:.0%})"
            return run

        add(_timed("onnxruntime fp32", ort_check("fp32")))
        made = _timed("fp16 cast (calibration.fp16)", lambda: _fp16_onnx(bundle))
        add(made)
        if "fp16" in bundle.manifest.artifacts:
            add(_timed("onnxruntime fp16", ort_check("fp16")))
        else:
            add(Check("onnxruntime fp16", SKIP, made.detail or "no fp16 model"))
        # calibrate on other frames than those checked against the reference
        calib = [np.ascontiguousarray(f[:, ::-1]) for f in frames] + _frames(seed=11)[:1]
        made = _timed("int8 Q/DQ (calibration.qdq)", lambda: _int8_onnx(bundle, calib))
        add(made)
        if "int8" in bundle.manifest.artifacts:
            add(_timed("onnxruntime int8", ort_check("int8")))
        else:
            add(Check("onnxruntime int8", SKIP, made.detail or "no int8 model"))
        add(_timed("stream (pipeline, onnxruntime)", lambda: _stream(bundle, "onnxruntime", stream_frames)))
        for c in _tensorrt_checks(bundle, frames, stream_frames):
            add(c)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return checks


def _stream(bundle, backend: str, frames: int) -> tuple[str, str, dict]:
    if importlib.util.find_spec("segrt.runtime.pipeline") is None:
        return SKIP, "segrt.runtime.pipeline is not in this build", {}
    from segrt.runtime.pipeline import Pipeline

    h, w = SIZE
    src = f"synthetic://?size={w * 4}x{h * 4}&frames={frames}&seed=1"
    summary = Pipeline(bundle, src, None, backend=backend, max_frames=frames, threads=1).run()
    ok = summary.frames == frames and summary.corrupt == 0
    return (PASS if ok else FAIL), f"{summary.frames}/{frames} frames, {summary.fps:.1f} fps", summary.to_dict()


def _tensorrt_checks(bundle, frames: list[np.ndarray], stream_frames: int) -> list[Check]:
    from segrt.errors import SegrtError
    from segrt.runtime.backends.select import probe_machine

    machine, why = probe_machine()
    if why:
        return [Check("tensorrt", SKIP, why)]
    out = []
    from segrt.export.engine_from_onnx import build_bundle_engine
    from segrt.runtime.backends.tensorrt import TensorRTBackend

    for precision in ("fp32", "fp16", "int8"):
        if precision not in bundle.manifest.artifacts:
            out.append(Check(f"tensorrt {precision}", SKIP, f"no {precision} ONNX in the self-test bundle"))
            continue

        def run(p=precision):
            try:
                rec = build_bundle_engine(bundle, precision=p, echo=lambda s: None)
            except SegrtError as exc:
                return FAIL, f"build: {exc}"
            agree = mask_agreement(TensorRTBackend(bundle.path / rec.path), frames)
            need = 1.0 if p == "fp32" else 0.98
            return (PASS if agree >= need else FAIL), (f"{agree:.2%} pixels match; layers "
                                                       f"{dict(rec.layer_precisions)}")
        out.append(_timed(f"tensorrt {precision}", run))
    out.append(_timed("stream (pipeline, tensorrt)", lambda: _stream(bundle, "tensorrt", stream_frames)))
    return out


# -- output ------------------------------------------------------------------------------
def format_check(c: Check) -> str:
    mark = {PASS: "PASS", FAIL: "FAIL", SKIP: "skip"}[c.status]
    return f"  [{mark}] {c.name:<32} {c.detail}" + (f"  ({c.seconds * 1e3:.0f} ms)" if c.seconds else "")


def format_report(rep: dict[str, Any]) -> str:
    lines = []
    gpus = rep.get("gpus") or []
    lines.append("GPU        " + ("; ".join(f"{g['name']} (driver {g.get('driver')}, SM {g.get('compute_capability')})"
                                           for g in gpus) if gpus else "none (nvidia-smi absent or no GPU)"))
    j = rep.get("jetson")
    if j:
        lines.append(f"Jetson     {j['model']}  L4T {j.get('l4t')}  power mode: {j.get('power_mode') or '?'}")
    t = rep["tensorrt"]
    lines.append("TensorRT   " + (t["version"] or f"{t['status']} -> {t['hint']}"))
    cb = rep["cuda_bindings"]
    lines.append(f"PyCUDA     {cb['pycuda'].get('version') or '-'} ({cb['pycuda']['status']})")
    lines.append(f"cuda-python {cb['cuda_python'].get('version') or '-'} ({cb['cuda_python']['status']}, "
                 f"{cb['cuda_python'].get('devices', 0)} device(s))")
    o = rep["onnxruntime"]
    lines.append(f"ONNX Runtime {o['version']}  providers: {', '.join(o['providers'])}")
    cv = rep["opencv"]
    gst = {True: "yes", False: "no (CSI cameras need JetPack's OpenCV)", None: "unknown"}[cv["gstreamer"]]
    lines.append(f"OpenCV     {cv['version'] or cv.get('error')}  GStreamer: {gst}  ({cv.get('path') or '-'})")
    match = {True: "matches", False: "MISMATCH", None: "unknown"}[cv.get("numpy_match")]
    lines.append(f"numpy      {cv.get('numpy_installed')}  cv2's numpy: {match} ({cv.get('numpy_note')})")
    lines.append("cameras    " + (", ".join(rep["cameras"]) or "none"))
    return "\n".join(lines)


def doctor(selftest_too: bool = False, *, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The report the CLI prints (and ``--json`` dumps)."""
    rep = {"machine": machine_report()}
    if selftest_too:
        rep["selftest"] = [asdict(c) for c in selftest(echo=echo)]
    return rep
