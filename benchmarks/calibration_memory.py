"""Peak memory and speed of INT8 calibration over many frames (target: 1,000 frames at 512x1024 < 4 GB).

    python benchmarks/calibration_memory.py                              # lraspp 512x1024, 1000 frames, minmax
    python benchmarks/calibration_memory.py --method entropy --frames 1000
    python benchmarks/calibration_memory.py --bundle path/to/bundle     # an exported bundle instead
    python benchmarks/calibration_memory.py --ort-baseline 12            # ORT's own calibrator, for contrast

The calibration runs in a fresh child process (no torch, no export in it), exactly as
``segrt quantize`` runs it: frames sampled evenly from the source with seek,
de-duplicated, preprocessed by the runtime's Preprocessor, streamed one at a time into
:func:`segrt.calibration.collect.calibrate_ranges`. The child reports its peak RSS
(``resource.getrusage``: ``ru_maxrss``), the RSS after 10%, 50% and 100% of the frames (flat
means memory does not grow with the frame count) and the throughput.

``--ort-baseline N`` also runs ONNX Runtime's own Entropy calibrator
(``create_calibrator(...).collect_data``) on N frames in another child: it keeps every
calibrated activation of every frame until the end, so its RSS grows with N; the
per-frame growth it prints extrapolates to 1,000 frames.

If no --bundle is given the model is exported first (randomly initialised weights: memory
and speed do not depend on the weights) into a temp folder, in its own process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_segrt(args: argparse.Namespace) -> dict:
    """One calibration as segrt quantize runs it; prints a JSON line."""
    import onnx

    from segrt.calibration.collect import calibrate_ranges, tensors_to_calibrate
    from segrt.calibration.qdq import DEFAULT_QUANT_OPS, FP16_QDQ_OPSET, prepare_fp32
    from segrt.calibration.reader import SourceCalibrationReader
    from segrt.calibration.sampling import FrameSampler
    from segrt.runtime.bundle import Bundle

    bundle = Bundle.open(args.bundle)
    model, _ = prepare_fp32(onnx.load(str(bundle.onnx_path("fp32"))), min_opset=FP16_QDQ_OPSET)
    tensors = tensors_to_calibrate(model, DEFAULT_QUANT_OPS)
    base = _rss_mb()
    checkpoints = {max(1, args.frames // 10): None, max(1, args.frames // 2): None, args.frames: None}
    state = {"n": 0, "t_first": None}

    def on_frame() -> None:
        state["n"] += 1
        if state["n"] == 1:
            state["t_first"] = time.perf_counter()
        if state["n"] in checkpoints:
            checkpoints[state["n"]] = round(_rss_mb(), 1)
        if args.verbose and state["n"] % 50 == 0:
            print(f"  {state['n']} frames, RSS {_rss_mb():.0f} MB", file=sys.stderr, flush=True)

    sampler = FrameSampler(args.source, args.frames, dedup_threshold=args.dedup)
    reader = SourceCalibrationReader(sampler, bundle.manifest, on_frame=on_frame)
    t0 = time.perf_counter()
    ranges = calibrate_ranges(model, reader, tensors, method=args.method, threads=args.threads,
                              input_shape=bundle.manifest.input.shape)
    seconds = time.perf_counter() - t0
    # near-duplicates may leave fewer frames than asked: the last checkpoint is the end of the run
    checkpoints[args.frames] = round(_rss_mb(), 1)
    inp = bundle.manifest.input
    return {
        "tool": "segrt", "method": args.method, "frames": ranges.frames, "requested": args.frames,
        "dedup_dropped": sampler.coverage.dropped_duplicates, "tensors": len(tensors),
        "model_input": f"{inp.height}x{inp.width}", "source": args.source,
        "seconds": round(seconds, 1), "frames_per_s": round(ranges.frames / seconds, 2),
        "rss_before_mb": round(base, 1), "rss_at_frames_mb": {str(k): v for k, v in checkpoints.items()},
        "peak_rss_mb": round(_peak_mb(), 1),
    }


def child_ort(args: argparse.Namespace) -> dict:
    """ONNX Runtime's own EntropyCalibrater over N frames (one collect_data call, as quantize_static)."""
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from segrt.calibration.qdq import DEFAULT_QUANT_OPS, prepare_fp32
    from segrt.calibration.reader import SourceCalibrationReader
    from segrt.calibration.sampling import FrameSampler
    from segrt.runtime.bundle import Bundle

    bundle = Bundle.open(args.bundle)
    model, _ = prepare_fp32(onnx.load(str(bundle.onnx_path("fp32"))))
    peak = {"rss": 0.0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], _rss_mb())
            time.sleep(0.2)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "m.onnx")
        onnx.save(model, str(src))
        cal = create_calibrator(src, list(DEFAULT_QUANT_OPS), augmented_model_path=str(Path(tmp, "aug.onnx")),
                                calibrate_method=CalibrationMethod.Entropy, extra_options={"symmetric": True})
        base = _rss_mb()
        threading.Thread(target=watch, daemon=True).start()
        reader = SourceCalibrationReader(FrameSampler(args.source, args.ort_baseline), bundle.manifest)
        t0 = time.perf_counter()
        cal.collect_data(reader)
        seconds = time.perf_counter() - t0
        stop.set()
    n = reader.delivered
    peak_mb = max(peak["rss"], _peak_mb())
    return {"tool": "onnxruntime EntropyCalibrater", "frames": n, "seconds": round(seconds, 1),
            "rss_before_mb": round(base, 1), "peak_rss_mb": round(peak_mb, 1),
            "growth_per_frame_mb": round((peak_mb - base) / max(1, n), 1),
            "extrapolated_1000_frames_gb": round((base + 1000 * (peak_mb - base) / max(1, n)) / 1024, 1)}


def _export(model: str, size: tuple[int, int], out: Path) -> None:
    code = ("from segrt.export.api import export_bundle; "
            f"export_bundle({model!r}, {str(out)!r}, size={size!r}, verify=False)")
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=None, help="an exported bundle (default: export --model)")
    ap.add_argument("--model", default="lraspp_mobilenet_v3_large")
    ap.add_argument("--size", default="512x1024", help="HxW of the model input when exporting")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    ap.add_argument("--source", default="synthetic://?size=1024x512&frames=4000&seed=1")
    ap.add_argument("--dedup", type=float, default=1.5, help="near-duplicate threshold (0 keeps every frame)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ort-baseline", type=int, default=0, metavar="N",
                    help="also measure ONNX Runtime's EntropyCalibrater on N frames")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--child", choices=("segrt", "ort"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child_segrt(args) if args.child == "segrt" else child_ort(args)))
        return 0

    with tempfile.TemporaryDirectory(prefix="segrt-calib-mem-") as tmp:
        if args.bundle is None:
            h, w = (int(v) for v in args.size.lower().split("x"))
            args.bundle = str(Path(tmp, "bundle"))
            print(f"exporting {args.model} at {h}x{w} (random weights) ...", file=sys.stderr)
            _export(args.model, (h, w), Path(args.bundle))
        results = []
        runs = [("segrt", [])] + ([("ort", [])] if args.ort_baseline else [])
        for kind, _ in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--bundle", args.bundle,
                   "--frames", str(args.frames), "--method", args.method, "--source", args.source,
                   "--dedup", str(args.dedup), "--ort-baseline", str(args.ort_baseline)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.verbose:
                cmd.append("--verbose")
            print(f"running {kind} calibration in a child process ...", file=sys.stderr)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "processor": platform.processor()}
    try:
        import onnxruntime
        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    for r in results:
        print(json.dumps(r, indent=2))
    seg = results[0]
    verdict = "PASS" if seg["peak_rss_mb"] < 4096 else "FAIL"
    print(f"\n{seg['method']} calibration, {seg['frames']} frames at {seg['model_input']}: peak RSS "
          f"{seg['peak_rss_mb']:.0f} MB (target < 4096 MB: {verdict}); RSS at 10/50/100% of frames "
          f"{list(seg['rss_at_frames_mb'].values())} MB; {seg['frames_per_s']} frames/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=2))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
