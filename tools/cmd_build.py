"""``segrt build BUNDLE --precision ...``: a TensorRT engine for this GPU, recorded in the bundle."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "build", help="build a TensorRT engine for this GPU (needs TensorRT and an NVIDIA GPU)",
        description="Build model.<precision>.<gpu>.trt<ver>.engine from the bundle's precision-typed ONNX "
                    "(strongly typed: model.fp16.onnx / model.int8.onnx with Q/DQ), save the engine "
                    "inspector's per-layer JSON beside it, print how many layers run in FP32/FP16/INT8, "
                    "and record the engine's provenance in segrt.json. Build on the device that runs it.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="engine precision")
    p.add_argument("--legacy-calibrator", action="store_true", dest="legacy",
                   help="TensorRT 10.x only: weak typing with FP16/INT8 builder flags and an INT8 calibrator "
                        "on model.onnx (refused on TensorRT 11)")
    p.add_argument("--calibrator", choices=("entropy", "minmax"), default="entropy",
                   help="legacy INT8 calibrator (IInt8EntropyCalibrator2 or IInt8MinMaxCalibrator)")
    p.add_argument("--calib", default=None, metavar="SOURCE",
                   help="calibration frames for --legacy-calibrator: folder, video, synthetic://")
    p.add_argument("--calib-frames", type=int, default=200, dest="calib_frames", metavar="N",
                   help="frames for the legacy calibrator")
    p.add_argument("--workspace", type=float, default=None, metavar="GiB", help="builder workspace limit")
    p.add_argument("--dla-core", type=int, default=None, dest="dla_core", metavar="N",
                   help="Jetson Orin DLA core, with GPU fallback (static shapes, FP16/INT8)")
    p.add_argument("--timing-cache", default=None, dest="timing_cache", metavar="PATH",
                   help="timing cache file (default: one per GPU and TensorRT version in the bundle)")
    p.add_argument("--opt-level", type=int, default=None, dest="opt_level", metavar="N",
                   help="builder optimisation level 0-5 (TensorRT default 3)")
    p.add_argument("--version-compatible", action="store_true", dest="version_compatible",
                   help="embed a lean runtime so later TensorRT versions can run the engine (slower)")
    p.add_argument("--hardware-compat", choices=("none", "ampere+", "same-cc"), default="none",
                   dest="hardware_compat", help="desktop GPUs: run on other Ampere+ / same-SM GPUs")
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segrt.export.engine_from_onnx import build_bundle_engine
    from segrt.runtime.bundle import Bundle

    bundle = Bundle.open(args.bundle)
    rec = build_bundle_engine(
        bundle, precision=args.precision, legacy=args.legacy, calibrator=args.calibrator,
        calib_source=args.calib, calib_frames=args.calib_frames, workspace_gib=args.workspace,
        dla_core=args.dla_core, timing_cache=args.timing_cache, opt_level=args.opt_level,
        version_compatible=args.version_compatible, hardware_compat=args.hardware_compat,
        device=args.device, verbose=bool(getattr(args, "verbose", False)), echo=print)
    print(f"wrote {bundle.path / rec.path} (TensorRT {rec.trt_version}, {rec.gpu_name}, "
          f"SM {rec.compute_capability[0]}.{rec.compute_capability[1]})")
    return 0
