"""``segrt demo``: the whole chain on the embedded default."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="export, quantize, stream and benchmark the shipped model, end to end",
                       description="Runs the whole toolchain on this machine: export -> FP16/INT8 with accuracy "
                                   "gates -> TensorRT engine (if a GPU is present) -> overlay video -> benchmark.")
    p.add_argument("-o", "--out", default="segrt-demo", help="output folder (default: ./segrt-demo)")
    p.add_argument("--model", default="demo_unet", help="zoo model (default: the shipped demo_unet)")
    p.add_argument("--source", default=None,
                   help="your camera/video/folder URI instead of the synthetic 1080p scene")
    p.add_argument("--frames", type=int, default=150, help="frames to stream (default 150)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--force", action="store_true", help="redo every step instead of reusing valid artifacts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segrt.errors import ConfigError
    from segrt.tools.demo import run_demo
    if args.frames <= 0:
        raise ConfigError(f"--frames must be positive, got {args.frames}")
    report = run_demo(args.out, model=args.model, source=args.source, frames=args.frames,
                      threads=args.threads, force=args.force)
    print()
    print(report.to_text())
    return 0
