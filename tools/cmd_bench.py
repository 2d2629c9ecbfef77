"""``segrt bench BUNDLE...``: latency per model × precision × backend × stage, with accuracy beside it."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="latency per model x precision x backend x stage (table, JSON, CSV, PNG)",
        description="Benchmark bundles: warm up, time the backend call until stable (or --max-time), "
                    "time pre/postprocessing of a 1080p frame, run the real pipeline for end-to-end FPS, "
                    "and write a table, JSON (with the environment), CSV and a PNG chart. Combinations this "
                    "machine cannot run are listed as skipped with the reason. Exit status 1 when "
                    "--compare finds a regression beyond the measured noise (tolerance capped at 25%%); 2 when no "
                    "cell could be measured (then only BENCH-failed.txt is written).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle directories (segrt export -o DIR)")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32,fp16,int8,int8-cpu,fp32-unfused,int8-cpu-unfused, or auto (the "
                        "one --precision auto picks here)")
    p.add_argument("--backend", default="onnxruntime", help="comma-separated: onnxruntime,openvino,tensorrt, or triton://HOST:PORT/MODEL (h2d/d2h: "
                        "upload/download, compute: network + the server's queue and compute)")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="model input size for bundles exported with dynamic shapes (static bundles keep theirs)")
    p.add_argument("--iters", type=int, default=50, help="minimum timed iterations per loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations before timing")
    p.add_argument("--max-time", type=float, default=10.0, dest="max_time", metavar="S",
                   help="time bound per timing loop in seconds (at least 3 samples are still taken)")
    p.add_argument("--cv-target", type=float, default=0.05, dest="cv_target",
                   help="stop a loop once the robust CV of its last 20 samples is below this")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (None: one per core)")
    p.add_argument("--e2e", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the real pipeline on a synthetic 1080p source for end-to-end FPS")
    p.add_argument("--e2e-frames", type=int, default=60, dest="e2e_frames",
                   help="pipeline frames (cut to what fits in --max-time)")
    p.add_argument("--out", default="segrt-bench", metavar="DIR", help="where bench.json/.csv/.png/.txt go")
    p.add_argument("--compare", default=None, metavar="BASELINE_JSON",
                   help="a bench.json from an earlier run: print ratios and flag regressions")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segrt.tools.bench import (bench_bundles, chart_unavailable_reason, compare, environment_differences,
                                   format_comparison, format_table, load_json, parse_size, write_all)

    # read the baseline first: a wrong path fails now, not after minutes of measuring
    baseline = load_json(args.compare) if args.compare else None
    result = bench_bundles(
        args.bundles, precisions=args.precision, backends=args.backend, iters=args.iters, warmup=args.warmup,
        threads=args.threads, size=parse_size(args.size) if args.size else None, e2e=args.e2e,
        e2e_frames=args.e2e_frames, max_time_s=args.max_time, cv_target=args.cv_target, progress=args.progress)
    print(format_table(result))
    paths = write_all(result, args.out, baseline=baseline)  # nothing measured: BenchError, exit 2
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    if chart_unavailable_reason():
        print(chart_unavailable_reason())
    if baseline is None:
        return 0
    comparisons = compare(result, baseline)
    print()
    print(format_comparison(comparisons, environment_differences(baseline.get("environment", {}),
                                                                 result.environment)))
    return 1 if any(c.regression for c in comparisons) else 0
