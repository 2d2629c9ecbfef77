"""``segrt doctor``: this machine's GPU, TensorRT, CUDA bindings, ONNX Runtime, cameras; ``--selftest``,
``--acceptance``."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="what this machine has, and a self-test of each backend present",
        description="Report the GPU and driver, TensorRT, the CUDA binding (PyCUDA / cuda-python), ONNX Runtime "
                    "providers, whether OpenCV has GStreamer and matches the installed numpy, cameras, and the "
                    "Jetson model and power mode. --selftest runs a tiny model through every backend present "
                    "(TensorRT engines per precision on a GPU) and a short synthetic stream, printing "
                    "pass/fail/skip per check. --acceptance runs the GPU acceptance (selftest, gpu tests, CUDA, "
                    "TensorRT builds, threads, bench, ...) and writes every result to one JSON file. Exit status 1 "
                    "when a check fails.")
    p.add_argument("--selftest", action="store_true", help="run the self-test checks")
    p.add_argument("--acceptance", action="store_true",
                   help="run the GPU acceptance steps (CPU machines skip the GPU ones, with the reason)")
    p.add_argument("--no-tensorrt", action="store_true",
                   help="with --acceptance: only the CUDA steps that need no TensorRT (cuda-python, PyCUDA)")
    p.add_argument("--out", metavar="FILE.json", default=None,
                   help="with --acceptance: where the JSON goes (default segrt-acceptance.json)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from segrt.errors import ConfigError

    if (args.no_tensorrt or args.out) and not args.acceptance:
        raise ConfigError("--no-tensorrt and --out go with --acceptance", hint="segrt doctor --acceptance --no-tensorrt")
    if args.acceptance:
        from segrt.tools.acceptance import run_acceptance

        out = args.out or "segrt-acceptance.json"
        print(f"segrt doctor --acceptance{' --no-tensorrt' if args.no_tensorrt else ''}:")
        rep = run_acceptance(no_tensorrt=args.no_tensorrt, out=out, echo=print)
        s = rep["summary"]
        print(f"{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped in {rep['seconds']:.0f} s; "
              f"everything is in {out}")
        return 0 if rep["ok"] else 1

    from segrt.tools.doctor import doctor, format_report

    if args.json:
        rep = doctor(args.selftest)
        print(json.dumps(rep, indent=2, default=str))
    else:
        rep = doctor(False)
        print(format_report(rep["machine"]))
        if args.selftest:
            print("\nself-test:")
            from dataclasses import asdict

            from segrt.tools.doctor import selftest
            rep["selftest"] = [asdict(c) for c in selftest(echo=print)]
    failed = [c for c in rep.get("selftest", []) if c["status"] == "fail"]
    return 1 if failed else 0
