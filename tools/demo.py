"""``segrt demo``: the whole toolchain on the embedded default, in a few minutes, no GPU or camera.

Steps: export the shipped demo model into a bundle; make FP16 and INT8 versions, each
behind its accuracy gate; build a TensorRT engine when TensorRT and a GPU are present;
stream a 1080p synthetic scene (or the user's ``--source``) through the real pipeline
into an overlay video; benchmark FP32/FP16/INT8 with accuracy beside speed.

Idempotent: a second run reuses every artifact whose checksum and recorded inputs
still match, and redoes the rest. Every artifact is written atomically by the step
that makes it, so an interrupted run leaves nothing a later run would trust.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from segrt.errors import BundleError, ManifestError
from segrt.runtime.bundle import Bundle
from segrt.runtime.fsutil import ensure_writable_dir, sha256_file, write_json_atomic
from segrt.runtime.redact import redact

log = logging.getLogger("segrt.demo")

DEFAULT_MODEL = "demo_unet"
# Streamed as a live camera (paced at 30 fps, the newest frame wins), so the latency the demo prints
# and draws is the one a camera user would see, not time queued behind the model. The camera runs
# until the demo has processed its --frames (frames it was too slow for are dropped, as a camera's are).
DEFAULT_SOURCE = "synthetic://?size=1920x1080&fps=30&frames=1000000&seed=101&live=1"
CALIB_SOURCE = "synthetic://?size=1920x1080&frames=400&seed=11"
EVAL_SOURCE = "synthetic://?size=1920x1080&frames=40&seed=202"


@dataclass
class StepResult:
    name: str
    status: str  # "done", "reused", "skipped", "failed"
    seconds: float
    detail: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class DemoReport:
    out_dir: Path
    steps: list[StepResult] = field(default_factory=list)
    wall_s: float = 0.0
    bench_table: str = ""

    def to_text(self) -> str:
        lines = [f"segrt demo: {self.wall_s:.0f} s in all, outputs in {self.out_dir}"]
        width = max(len(s.name) for s in self.steps) if self.steps else 8
        for s in self.steps:
            lines.append(f"  {s.name:<{width}}  {s.status:<8} {s.seconds:6.1f} s  {s.detail}")
        outs = [(k, v) for s in self.steps for k, v in s.outputs.items()]
        if outs:
            lines.append("outputs:")
            kw = max(len(k) for k, _ in outs)
            lines += [f"  {k:<{kw}}  {v}" for k, v in outs]
        return "\n".join(lines)


def _step(report: DemoReport, name: str, fn: Callable[[], StepResult], echo: Callable[[str], None]) -> StepResult:
    echo(f"[{len(report.steps) + 1}] {name} ...")
    t0 = time.perf_counter()
    result = fn()
    result.seconds = time.perf_counter() - t0
    report.steps.append(result)
    echo(f"    {result.status}: {result.detail} ({result.seconds:.1f} s)")
    return result


def _valid_bundle(path: Path, model: str) -> Bundle | None:
    """The existing bundle if its FP32 model is intact and was made from ``model``."""
    try:
        bundle = Bundle.open(path)
        bundle.onnx_path("fp32", verify=True)
    except (BundleError, ManifestError):
        return None
    if bundle.manifest.source.get("model") != model:
        return None
    weights = bundle.manifest.source.get("weights")
    if isinstance(weights, dict) and weights.get("path") and weights.get("sha256"):
        wp = Path(weights["path"])
        if not wp.is_file() or sha256_file(wp) != weights["sha256"]:
            return None
    return bundle


def _valid_precision(bundle: Bundle, precision: str) -> bool:
    art = bundle.manifest.artifacts.get(precision)
    if art is None or not art.accuracy or not art.accuracy.get("passed", False):
        return False
    try:
        bundle.onnx_path(precision, verify=True)
    except BundleError:
        return False
    # the quantized file must descend from the current FP32 file
    return art.details.get("fp32_sha256") in (None, bundle.manifest.artifacts["fp32"].sha256)


def run_demo(out_dir: str | Path = "segrt-demo", *, model: str = DEFAULT_MODEL, source: str | None = None,
             frames: int = 150, precisions: Sequence[str] = ("fp16", "int8"), threads: int | None = None,
             bench_iters: int = 20, calib_frames: int = 100, eval_frames: int = 24, force: bool = False,
             echo: Callable[[str], None] = print) -> DemoReport:
    """Run the demo into ``out_dir`` and return what each step did."""
    out = ensure_writable_dir(out_dir)
    if source is not None:
        _check_source(source)  # a missing camera fails now, not after minutes of export
    report = DemoReport(out_dir=out)
    t_start = time.perf_counter()
    bundle_dir = out / "bundles" / model.replace(":", "_").replace("/", "_")
    stream_source = source or DEFAULT_SOURCE
    user_source = source is not None
    state: dict[str, object] = {}

    def export_step() -> StepResult:
        from segrt.export.api import export_bundle
        existing = None if force else _valid_bundle(bundle_dir, model)
        if existing is not None:
            state["bundle"] = existing
            return StepResult("export", "reused", 0, f"{model} (checksums match)",
                              {"bundle": str(bundle_dir)})
        bundle = export_bundle(model, bundle_dir)
        state["bundle"] = bundle
        ver = bundle.manifest.export.get("verification", {})
        detail = f"{model} -> ONNX, verified vs PyTorch"
        if isinstance(ver, dict) and "max_abs_diff" in ver:
            detail += f" (max |diff| {ver['max_abs_diff']:.2g}, mask agreement {100 * ver.get('mask_agreement', 1):.3f}%)"
        return StepResult("export", "done", 0, detail, {"bundle": str(bundle_dir)})

    def quantize_step(precision: str) -> Callable[[], StepResult]:
        def step() -> StepResult:
            from segrt.calibration.api import quantize_bundle
            from segrt.errors import AccuracyGateError
            bundle: Bundle = state["bundle"]  # type: ignore[assignment]
            cpu_too = precision == "int8"  # the CPU INT8 graph comes from the same calibration
            if not force and _valid_precision(bundle, precision) and (not cpu_too or _valid_precision(bundle, "int8-cpu")):
                acc = bundle.manifest.artifacts[precision].accuracy or {}
                outputs = {f"{precision} model": str(bundle.onnx_path(precision))}
                if cpu_too:
                    outputs["int8-cpu model"] = str(bundle.onnx_path("int8-cpu"))
                    acc_cpu = bundle.manifest.artifacts["int8-cpu"].accuracy or {}
                    return StepResult(f"quantize {precision}", "reused", 0,
                                      _accuracy_text(acc) + "; int8-cpu " + _accuracy_text(acc_cpu), outputs)
                return StepResult(f"quantize {precision}", "reused", 0, _accuracy_text(acc), outputs)
            if precision == "int8":
                from segrt.calibration.qdq import precomputed_ranges_unsupported
                why = precomputed_ranges_unsupported()  # onnxruntime < 1.30 (Python 3.10 tops out at 1.23)
                if why:
                    return StepResult(f"quantize {precision}", "skipped", 0, why)
            calib = source if user_source else CALIB_SOURCE
            eval_src = None if user_source else EVAL_SOURCE
            try:
                rep = quantize_bundle(bundle, precision, calib=calib if precision == "int8" else None,
                                      eval_source=eval_src if eval_src else (calib if precision == "fp16" else None),
                                      calib_frames=calib_frames, eval_frames=eval_frames, progress=False)
            except AccuracyGateError as err:
                # A model that does not survive this precision (the MediaPipe selfie segmenter at INT8)
                # still gets streamed and benchmarked at the precisions that passed.
                return StepResult(f"quantize {precision}", "failed", 0,
                                  f"{err.message}; the demo goes on without {precision}")
            state["bundle"] = Bundle.open(bundle.path)
            fresh: Bundle = state["bundle"]  # type: ignore[assignment]
            acc = fresh.manifest.artifacts[precision].accuracy or {}
            detail = _accuracy_text(acc)
            outputs = {f"{precision} model": str(fresh.onnx_path(precision))}
            if precision == "int8" and "int8-cpu" in fresh.manifest.artifacts:
                detail += "; int8-cpu " + _accuracy_text(fresh.manifest.artifacts["int8-cpu"].accuracy or {})
                outputs["int8-cpu model"] = str(fresh.onnx_path("int8-cpu"))
            elif precision == "int8" and rep.cpu is not None:
                detail += "; int8-cpu below its gate, not kept"
            return StepResult(f"quantize {precision}", "done", 0, detail, outputs)
        return step

    def engine_step() -> StepResult:
        reason = _tensorrt_skip_reason()
        if reason:
            return StepResult("tensorrt engine", "skipped", 0, reason)
        from segrt.export.engine_from_onnx import build_bundle_engine  # pragma: no cover - GPU only
        bundle: Bundle = state["bundle"]  # type: ignore[assignment]
        rec = build_bundle_engine(bundle, precision="int8" if "int8" in precisions else "fp16")
        return StepResult("tensorrt engine", "done", 0, f"{rec.path} ({rec.trt_version}, {rec.gpu_name})",
                          {"engine": str(bundle.path / rec.path)})

    def stream_step() -> StepResult:
        from segrt.runtime.pipeline import Pipeline
        bundle: Bundle = Bundle.open(bundle_dir)
        video = out / "overlay.mp4"
        summary = Pipeline(bundle, stream_source, str(video), view="overlay", legend=True, shares=True,
                           precision="auto", max_frames=frames, threads=threads,
                           overwrite=True).run()  # the demo's own output
        state["summary"] = summary
        e2e = summary.stages.get("e2e")
        choice = summary.backend.get("precision", "?")
        what = "camera latency" if summary.live else "end-to-end (incl. queueing)"
        detail = (f"{summary.frames} frames of {redact(stream_source)} at {summary.fps:.1f} FPS ({choice}, chosen by "
                  "--precision auto)"
                  + (f", {what} p50 {e2e.p50:.0f} ms" if e2e and e2e.count else ""))
        return StepResult("stream", "done", 0, detail, {"overlay video": str(video)})

    def bench_step() -> StepResult:
        from segrt.tools.bench import bench_bundles
        from segrt.tools.bench.files import write_all
        from segrt.tools.bench.table import format_table
        bundle: Bundle = Bundle.open(bundle_dir)
        arts = bundle.manifest.artifacts
        # On a CPU, int8 means the CPU INT8 graph; the TensorRT-shaped one is listed only where
        # TensorRT could run it (or when there is no CPU graph).
        wanted = ["fp32", *precisions] + (["int8-cpu"] if "int8" in precisions else [])
        if "int8-cpu" in arts and _tensorrt_skip_reason():
            wanted = [p for p in wanted if p != "int8"]
        have = [p for p in dict.fromkeys(wanted) if p in arts]
        result = bench_bundles([bundle.path], precisions=have, backends=("onnxruntime", "tensorrt"),
                               iters=bench_iters, warmup=3, threads=threads, e2e=False,
                               max_time_s=3.0, progress=False)
        paths = write_all(result, out / "bench")
        report.bench_table = format_table(result)
        echo(report.bench_table)
        outputs = {"bench json": str(paths["json"]), "bench csv": str(paths["csv"])}
        if "png" in paths:
            outputs["bench chart"] = str(paths["png"])
        detail = f"{len(have)} precisions on ONNX Runtime" + ("" if "png" in paths else " (no chart: matplotlib missing)")
        return StepResult("benchmark", "done", 0, detail, outputs)

    _step(report, "export", export_step, echo)
    for p in precisions:
        _step(report, f"quantize {p}", quantize_step(p), echo)
    _step(report, "tensorrt engine", engine_step, echo)
    _step(report, "stream", stream_step, echo)
    _step(report, "benchmark", bench_step, echo)
    report.wall_s = time.perf_counter() - t_start
    write_json_atomic(out / "demo-summary.json", {
        "wall_s": report.wall_s,
        "steps": [{"name": s.name, "status": s.status, "seconds": s.seconds, "detail": s.detail,
                   "outputs": s.outputs} for s in report.steps],
    })
    return report


def _check_source(uri: str) -> None:
    from segrt.runtime.sources import open_source
    src = open_source(uri)
    src.open()
    src.close()


def _accuracy_text(acc: dict) -> str:
    if not acc:
        return "no accuracy report"
    parts = []
    if "agreement" in acc:
        parts.append(f"agreement with FP32 {100 * acc['agreement']:.2f}%")
        if (acc.get("evidence") or {}).get("agreement_meaningful") is False:
            parts[-1] += " (meaningless: FP32 predicts one class almost everywhere)"
    if acc.get("miou_vs_labels") is not None:  # percent, like the agreement (one unit everywhere)
        parts.append(f"mIoU vs labels {100 * acc['miou_vs_labels']:.1f}%")
    if "gate" in acc:
        parts.append(f"gate {100 * acc['gate']:.1f}% {'passed' if acc.get('passed') else 'FAILED'}")
    return ", ".join(parts)


def _tensorrt_skip_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT not installed (CPU machine: ONNX Runtime is the embedded default)"
    if not Path("/dev/nvidia0").exists() and not Path("/dev/nvhost-ctrl-gpu").exists():
        return "no NVIDIA GPU found"
    return None


__all__ = ["run_demo", "DemoReport", "StepResult"]
