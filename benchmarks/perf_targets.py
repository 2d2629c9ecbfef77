"""The project's performance targets, measured as ratios in one run.

    python benchmarks/perf_targets.py                       # demo_unet if shipped, else LR-ASPP at 128x256
    python benchmarks/perf_targets.py --model unet --size 256x512 --threads 2 --workdir /tmp/pt

What it measures (ONNX Runtime on this CPU unless named otherwise):

* ``pipeline_vs_backend``: steady-state FPS of the threaded pipeline on replayed 1080p
  synthetic frames / raw backend FPS (1000 / inference p50 of the same graph).
  1.0 = the app is as fast as the engine. Target >= 0.9.
* ``ort_speedup_vs_torch``: PyTorch eager / ONNX Runtime on the same network (the
  unfused core: float NCHW in, logits out), the same input and thread count.
* ``fused_speedup_vs_unfused``: per-frame time (pre + infer + post p50) of the unfused
  graph / the fused one (normalise, layout and argmax inside the graph).
* ``fp16_latency_vs_fp32``, ``int8_latency_vs_fp32``: inference p50 ratios (> 1 = slower;
  a CPU without FP16 units runs the cast graph slower: FP16/INT8 exist for TensorRT and
  are only accuracy-checked here).
* ``prepost_ms_1080p``: preprocess + postprocess ms per 1080p frame with the fused graph
  (the unfused figure beside it). Target <= 5 ms.

Threads: by default each library uses its own default (one thread per core for both).
On a shared or loaded machine pass ``--threads 1``: PyTorch's OpenMP pool collapses when
its threads are descheduled (measured here under load 8 on 2 cores: 200 ms with 2
threads, 30 ms with 1, for the same LR-ASPP call), which would make every ratio
against it meaningless.

Method: ratios on a shared machine drift with its load, so every variant is measured in
interleaved rounds (the order rotates each round; each block starts with an untimed call
so one runtime's spinning threads do not land in the other's first sample). A ratio is
the median over rounds of the per-round ratio of medians; its range over rounds goes
into the JSON. Pipeline runs alternate with raw-backend blocks the same way.

Output (stable, for comparing runs over time): one ``# `` header line, fixed
``key: value`` lines in a fixed order (``n/a (reason)`` when a step could not run), then a
single ``json: {...}`` line with every figure, the per-round ratios and the environment.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

SCHEMA = "segrt.perf_targets/1"
FALLBACK_MODEL = "lraspp_mobilenet_v3_large"
FALLBACK_SIZE = (128, 256)
KEYS = (
    "model", "size", "threads", "rounds",
    "backend_infer_p50_ms", "backend_fps", "pipeline_fps", "pipeline_vs_backend",
    "ort_unfused_infer_p50_ms", "torch_eager_p50_ms", "ort_speedup_vs_torch",
    "fused_frame_ms", "unfused_frame_ms", "fused_speedup_vs_unfused",
    "fp16_infer_p50_ms", "int8_infer_p50_ms", "fp16_latency_vs_fp32", "int8_latency_vs_fp32",
    "pre_ms_1080p", "post_ms_1080p", "prepost_ms_1080p", "unfused_prepost_ms_1080p",
)
#: a ratio or figure that is missing because another one is: where to find the reason
DEPENDS = {"fp16_latency_vs_fp32": "fp16_infer_p50_ms", "int8_latency_vs_fp32": "int8_infer_p50_ms",
           "ort_speedup_vs_torch": "torch_eager_p50_ms", "pipeline_vs_backend": "pipeline_fps"}
TARGETS = {"pipeline_vs_backend": (">=", 0.9), "prepost_ms_1080p": ("<=", 5.0)}
CALIB_URI = "synthetic://?size=1920x1080&frames=400&seed=11"


def default_model() -> tuple[str, tuple[int, int] | None]:
    """demo_unet at its own size when its weights are shipped, else LR-ASPP at a small size."""
    from segrt.export.zoo import list_entries

    demo = {e.name: e for e in list_entries()}.get("demo_unet")
    if demo is not None and not demo.unavailable:
        return "demo_unet", None
    return FALLBACK_MODEL, FALLBACK_SIZE


def bundle_for(model: str, size: tuple[int, int] | None, path: Path, fuse: bool, say):
    """Reuse ``path`` when it holds this model at this size and fusion (checksum intact), else export."""
    from segrt.errors import SegrtError
    from segrt.export.api import export_bundle
    from segrt.runtime.bundle import Bundle

    try:
        b = Bundle.open(path)
        m = b.manifest
        if (m.source.get("model") == model and m.input.fused == fuse
                and (size is None or (m.input.height, m.input.width) == tuple(size))):
            b.onnx_path("fp32", verify=True)
            say(f"reusing {path}")
            return b
    except SegrtError:
        pass
    if path.exists():
        shutil.rmtree(path)
    t = time.perf_counter()
    b = export_bundle(model, path, size=size, fuse=fuse)
    say(f"exported {model} ({'fused' if fuse else 'unfused'}) in {time.perf_counter() - t:.0f} s")
    return b


def ensure_precision(bundle, precision: str, calib_frames: int, eval_frames: int, say) -> str:
    """Make the FP16/INT8 ONNX if missing; "" or why it could not. The accuracy gate is
    reported, not enforced: this script measures speed."""
    from segrt.calibration.api import quantize_bundle
    from segrt.errors import SegrtError

    if precision in bundle.manifest.artifacts:
        return ""
    t = time.perf_counter()
    try:
        quantize_bundle(bundle.path, precision, calib=CALIB_URI, calib_frames=calib_frames,
                        eval_frames=eval_frames, enforce_gate=False, progress=False)
    except SegrtError as exc:
        return f"quantize {precision} failed: {exc}"
    say(f"quantized {precision} in {time.perf_counter() - t:.0f} s")
    return ""


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    def once() -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    return once


def interleave(variants: dict[str, Callable[[], float]], rounds: int, per_round: int, warmup: int,
               max_time_s: float, say) -> list[dict[str, list[float]]]:
    """Per round, ``per_round`` timed calls of every variant (order rotated; one untimed call
    first). Stops after ``rounds`` rounds or, after at least two, at ``max_time_s``."""
    names = list(variants)
    for name in names:
        for _ in range(max(1, warmup)):
            variants[name]()
    out: list[dict[str, list[float]]] = []
    t0 = time.perf_counter()
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        this: dict[str, list[float]] = {}
        for name in order:
            variants[name]()  # untimed: lets the previous runtime's worker threads go idle
            this[name] = [variants[name]() for _ in range(per_round)]
        out.append(this)
        say(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {np.median(v):.1f}" for n, v in this.items()))
        if r >= 1 and time.perf_counter() - t0 > max_time_s:
            break
    return out


def p50(rounds: list[dict[str, list[float]]], name: str) -> float | None:
    vals = [v for r in rounds for v in r.get(name, ())]
    return float(np.percentile(vals, 50)) if vals else None


def round_ratios(rounds: list[dict[str, list[float]]], num: str | tuple[str, ...],
                 den: str | tuple[str, ...]) -> list[float]:
    """Per round: sum of the numerator variants' medians / sum of the denominator's."""
    num, den = (num,) if isinstance(num, str) else num, (den,) if isinstance(den, str) else den
    out = []
    for r in rounds:
        if all(n in r for n in num + den):
            a = sum(float(np.median(r[n])) for n in num)
            b = sum(float(np.median(r[n])) for n in den)
            if b > 0:
                out.append(a / b)
    return out


def torch_variant(model: str, unfused, x: np.ndarray, threads: int | None):
    """A timed call of PyTorch eager on the unfused core (exactly what the unfused ONNX holds)."""
    import torch

    from segrt.export.fuse import SemanticLogits
    from segrt.export.weights import load_weights
    from segrt.export.zoo import get_entry

    entry = get_entry(model)
    if entry.family != "semantic":
        raise ValueError(f"{model} is an instance model; the targets are defined for semantic models")
    net = entry.build(len(unfused.manifest.classes))
    if entry.weights is not None:
        load_weights(net, entry.weights)
    core = SemanticLogits(net).eval()
    if threads:
        torch.set_num_threads(threads)
    xt = torch.from_numpy(np.array(x, copy=True))

    def run() -> None:
        with torch.inference_mode():
            core(xt)

    return timed(run), torch.get_num_threads()


def measure(args: argparse.Namespace, say) -> dict[str, Any]:
    from segrt.runtime.preprocess import Preprocessor
    from segrt.tools.bench import BenchSettings, PostStage, backend_for_bench, parse_size, run_e2e, synthetic_frames
    from segrt.tools.envinfo import environment

    model, size = (args.model, None) if args.model else default_model()
    if args.size:
        size = parse_size(args.size)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="segrt-perf-"))
    reasons: dict[str, str] = {}
    out: dict[str, Any] = {"model": model}
    opened = []
    try:
        fused = bundle_for(model, size, work / f"{model}.fused", True, say)
        unfused = bundle_for(model, size, work / f"{model}.unfused", False, say)
        h, w = fused.manifest.input.height, fused.manifest.input.width
        out.update(size=f"{h}x{w}", threads=args.threads or "default")
        for p in ("fp16", "int8"):
            why = ensure_precision(fused, p, args.calib_frames, args.eval_frames, say)
            if why:
                reasons[f"{p}_infer_p50_ms"] = why
        from segrt.runtime.bundle import Bundle
        fused = Bundle.open(fused.path)

        scene = synthetic_frames(8)
        frame = scene[0]
        variants: dict[str, Callable[[], float]] = {}

        def add_backend(name: str, bundle, precision: str) -> np.ndarray:
            pre = Preprocessor(bundle.manifest)
            x, lb = pre.pre(frame)
            x = np.array(x, copy=True)
            be = backend_for_bench(bundle, precision, "onnxruntime", args.threads).open()
            opened.append(be)
            variants[name] = timed(lambda: be.infer(x))
            outputs = {k: np.array(v, copy=True) for k, v in be.infer(x).items()}
            if precision == "fp32":
                variants[f"{name}_pre"] = timed(lambda: pre.pre(frame))
                post = PostStage(bundle.manifest, frame, outputs, lb)
                variants[f"{name}_post"] = lambda: post()[0]
            return x

        add_backend("fp32", fused, "fp32")
        x_unfused = add_backend("unfused", unfused, "fp32")
        for p in ("fp16", "int8"):
            if p in fused.manifest.artifacts:
                add_backend(p, fused, p)
        try:
            variants["torch"], out["torch_threads"] = torch_variant(model, unfused, x_unfused, args.threads)
        except (ImportError, ValueError) as exc:
            reasons["torch_eager_p50_ms"] = str(exc)

        say(f"interleaved rounds over: {', '.join(variants)}")
        rounds = interleave(variants, args.rounds, args.per_round, args.warmup, args.max_time, say)
        out["rounds"] = len(rounds)
        fp32 = p50(rounds, "fp32")
        out["backend_infer_p50_ms"] = fp32
        out["backend_fps"] = 1e3 / fp32
        out["ort_unfused_infer_p50_ms"] = p50(rounds, "unfused")
        out["torch_eager_p50_ms"] = p50(rounds, "torch")
        out["fp16_infer_p50_ms"] = p50(rounds, "fp16")
        out["int8_infer_p50_ms"] = p50(rounds, "int8")
        out["pre_ms_1080p"] = p50(rounds, "fp32_pre")
        out["post_ms_1080p"] = p50(rounds, "fp32_post")
        out["prepost_ms_1080p"] = out["pre_ms_1080p"] + out["post_ms_1080p"]
        out["unfused_prepost_ms_1080p"] = p50(rounds, "unfused_pre") + p50(rounds, "unfused_post")
        out["fused_frame_ms"] = sum(p50(rounds, n) for n in ("fp32_pre", "fp32", "fp32_post"))
        out["unfused_frame_ms"] = sum(p50(rounds, n) for n in ("unfused_pre", "unfused", "unfused_post"))
        per_round = {
            "ort_speedup_vs_torch": round_ratios(rounds, "torch", "unfused"),
            "fused_speedup_vs_unfused": round_ratios(rounds, ("unfused_pre", "unfused", "unfused_post"),
                                                     ("fp32_pre", "fp32", "fp32_post")),
            "fp16_latency_vs_fp32": round_ratios(rounds, "fp16", "fp32"),
            "int8_latency_vs_fp32": round_ratios(rounds, "int8", "fp32"),
        }
        for be in opened:
            be.close()
        opened.clear()

        # pipeline vs raw backend: alternate a backend block and a pipeline run, ratio per pair
        say("pipeline vs raw backend ...")
        settings = BenchSettings(threads=args.threads, e2e_frames=args.e2e_frames, max_time_s=1e9)
        pairs, fps_runs = [], []
        x_fused = np.array(Preprocessor(fused.manifest).pre(frame)[0], copy=True)
        for r in range(max(2, args.pipeline_rounds)):
            with backend_for_bench(fused, "fp32", "onnxruntime", args.threads) as be:
                infer = timed(lambda: be.infer(x_fused))
                for _ in range(max(1, args.warmup)):
                    infer()
                raw = float(np.median([infer() for _ in range(args.per_round * 2)]))
            e2e = run_e2e(fused, "fp32", "onnxruntime", settings, args.e2e_frames, scene)
            fps_runs.append(e2e.fps)
            pairs.append(e2e.fps / (1e3 / raw))
            say(f"pipeline round {r + 1}: raw {1e3 / raw:.1f} fps, pipeline {e2e.fps:.1f} fps")
        out["pipeline_fps"] = float(statistics.median(fps_runs))
        per_round["pipeline_vs_backend"] = pairs
        for key, vals in per_round.items():
            out[key] = float(statistics.median(vals)) if vals else None
        out["per_round"] = per_round
        for p in ("fp16", "int8"):
            art = fused.manifest.artifacts.get(p)
            out[f"{p}_agreement"] = (art.accuracy or {}).get("agreement") if art else None
        out["environment"] = environment(args.threads)
        out["reasons"] = reasons
        return out
    finally:
        for be in opened:
            be.close()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def format_value(key: str, value: Any, reasons: dict[str, str]) -> str:
    if value is None:
        why = reasons.get(key) or reasons.get(DEPENDS.get(key, ""), "")
        return f"n/a ({why})" if why else "n/a"
    if isinstance(value, float):
        text = f"{value:.3f}" if ("vs" in key or "speedup" in key) else f"{value:.2f}"
    else:
        text = str(value)
    if key in TARGETS and isinstance(value, float):
        op, target = TARGETS[key]
        met = value >= target if op == ">=" else value <= target
        text += f"  (target {op} {target:g}: {'met' if met else 'NOT met'})"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="zoo name (default: demo_unet if shipped, else "
                                                   f"{FALLBACK_MODEL} at {FALLBACK_SIZE[0]}x{FALLBACK_SIZE[1]})")
    ap.add_argument("--size", default=None, metavar="HxW", help="model input size (default: the model's)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime and PyTorch intra-op threads")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved measurement rounds")
    ap.add_argument("--per-round", type=int, default=5, dest="per_round", help="timed calls per variant per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-time", type=float, default=90.0, dest="max_time",
                    help="stop adding rounds after this many seconds (at least 2 rounds)")
    ap.add_argument("--pipeline-rounds", type=int, default=3, dest="pipeline_rounds")
    ap.add_argument("--e2e-frames", type=int, default=40, dest="e2e_frames", help="frames per pipeline run")
    ap.add_argument("--calib-frames", type=int, default=32, dest="calib_frames", help="INT8 calibration frames")
    ap.add_argument("--eval-frames", type=int, default=8, dest="eval_frames", help="accuracy-check frames")
    ap.add_argument("--workdir", default=None, help="keep (and reuse) the exported bundles here")
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(f"[perf_targets] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    out = measure(args, say)
    env = out["environment"]
    cpu, libs = env.get("cpu", {}), env.get("libraries", {})
    print(f"# segrt perf_targets: {cpu.get('model')} ({cpu.get('usable_cores')} cores, load {cpu.get('loadavg')}), "
          f"onnxruntime {libs.get('onnxruntime')}, torch {libs.get('torch')}, {time.perf_counter() - t0:.0f} s")
    reasons = out["reasons"]
    for key in KEYS:
        print(f"{key}: {format_value(key, out.get(key), reasons)}")
    record = {"schema": SCHEMA, **{k: out.get(k) for k in KEYS},
              **{k: out.get(k) for k in ("torch_threads", "fp16_agreement", "int8_agreement", "per_round")},
              "targets": {k: list(v) for k, v in TARGETS.items()}, "reasons": reasons, "environment": env}
    print("json: " + json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
