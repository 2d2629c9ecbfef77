"""The ``segrt`` command line: parse, call one library function, print.

Each verb lives in its own module ``segrt.tools.cmd_<verb>`` exposing
``add_parser(subparsers)`` (which sets ``func`` via ``set_defaults``). Verb modules
are imported lazily so ``segrt run`` on a Jetson never imports torch.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from segrt import __version__
from segrt.errors import SegrtError

VERBS = ("models", "export", "quantize", "build", "run", "bench", "demo", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segrt",
        description="Real-time segmentation: export, quantize, build, run and benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"segrt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        try:
            module = importlib.import_module(f"segrt.tools.cmd_{verb}")
        except ModuleNotFoundError as exc:
            if exc.name != f"segrt.tools.cmd_{verb}":
                raise
            continue  # verb not implemented in this build
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that spin-wait steal the cores the pipeline's other stages need (one
    # torch training step here: 8 s spinning vs 0.6 s passive). Must precede importing torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s")
    # Registers the engine builder with the runtime, so a stale engine can be rebuilt (torch-free).
    importlib.import_module("segrt.export.engine_from_onnx")
    try:
        rc = args.func(args)
    except SegrtError as err:
        if args.verbose:
            raise
        print(f"segrt {args.verb}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"segrt {args.verb}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
