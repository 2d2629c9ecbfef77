"""``segrt run BUNDLE --source URI --sink URI``: the camera-stream demo with per-stage timings."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run a bundle on a camera, stream, video, images or synthetic:// and draw the result",
        description="Capture -> preprocess + infer -> postprocess + sink, in threads. Sources: a video file, "
                    "an image, a folder or glob of images, 0 or /dev/videoN or v4l2:///dev/videoN, rtsp://..., "
                    "csi://N?width=&height=&fps=&flip=, gst://<pipeline>, synthetic://?size=WxH&fps=&frames=&seed= "
                    "(add live=1 to pace it like a camera). Sinks: display://, a video file (.mp4 .avi .mkv), "
                    "a folder, an image file, null://. Ctrl-C or SIGTERM finalises the output video.")
    p.add_argument("bundle", help="bundle directory (from segrt export)")
    p.add_argument("--source", required=True, action="append", metavar="URI",
                   help="frame source; repeat for several streams on one backend (batched when the bundle has a "
                        "batch axis, segrt export --max-batch N; else inferred one by one)")
    p.add_argument("--sink", action="append", metavar="URI",
                   help="where rendered frames go (default null://); repeat for several, e.g. "
                        "--sink http://:8080 --sink out.mp4; an image source's names are kept in a folder")
    p.add_argument("--tile", action="store_true",
                   help="several sources: tile them into one mosaic written to the --sink (default: one --sink "
                        "per --source, in order)")
    p.add_argument("--batch-wait-ms", type=float, default=15.0, metavar="MS",
                   help="several sources: how long a batch waits for the other streams' frames after the first "
                        "(a slow camera misses the batch instead of stalling the others; default 15)")
    p.add_argument("--listen", default=None, metavar="HOST",
                   help="the address an http:// sink without a host binds to (default 127.0.0.1); "
                        "another one (0.0.0.0) requires a token, printed once at start")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output video (refused otherwise)")
    p.add_argument("--backend", default="auto", type=_backend_name,
                   metavar="{auto,onnxruntime,openvino,tensorrt,triton://HOST:PORT/MODEL}",
                   help="inference backend; auto takes TensorRT when it and a GPU are present (with --precision "
                        "auto, on a CPU, the faster of ONNX Runtime and OpenVINO as measured here); "
                        "triton://HOST:PORT/MODEL sends frames to a Triton server")
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "fp16", "int8", "int8-cpu", "fp32-unfused",
                                                                  "int8-cpu-unfused"),
                   help="which of the bundle's models to run; auto: the fastest whose gate passed, measured here "
                        "once and cached in the bundle per machine; on a CPU, int8 runs the CPU INT8 graph "
                        "(int8-cpu) when the bundle has one")
    p.add_argument("--view", default="overlay", choices=("overlay", "mask", "side-by-side"),
                   help="what the sink receives")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--alpha", type=float, default=0.5, metavar="A", help="overlay opacity 0..1 (default 0.5)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="inference threads (default: backend's)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="TensorRT only: replay inference as a CUDA graph (static shapes; needs cuda-python)")
    p.add_argument("--legend", action=argparse.BooleanOptionalAction, default=True, help="draw the class legend")
    p.add_argument("--shares", action="store_true", help="show each class's share of the pixels in the legend")
    p.add_argument("--no-stats", dest="overlay_stats", action="store_false", help="no FPS/latency text on frames")
    p.set_defaults(func=run)


def _backend_name(text: str) -> str:
    if text in ("auto", "onnxruntime", "openvino", "tensorrt") or text.startswith("triton://"):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (auto, onnxruntime, openvino, tensorrt or "
                                     "triton://HOST:PORT/MODEL)")


def run(args: argparse.Namespace) -> int:
    from segrt.runtime.pipeline import Pipeline

    backend = args.backend
    if args.cuda_graph:
        from segrt.errors import ConfigError
        from segrt.runtime.backends.select import backend_for_bundle
        from segrt.runtime.bundle import Bundle
        if args.backend == "onnxruntime":
            raise ConfigError("--cuda-graph needs the TensorRT backend", hint="drop --backend onnxruntime")
        backend = backend_for_bundle(Bundle.open(args.bundle), backend="tensorrt", precision=args.precision,
                                     cuda_graph=True, rebuild=args.backend == "auto")
    if len(args.source) > 1:
        from segrt.runtime.multi_source import MultiSourceRunner
        multi = MultiSourceRunner(args.bundle, args.source, args.sink, tile=args.tile, backend=backend,
                                  precision=args.precision, view=args.view, alpha=args.alpha,
                                  max_frames=args.max_frames, threads=args.threads, legend=args.legend,
                                  shares=args.shares, overlay_stats=args.overlay_stats,
                                  batch_wait_ms=args.batch_wait_ms, overwrite=args.overwrite,
                                  listen=args.listen).run()
        print(multi.table(), flush=True)
        return 130 if multi.interrupted else 0
    sinks = args.sink or ["null://"]
    summary = Pipeline(args.bundle, args.source[0], sinks, backend=backend, precision=args.precision,
                       view=args.view, alpha=args.alpha, max_frames=args.max_frames, threads=args.threads,
                       legend=args.legend, shares=args.shares, overlay_stats=args.overlay_stats,
                       overwrite=args.overwrite, listen=args.listen).run()
    print(summary.table(), flush=True)
    return 130 if summary.interrupted else 0
