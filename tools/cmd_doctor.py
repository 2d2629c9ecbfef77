"""``segrt doctor``: this machine's GPU, TensorRT, CUDA bindings, ONNX Runtime, cameras; ``--selftest``."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="what this machine has, and a self-test of each backend present",
        description="Report the GPU and driver, TensorRT, the CUDA binding (PyCUDA / cuda-python), ONNX Runtime "
                    "providers, whether OpenCV has GStreamer, cameras, and the Jetson model and power mode. "
                    "--selftest runs a tiny model through every backend present (TensorRT engines per precision "
                    "on a GPU) and a short synthetic stream, printing pass/fail/skip per check. Exit status 1 "
                    "when a check fails.")
    p.add_argument("--selftest", action="store_true", help="run the self-test checks")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

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
