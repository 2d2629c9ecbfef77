"""CPU INT8, fused-or-not and ``--precision auto`` on this CPU (issue #17), as ratios in one run.

    python benchmarks/cpu_int8.py --workdir /tmp/ci8            # LR-ASPP 512x1024 and demo_unet 256x512
    python benchmarks/cpu_int8.py --models demo_unet@256x512 --threads 2

Per model it exports the fused bundle, quantizes INT8 once with
``--target both`` (the TensorRT-shaped ``int8`` and the CPU ``int8-cpu`` from the same
calibration; the gate is reported, not enforced, since LR-ASPP has random weights here), then
times, in interleaved rounds (see perf_targets.py), the per-frame work of the app on a 1080p
frame: preprocess + inference + postprocess with ONNX Runtime (and OpenVINO when installed):

* ``fp32_fused``, ``fp32_unfused`` (the twin: the runtime normalises and argmaxes), ``int8_trt_graph``
  (Q/DQ, FP16 remainder), ``int8_cpu`` (the CPU graph, fused pre/post) and ``int8_cpu_unfused``;
* the same four FP32 / CPU INT8 graphs on OpenVINO (``ov_*``) when it is installed;
* ``int8_cpu_speedup``: the fastest FP32 cell / the fastest CPU INT8 cell (any graph, any backend)
  per round, median, per app frame; ``int8_cpu_infer_speedup`` the same for the graph alone
  (``@infer`` rows). Target >= 1.25 (the app frame is the verdict line; the graph alone is printed beside it);
* ``fused_vs_unfused``: fp32 fused / unfused (> 1: the unfused graph plus the runtime's
  pre/post is faster on this CPU);
* the int8-cpu gate numbers: agreement with FP32, mIoU drop against labels (where the scene's
  labels are the model's classes: demo_unet). Targets >= 99 %, <= 1 point; the same two figures for
  the fastest INT8 cell run on its own backend (``best_int8_accuracy``: OpenVINO rounds on its own);
* the QDQ and QOperator times the quantizer measured when it chose the format;
* pipeline FPS (threaded, synthetic 1080p) with ``--precision auto`` and with each precision
  chosen by hand; ``auto_vs_best_by_hand`` target >= 1.0 (within the run's noise).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_targets import bundle_for, interleave, p50, round_ratios, timed  # noqa: E402

CALIB_URI = "synthetic://?size=1920x1080&frames=400&seed=11"
EVAL_URI = "synthetic://?size=1920x1080&frames=40&seed=202"
SCENE_URI = "synthetic://?size=1920x1080&frames={n}&seed=5"
TARGET = 1.25  # issue 17: CPU INT8 >= 1.25x the fastest FP32 (fused or not, any CPU backend)


def say(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def quantize_both(bundle, calib_frames: int, eval_frames: int):
    from segrt.calibration.api import quantize_bundle
    from segrt.runtime.bundle import Bundle

    arts = bundle.manifest.artifacts
    if all(p in arts for p in ("int8", "int8-cpu", "fp32-unfused", "int8-cpu-unfused")):
        say(f"reusing int8, int8-cpu and the unfused twins of {bundle.path}")
        return Bundle.open(bundle.path)
    t = time.perf_counter()
    rep = quantize_bundle(bundle.path, "int8", calib=CALIB_URI, eval_source=EVAL_URI, calib_frames=calib_frames,
                          eval_frames=eval_frames, enforce_gate=False, progress=False, target="both")
    b = Bundle.open(bundle.path)
    if "int8-cpu" not in b.manifest.artifacts and rep.cpu is not None:  # below its gate: keep it for timing
        from segrt.calibration.cpu_variant import register_cpu_twins, register_cpu_variant
        from segrt.calibration.evaluate import collect_eval_set
        register_cpu_variant(b, rep.cpu, {"gate_failed": True}, {})
        b = Bundle.open(bundle.path)
        register_cpu_twins(b, collect_eval_set(b.manifest, EVAL_URI, 4).inputs)
    say(f"quantized int8 + int8-cpu in {time.perf_counter() - t:.0f} s")
    return Bundle.open(bundle.path)


def frame_step(bundle, precision: str, backend: str, frame: np.ndarray, threads: int | None):
    """One app frame (preprocess, infer, decode) as --precision auto times it; the backend stays open."""
    from segrt.runtime.auto_precision import frame_step as runtime_frame_step
    from segrt.runtime.backends.select import backend_for_bundle

    be = backend_for_bundle(bundle, backend=backend, precision=precision, threads=threads, prefer_cpu_int8=False,
                            echo=lambda _m: None)
    be.open()
    return runtime_frame_step(bundle.manifest.for_precision(precision), be, frame), be


def cell_name(cell) -> str:
    """``fp32-unfused/openvino``: the artifact and the backend of one timed cell."""
    return f"{cell[1]}/{cell[2]}"


def summary_lines(r: dict, target: float = TARGET) -> list[str]:
    """The verdict per model: best FP32, best CPU INT8 (graph/backend), ratio, target met or not."""
    lines = []
    for key, what in (("int8_cpu_speedup", "app frame: preprocess + infer + argmax"),
                      ("int8_cpu_infer_speedup", "graph alone")):
        best = r[key + "_best"]
        met = "met" if r[key] >= target else "not met"
        lines += [f"{r['model']} [{what}] best FP32: {best['fp32']}; best CPU INT8: {best['int8']}",
                  f"{r['model']} [{what}] CPU INT8 speedup {r[key]:.2f}x (rounds {r[key + '_range'][0]:.2f}-"
                  f"{r[key + '_range'][1]:.2f}x); >= {target:.2f}x: {met}"]
    return lines


def masks_on_eval(bundle, precision: str, backend: str, frames: int):
    """Class masks of one artifact on one backend over the held-out frames, and their labels."""
    from segrt.calibration.evaluate import collect_eval_set
    from segrt.runtime.backends.select import backend_for_bundle
    from segrt.runtime.postprocess import MaskDecoder

    manifest = bundle.manifest.for_precision(precision)
    eval_set = collect_eval_set(manifest, EVAL_URI, frames)
    dec = MaskDecoder(manifest)
    with backend_for_bundle(bundle, backend=backend, precision=precision, prefer_cpu_int8=False,
                            echo=lambda _m: None) as be:
        masks = [dec.decode(be.infer(x)).copy() for x in eval_set.inputs]
    return masks, eval_set.labels


def accuracy_of_cell(bundle, cell, frames: int) -> dict:
    """The fastest INT8 cell's own masks (its backend, not the gate's ONNX Runtime run) against
    FP32 on ONNX Runtime and against the labels: agreement and mIoU drop in points."""
    from segrt.calibration.evaluate import compare_masks

    n = bundle.manifest.output.num_classes
    ref, labels = masks_on_eval(bundle, "fp32", "onnxruntime", frames)
    got, _ = masks_on_eval(bundle, cell[1], cell[2], frames)
    out = {"cell": cell_name(cell), "agreement_vs_fp32": round(compare_masks(got, ref, n)["agreement"], 5)}
    ref_l, got_l = compare_masks(ref, labels, n), compare_masks(got, labels, n)
    if ref_l and got_l:
        out["miou_drop_vs_labels_points"] = round(100 * (ref_l["miou"] - got_l["miou"]), 3)
    return out


def pipeline_fps(bundle, precision: str, backend: str, frames: int, threads: int | None) -> float:
    from segrt.runtime.pipeline import Pipeline
    summary = Pipeline(bundle, SCENE_URI.format(n=frames), None, backend=backend, precision=precision,
                       max_frames=frames, threads=threads).run()
    return float(summary.fps)


def measure_model(model: str, size, workdir: Path, args) -> dict:
    from segrt.runtime.auto_precision import resolve_auto
    from segrt.runtime.backends.openvino import openvino_available
    from segrt.runtime.sources import open_source

    tag = f"{model}@{size[0]}x{size[1]}"
    fused = bundle_for(model, size, workdir / f"{model}-{size[0]}x{size[1]}-fused", True, say)
    fused = quantize_both(fused, args.calib_frames, args.eval_frames)
    src = open_source(SCENE_URI.format(n=2))
    src.open()
    frame = src.read().image.copy()
    src.close()
    cells = {"fp32_fused": (fused, "fp32", "onnxruntime"), "fp32_unfused": (fused, "fp32-unfused", "onnxruntime"),
             "int8_trt_graph": (fused, "int8", "onnxruntime"), "int8_cpu": (fused, "int8-cpu", "onnxruntime"),
             "int8_cpu_unfused": (fused, "int8-cpu-unfused", "onnxruntime")}
    if openvino_available():  # every FP32 and CPU INT8 graph on OpenVINO too: the baseline is the fastest FP32
        cells["ov_fp32_fused"] = (fused, "fp32", "openvino")
        cells["ov_fp32_unfused"] = (fused, "fp32-unfused", "openvino")
        if fused.manifest.artifacts["int8-cpu"].details.get("format") == "qdq":  # OpenVINO reads Q/DQ only
            cells["ov_int8_cpu"] = (fused, "int8-cpu", "openvino")
            cells["ov_int8_cpu_unfused"] = (fused, "int8-cpu-unfused", "openvino")
    variants, backends = {}, []
    from segrt.runtime.preprocess import Preprocessor
    for name, (b, p, be_name) in cells.items():
        step, be = frame_step(b, p, be_name, frame, args.threads)
        variants[name] = timed(step)
        tensor = Preprocessor(b.manifest.for_precision(p)).pre(frame)[0].copy()
        variants[name + "@infer"] = timed(lambda be=be, t=tensor: be.infer(t))  # the graph alone
        backends.append(be)
    rounds = interleave(variants, args.rounds, args.per_round, 1, args.max_time, say)
    for be in backends:
        be.close()
    out: dict = {"model": tag, "ms_p50": {n: round(p50(rounds, n) or float("nan"), 1) for n in variants}}
    fp32_cells = [k for k in cells if k.replace("ov_", "").startswith("fp32")]
    int8_cells = [k for k in cells if k.replace("ov_", "").startswith("int8_cpu")]
    for suffix, key in (("", "int8_cpu_speedup"), ("@infer", "int8_cpu_infer_speedup")):
        ratios = []  # per round: the fastest FP32 cell / the fastest CPU INT8 cell (any graph, any backend)
        for r in rounds:
            fp32 = min(float(np.median(r[k + suffix])) for k in fp32_cells)
            int8 = min(float(np.median(r[k + suffix])) for k in int8_cells)
            ratios.append(fp32 / int8)
        out[key] = round(float(np.median(ratios)), 2)
        out[key + "_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
        best_fp32 = min(fp32_cells, key=lambda k: out["ms_p50"][k + suffix])
        best_int8 = min(int8_cells, key=lambda k: out["ms_p50"][k + suffix])
        out[key + "_best"] = {"fp32": f"{cell_name(cells[best_fp32])} {out['ms_p50'][best_fp32 + suffix]} ms",
                              "int8": f"{cell_name(cells[best_int8])} {out['ms_p50'][best_int8 + suffix]} ms"}
    out["fused_vs_unfused"] = round(float(np.median(round_ratios(rounds, "fp32_fused", "fp32_unfused"))), 2)
    out["int8_cpu_fused_vs_unfused"] = round(float(np.median(round_ratios(rounds, "int8_cpu", "int8_cpu_unfused"))), 2)
    for ov, ort in (("ov_fp32_fused", "fp32_fused"), ("ov_fp32_unfused", "fp32_unfused"), ("ov_int8_cpu", "int8_cpu"),
                    ("ov_int8_cpu_unfused", "int8_cpu_unfused")):
        if ov in variants:  # > 1: OpenVINO slower than ONNX Runtime on the same graph
            out[f"openvino_vs_ort_{ort}"] = round(float(np.median(round_ratios(rounds, ov, ort))), 2)
    art = fused.manifest.artifacts["int8-cpu"]
    acc = art.accuracy or {}
    out["int8_cpu_format"] = art.details.get("format")
    out["int8_cpu_format_ms"] = art.details.get("format_ms")
    out["int8_cpu_kept_float"] = sorted(art.details.get("kept_float") or {})
    out["int8_cpu_agreement"] = acc.get("agreement")
    out["int8_cpu_miou_drop_vs_labels"] = acc.get("miou_drop_vs_labels")
    out["int8_cpu_gate_passed"] = acc.get("passed")
    best_int8 = min(int8_cells, key=lambda k: out["ms_p50"][k])  # the app-frame winner, on its own backend
    out["best_int8_accuracy"] = accuracy_of_cell(fused, cells[best_int8], args.eval_frames)
    # --precision auto against every precision by hand, in the threaded pipeline
    choice = resolve_auto(fused, threads=args.threads, echo=say)
    out["auto_choice"] = choice.explain()
    # by hand: every (gated artifact, CPU backend) that auto may choose, OpenVINO included
    hand_artifacts = ["fp32", "fp32-unfused"] + (["int8-cpu", "int8-cpu-unfused"] if acc.get("passed") else [])
    by_hand = {f"{a}/{be}": (a, be) for be in ("onnxruntime", "openvino") for a in hand_artifacts
               if be == "onnxruntime" or any(c[1:] == (a, be) for c in cells.values())}
    fps: dict[str, list[float]] = {k: [] for k in ["auto", *by_hand]}
    names = list(fps)
    for r in range(args.pipeline_rounds):  # rotate the order: a load change hits each alike
        for name in names[r % len(names):] + names[:r % len(names)]:
            p, be_name = ("auto", "auto") if name == "auto" else by_hand[name]
            fps[name].append(pipeline_fps(fused, p, be_name, args.pipeline_frames, args.threads))
    out["pipeline_fps"] = {k: round(float(np.median(v)), 2) for k, v in fps.items()}
    best = max(v for k, v in out["pipeline_fps"].items() if k != "auto")
    out["auto_vs_best_by_hand"] = round(out["pipeline_fps"]["auto"] / best, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lraspp_mobilenet_v3_large@512x1024,demo_unet@256x512")
    ap.add_argument("--workdir", default="/tmp/segrt-cpu-int8")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=3, dest="per_round")
    ap.add_argument("--max-time", type=float, default=120.0, dest="max_time")
    ap.add_argument("--calib-frames", type=int, default=60, dest="calib_frames")
    ap.add_argument("--eval-frames", type=int, default=16, dest="eval_frames")
    ap.add_argument("--pipeline-frames", type=int, default=150, dest="pipeline_frames")  # 40 frames: +-6% between runs
    ap.add_argument("--pipeline-rounds", type=int, default=3, dest="pipeline_rounds")
    args = ap.parse_args()
    from segrt.runtime.machine import this_cpu

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"# segrt CPU INT8 benchmark on {this_cpu().describe()}, threads {args.threads or 'default'}")
    for spec in args.models.split(","):
        model, _, size = spec.partition("@")
        h, w = (int(v) for v in size.split("x"))
        r = measure_model(model, (h, w), workdir, args)
        results.append(r)
        for k, v in r.items():
            print(f"{r['model']} {k}: {v}")
    print(f"== issue 17 CPU INT8 target, on {this_cpu().describe()}, one run ==")
    for r in results:
        for line in summary_lines(r):
            print(line)
    print("json: " + json.dumps({"cpu": this_cpu().describe(), "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
