"""TensorRT steps: each drives the project's own build, backend, pipeline and bench on the tiny bundle.

These need TensorRT, PyCUDA and a GPU; the registry skips them with the reason elsewhere.
None of them has run on a GPU while they were written: they are thin on purpose, so a
failure points at the library function it called.
"""
from __future__ import annotations

import shutil
import threading

import numpy as np

from segrt.errors import EngineError
from segrt.tools.doctor import FAIL, PASS, SKIP, _frames, mask_agreement

PRECISIONS = ("fp32", "fp16", "int8")
STREAM_FRAMES = 30


def _need(p: str) -> float:
    return 1.0 if p == "fp32" else 0.98


def _engine(ctx, precision: str):
    """The tiny bundle's engine at ``precision``, built once per run (EngineRecord)."""
    from segrt.export.engine_from_onnx import build_bundle_engine

    cache = ctx.__dict__.setdefault("_engines", {})
    if precision not in cache:
        cache[precision] = build_bundle_engine(ctx.tiny_bundle(), precision=precision, echo=lambda s: None)
    return cache[precision]


def build_and_stream(ctx) -> tuple[str, str, dict]:
    """fp32/fp16/int8 engines, each checked against the reference and streamed, without and with a CUDA graph."""
    from segrt.runtime.backends.tensorrt import TensorRTBackend
    from segrt.runtime.pipeline import Pipeline

    bundle = ctx.tiny_bundle()
    frames = _frames() * 2  # >= 3 frames: warm-up, capture, then replays when cuda_graph is on
    h, w = bundle.manifest.input.height, bundle.manifest.input.width
    cells, bad = {}, []
    for p in PRECISIONS:
        if p not in bundle.manifest.artifacts:
            cells[p] = {"status": SKIP, "why": f"no {p} ONNX (onnxruntime cannot make it here)"}
            continue
        rec = _engine(ctx, p)
        for graph in (False, True):
            key = f"{p}{'+graph' if graph else ''}"
            agree = mask_agreement(TensorRTBackend(bundle.path / rec.path, cuda_graph=graph), frames)
            src = f"synthetic://?size={w * 4}x{h * 4}&frames={STREAM_FRAMES}&seed=3"
            summary = Pipeline(bundle, src, None, backend=TensorRTBackend(bundle.path / rec.path, cuda_graph=graph),
                               max_frames=STREAM_FRAMES, threads=1).run()
            ok = agree >= _need(p) and summary.frames == STREAM_FRAMES and summary.corrupt == 0
            cells[key] = {"agreement": agree, "frames": summary.frames, "fps": summary.fps, "ok": ok,
                          "layers": dict(rec.layer_precisions)}
            if not ok:
                bad.append(key)
    ran = [k for k, c in cells.items() if "ok" in c]
    detail = f"{len(ran) - len(bad)}/{len(ran)} engine x graph cells agree and stream" + (f"; FAILED {bad}" if bad else "")
    return (FAIL if bad or not ran else PASS), detail, {"cells": cells}


def three_threads(ctx) -> tuple[str, str, dict]:
    """One TensorRTBackend opened on thread A, run on thread B, closed on thread C."""
    from segrt.runtime.backends.tensorrt import TensorRTBackend

    rec = _engine(ctx, "fp32")
    backend = TensorRTBackend(ctx.tiny_bundle().path / rec.path)
    frames = _frames()
    out: dict = {}

    def step(name: str, fn) -> None:
        def run() -> None:
            try:
                out[name] = fn()
            except Exception as exc:  # reported below, with the thread it happened on
                out[name] = f"{type(exc).__name__}: {exc}"
        t = threading.Thread(target=run, name=f"acceptance-{name}")
        t.start()
        t.join(timeout=120)

    from segrt.tools.tiny_model import reference_mask

    def open_() -> str:
        backend.open()  # returns the backend itself
        return "ok"

    def close_() -> str:
        backend.close()
        return "ok"

    step("open", open_)
    step("infer", lambda: all(np.array_equal(np.asarray(backend.infer(f)["mask"]), reference_mask(f)) for f in frames))
    step("close", close_)
    ok = out.get("open") == "ok" and out.get("infer") is True and out.get("close") == "ok"
    return (PASS if ok else FAIL), f"open / infer / close on three threads: {out}", out


def corrupted_engine(ctx) -> tuple[str, str, dict]:
    """A damaged plan in a copy of the bundle: --backend auto must rebuild it or fall back, and still be right."""
    from segrt.runtime.backends.select import backend_for_bundle
    from segrt.runtime.bundle import Bundle

    rec = _engine(ctx, "fp32")
    copy = ctx.workdir / "corrupted"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(ctx.tiny_bundle().path, copy)
    plan = copy / rec.path
    data = bytearray(plan.read_bytes())
    data[len(data) // 2: len(data) // 2 + 256] = bytes(256)  # zero 256 bytes in the middle
    plan.write_bytes(bytes(data))
    said: list[str] = []
    backend = backend_for_bundle(Bundle.open(copy), backend="auto", precision="fp32", echo=said.append)
    agree = mask_agreement(backend, _frames())
    rebuilt = plan.read_bytes() != bytes(data)
    how = "rebuilt" if rebuilt else ("fell back to " + backend.name)
    ok = agree == 1.0 and (rebuilt or backend.name == "onnxruntime") and bool(said)
    return (PASS if ok else FAIL), f"{how}; {agree:.2%} pixels match; said: {' | '.join(said)[:200]}", \
        {"rebuilt": rebuilt, "backend": backend.name, "messages": said, "agreement": agree}


def bench_stages(ctx) -> tuple[str, str, dict]:
    """segrt bench on the tiny bundle: TensorRT rows report H2D, compute and D2H."""
    from segrt.tools.bench import bench_bundles

    for p in PRECISIONS:
        if p in ctx.tiny_bundle().manifest.artifacts:
            _engine(ctx, p)
    res = bench_bundles([ctx.tiny_bundle().path], precisions=[p for p in PRECISIONS if p in ctx.tiny_bundle().manifest.artifacts],
                        backends=("tensorrt",), iters=50, warmup=5, e2e=False, max_time_s=5.0, progress=False)
    rows = [r.to_dict() for r in res.rows]
    bad = [f"{r['precision']}: {r['status']} {r['reason']}" for r in rows
           if r["status"] != "ok" or not all(r["stages"].get(s, {}).get("p50", 0) > 0 for s in ("h2d", "compute", "d2h"))]
    shown = "; ".join(f"{r['precision']} h2d/compute/d2h p50 " + "/".join(
        f"{r['stages'].get(s, {}).get('p50', 0):.3f}" for s in ("h2d", "compute", "d2h")) + " ms" for r in rows)
    return (FAIL if bad or not rows else PASS), (f"FAILED {bad}" if bad else shown), {"rows": rows}


def legacy_calibrator(ctx) -> tuple[str, str, dict]:
    """TensorRT 10.x: the legacy entropy calibrator builds INT8 and writes a cache whose header matches."""
    from segrt.calibration.trt_legacy import usable_cache
    from segrt.export.engine_from_onnx import build_bundle_engine
    from segrt.runtime.trt_api import import_tensorrt, tensorrt_version

    trt = import_tensorrt()
    if tensorrt_version(trt)[0] != 10:
        return SKIP, f"TensorRT {trt.__version__} has no calibrators (legacy INT8 is 10.x only)", {}
    bundle = ctx.tiny_bundle()
    h, w = bundle.manifest.input.height, bundle.manifest.input.width
    rec = build_bundle_engine(bundle, precision="int8", legacy=True, calibrator="entropy",
                              calib_source=f"synthetic://?size={w * 4}x{h * 4}&frames=16&seed=5", calib_frames=16,
                              echo=lambda s: None)
    caches = sorted(bundle.path.glob("calib.entropy.*.trtcache"))
    if not caches:
        return FAIL, "no calib.entropy.*.trtcache written", {"engine": rec.path}
    header = caches[-1].read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    ok = usable_cache(caches[-1].read_bytes(), "entropy", str(trt.__version__))
    return (PASS if ok else FAIL), f"{rec.path}; cache header {header!r} {'matches' if ok else 'does NOT match'} " \
                                   f"TensorRT {trt.__version__}", {"engine": rec.path, "header": header}


def dla_build(ctx) -> tuple[str, str, dict]:
    """On a Jetson with DLA: an FP16 DLA engine of the tiny bundle, checked against the reference."""
    from segrt.export.engine_from_onnx import build_bundle_engine
    from segrt.runtime.backends.tensorrt import TensorRTBackend
    from segrt.runtime.trt_api import jetson_model

    if not jetson_model():
        return SKIP, "not a Jetson (DLA exists on Orin modules only)", {}
    try:
        rec = build_bundle_engine(ctx.tiny_bundle(), precision="fp16", dla_core=0, echo=lambda s: None)
    except EngineError as exc:
        if "DLA core" in str(exc):
            return SKIP, f"no DLA here: {exc}", {}
        raise
    agree = mask_agreement(TensorRTBackend(ctx.tiny_bundle().path / rec.path), _frames())
    return (PASS if agree >= 0.98 else FAIL), f"{rec.path}: {agree:.2%} pixels match", {"engine": rec.path}
