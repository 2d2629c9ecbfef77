"""Pipeline performance on the CPU: end-to-end throughput vs the raw backend, and pre+post cost per frame.

Usage::

    python benchmarks/pipeline_perf.py                      # LR-ASPP MobileNetV3 at 512x1024, 1080p synthetic
    python benchmarks/pipeline_perf.py --size 256x512 --frames 40 --threads 2

What it measures, in one run (ratios are only meaningful within a run on a shared machine):

1. raw backend throughput: ``backend.infer`` on a frame already resized to model size,
   back to back (no capture, pre or post);
2. pipeline throughput: ``Pipeline`` on ``synthetic://`` at 1920x1080 with a null sink,
   steady state (the first frames, which include session warm-up, are excluded);
3. pre + post per 1080p frame, single-threaded: resize into the input tensor, mask decode,
   overlay render (LUT at model resolution, nearest upscale, addWeighted, legend, stats text),
   against a naive numpy version (float normalise, np.argmax, palette indexing at 1080p, float blend).

Targets (issue 3): pipeline >= 0.9x raw; pre + post <= 5 ms per 1080p frame.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def _ms(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e3
    return {"min": float(a.min()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "mean": float(a.mean())}


def _bundle(path: Path, model: str, size: tuple[int, int], fuse: bool):
    """Export ``model`` with segrt's exporter (random weights when none are available offline)."""
    from segrt.runtime.bundle import Bundle

    if (path / "segrt.json").exists():
        return Bundle.open(path)
    from segrt.export.api import export_bundle

    t = time.perf_counter()
    b = export_bundle(model, path, size=size, fuse=fuse)
    print(f"exported {model} {size[0]}x{size[1]} ({'fused' if fuse else 'unfused'}) in {time.perf_counter() - t:.0f} s")
    return b


def _frames(n: int, w: int, h: int, model_hw: tuple[int, int] | None = None):
    """``n`` synthetic frames, and with ``model_hw`` also their ground truth at model size."""
    from segrt.runtime.sources import open_source
    from segrt.runtime.synthetic import resize_label

    with open_source(f"synthetic://?size={w}x{h}&frames={n}&seed=0") as src:
        got = list(src)
    if model_hw is None:
        return [f.image for f in got]
    return [f.image for f in got], [resize_label(f.label, model_hw[1], model_hw[0]) for f in got]


def raw_backend(bundle, frame: np.ndarray, n: int, threads: int | None) -> dict:
    from segrt.runtime.backends.select import backend_for_bundle
    from segrt.runtime.preprocess import Preprocessor

    tensor, _ = Preprocessor(bundle.manifest).pre(frame)
    x = tensor.copy()
    with backend_for_bundle(bundle, backend="onnxruntime", threads=threads) as be:
        for _ in range(3):
            be.infer(x)
        times = []
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            t = time.perf_counter()
            be.infer(x)
            times.append(time.perf_counter() - t)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"fps": n / wall, "infer_ms": _ms(times), "cpu_ms_per_frame": cpu / n * 1e3}


def pipeline(bundle, w: int, h: int, n: int, threads: int | None, warm: int = 3) -> dict:
    from segrt.runtime.pipeline import Pipeline

    done, cpu_at = [], []
    p = Pipeline(bundle, f"synthetic://?size={w}x{h}&frames={n + warm}&seed=0", "null://", backend="onnxruntime",
                 threads=threads)
    for _ in p:
        done.append(time.perf_counter())
        cpu_at.append(time.process_time())
    # Steady state only: session creation and scene setup happen before frame `warm`.
    steady = (len(done) - 1 - warm) / (done[-1] - done[warm])
    cpu_per_frame = (cpu_at[-1] - cpu_at[warm]) / (len(done) - 1 - warm)
    s = p.summary
    return {"fps_steady": steady, "fps_overall": s.fps, "cpu_ms_per_frame": cpu_per_frame * 1e3,
            "stages_p50_ms": {k: round(v.p50, 2) for k, v in s.stages.items()}}


def pre_post(bundle, frames: list[np.ndarray], reps: int,
             truth: list[np.ndarray] | None = None) -> tuple[dict, float]:
    """Pre + decode + render per frame (one calling thread), with the model's real outputs, or
    with ``truth`` (the scene's ground truth at model size) standing in for a trained model's.
    Returns the timings and the share of mask pixels that are not background (class 0).

    The overlay costs more the more of the frame is tinted: a random-weight model paints every
    pixel one class (worst case), a trained one leaves most of a scene background.
    """
    from segrt.runtime.backends.select import backend_for_bundle
    from segrt.runtime.postprocess import MaskDecoder
    from segrt.runtime.preprocess import Preprocessor
    from segrt.runtime.render import Renderer

    m = bundle.manifest
    pre = Preprocessor(m)
    if truth is not None:
        outs = [{m.output.names[0]: t[None]} for t in truth]
    else:
        with backend_for_bundle(bundle, backend="onnxruntime") as be:
            outs = [{k: v.copy() for k, v in be.infer(pre.pre(f)[0].copy()).items()} for f in frames]
    dec = MaskDecoder(m)
    tinted = float(np.mean([np.mean(dec.decode(o) > 0) for o in outs]))
    res = {}
    for label, kw in (("overlay+legend+stats", dict(legend=True, shares=True)),
                      ("overlay only", dict(legend=False, shares=False))):
        r = Renderer(m, view="overlay", alpha=0.5, **kw)
        t_pre, t_post = [], []
        for k in range(reps):
            i = k % len(frames)
            t0 = time.perf_counter()
            _, lb = pre.pre(frames[i])
            t1 = time.perf_counter()
            mask = dec.decode(outs[i])
            r.render(frames[i], mask, lb, "onnxruntime fp32  10.0 FPS\nlatency 99.0 ms" if kw["legend"] else None)
            t2 = time.perf_counter()
            t_pre.append(t1 - t0)
            t_post.append(t2 - t1)
        tot = [a + b for a, b in zip(t_pre, t_post)]
        res[label] = {"pre": _ms(t_pre), "post": _ms(t_post), "total": _ms(tot),
                      "total_p50_ms": _ms(tot)["p50"]}
    return res, tinted


def argmax_cost(num_classes: int, h: int, w: int, reps: int) -> dict:
    """Unfused graphs: CPU argmax over (1,C,H,W) logits, running max vs np.argmax."""
    from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette
    from segrt.runtime.postprocess import MaskDecoder

    m = Manifest(name="x", classes=tuple(f"c{i}" for i in range(num_classes)), palette=default_palette(num_classes),
                 input=InputSpec(name="input", height=h, width=w, layout="NCHW", dtype="float32", fused=False),
                 preprocess=PreprocessSpec(), output=OutputSpec(kind="logits", names=("logits",), num_classes=num_classes))
    logits = np.random.default_rng(0).standard_normal((1, num_classes, h, w)).astype(np.float32)
    dec = MaskDecoder(m)
    a, b = [], []
    for _ in range(reps):
        t = time.perf_counter()
        dec.decode({"logits": logits})
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        np.argmax(logits[0], axis=0).astype(np.uint8)
        b.append(time.perf_counter() - t)
    return {"running_max_ms": _ms(a)["p50"], "np_argmax_ms": _ms(b)["p50"]}


def naive(bundle, frames: list[np.ndarray], reps: int, num_classes: int) -> dict:
    """The straightforward numpy version of the same work (the 'before')."""
    m = bundle.manifest
    h, w = m.input.height, m.input.width
    mean = np.array(m.preprocess.mean, np.float32)
    std = np.array(m.preprocess.std, np.float32)
    palette = np.array(m.palette, np.uint8)
    logits = np.random.default_rng(0).standard_normal((1, num_classes, h, w)).astype(np.float32)
    t_pre, t_post = [], []
    for k in range(reps):
        f = frames[k % len(frames)]
        t0 = time.perf_counter()
        x = cv2.resize(f, (w, h)).astype(np.float32)[..., ::-1]
        x = ((x - mean) / std).transpose(2, 0, 1)[None].copy()
        t1 = time.perf_counter()
        mask = np.argmax(logits[0], axis=0).astype(np.uint8)
        up = cv2.resize(mask, (f.shape[1], f.shape[0]), interpolation=cv2.INTER_NEAREST)
        colour = palette[up % len(palette)]
        out = (f.astype(np.float32) * 0.5 + colour.astype(np.float32) * 0.5).astype(np.uint8)
        t2 = time.perf_counter()
        del out
        t_pre.append(t1 - t0)
        t_post.append(t2 - t1)
    tot = [a + b for a, b in zip(t_pre, t_post)]
    return {"pre": _ms(t_pre), "post": _ms(t_post), "total": _ms(tot), "total_p50_ms": _ms(tot)["p50"]}


def environment(threads: int | None) -> dict:
    import onnxruntime

    from segrt.runtime.machine import this_cpu

    return {"cpu": this_cpu().describe(), "cores": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
            "cv2_threads": cv2.getNumThreads(), "ort_intra_op_threads": threads or "default"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lraspp_mobilenet_v3_large")
    ap.add_argument("--size", default="512x1024", help="model input HxW (default 512x1024)")
    ap.add_argument("--source-size", default="1920x1080", help="synthetic frame WxH (default 1920x1080)")
    ap.add_argument("--frames", type=int, default=60, help="frames per throughput measurement")
    ap.add_argument("--reps", type=int, default=60, help="frames for the pre/post timing")
    ap.add_argument("--rounds", type=int, default=7,
                    help="raw/pipeline measurement pairs, interleaved so a shared machine's load hits both alike")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--cv-threads", type=int, default=None,
                    help="cv2.setNumThreads for the whole run (default: OpenCV's own choice)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "segrt-pipeline-perf"),
                    help="where the exported bundle is kept (reused on the next run)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    mh, mw = (int(v) for v in args.size.lower().split("x"))
    fw, fh = (int(v) for v in args.source_size.lower().split("x"))
    work = Path(args.work)
    bundle = _bundle(work / f"{args.model}_{mh}x{mw}", args.model, (mh, mw), fuse=True)
    nc = bundle.manifest.output.num_classes
    frames, truth = _frames(8, fw, fh, (mh, mw))

    env = environment(args.threads)
    print("environment:", json.dumps(env))
    print(f"model {args.model} input {mh}x{mw}, {nc} classes, fused graph; frames {fw}x{fh}\n")

    before = naive(bundle, frames, max(10, args.reps // 3), nc)
    after, fg_model = pre_post(bundle, frames, args.reps)
    realistic, share_fg = pre_post(bundle, frames, args.reps, truth) if bundle.manifest.output.kind == "mask" else ({}, 0.0)
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the same work on one core: its CPU cost, not its latency
    one_core = pre_post(bundle, frames, args.reps, truth)[0] if realistic else {}
    cv2.setNumThreads(cv_threads)
    am = argmax_cost(nc, mh, mw, max(10, args.reps // 3))
    rounds = []
    for k in range(args.rounds):
        raw = raw_backend(bundle, frames[0], args.frames, args.threads)
        pipe = pipeline(bundle, fw, fh, args.frames, args.threads)
        rounds.append({"raw": raw, "pipeline": pipe, "ratio": pipe["fps_steady"] / raw["fps"]})
        print(f"round {k + 1}: raw {raw['fps']:.2f} fps, pipeline {pipe['fps_steady']:.2f} fps, "
              f"ratio {rounds[-1]['ratio']:.3f}", flush=True)
    ratios = [r["ratio"] for r in rounds]
    mid = sorted(range(len(rounds)), key=lambda i: ratios[i])[len(rounds) // 2]
    raw, pipe = rounds[mid]["raw"], rounds[mid]["pipeline"]

    print(f"\npre + post per {fh}p frame, ms (p50, and min = the unloaded cost), OpenCV on {cv_threads} threads:")
    print(f"  naive numpy (float normalise, np.argmax over {nc} classes, palette at {fh}p, float blend): "
          f"pre {before['pre']['p50']:.2f} + post {before['post']['p50']:.2f} = {before['total']['p50']:.2f} "
          f"(min {before['total']['min']:.2f})")
    for title, results in ((f"the model's own output ({fg_model:.0%} of pixels tinted)", after),
                           (f"the scene's true mask as the output ({share_fg:.0%} tinted)", realistic),
                           ("the scene's true mask, OpenCV on 1 thread (CPU cost)", one_core)):
        if not results:
            continue
        print(f"  with {title}:")
        for label, r in results.items():
            print(f"    segrt {label:<22} pre {r['pre']['p50']:.2f} + post {r['post']['p50']:.2f} "
                  f"= {r['total']['p50']:.2f} (min {r['total']['min']:.2f})   "
                  f"budget 5 ms: {'OK' if r['total']['p50'] <= 5 else 'OVER'}")
    print(f"  unfused graphs only: CPU argmax over 1x{nc}x{mh}x{mw} logits: running max "
          f"{am['running_max_ms']:.2f} ms vs np.argmax {am['np_argmax_ms']:.2f} ms")
    ratio = float(np.median(ratios))
    print(f"\nthroughput (median of {len(rounds)} interleaved rounds; ratios {', '.join(f'{r:.3f}' for r in ratios)}):")
    print(f"  raw backend on pre-resized input: {raw['fps']:.2f} fps (infer p50 {raw['infer_ms']['p50']:.1f} ms)")
    print(f"  pipeline, synthetic {fw}x{fh} -> null://: {pipe['fps_steady']:.2f} fps steady "
          f"({pipe['fps_overall']:.2f} incl. warm-up); stage p50 ms {pipe['stages_p50_ms']}")
    print(f"  ratio pipeline / raw = {ratio:.3f}   (target >= 0.9: {'OK' if ratio >= 0.9 else 'BELOW'})")
    cpu_raw, cpu_pipe = raw["cpu_ms_per_frame"], pipe["cpu_ms_per_frame"]
    print(f"  CPU time per frame (all threads): raw {cpu_raw:.0f} ms, pipeline {cpu_pipe:.0f} ms -> on an idle machine "
          f"where both are CPU-bound the ratio would be about {cpu_raw / cpu_pipe:.3f}")
    speed = before["total_p50_ms"] / after["overlay+legend+stats"]["total_p50_ms"]
    print(f"  pre+post speed-up over naive: {speed:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "naive": before, "segrt": after,
                                               "segrt_true_mask": realistic, "segrt_true_mask_1_thread": one_core,
                                               "argmax": am,
                                               "rounds": rounds, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
