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
import threading
import traceback
from typing import Sequence

from segrt import __version__
from segrt.errors import SegrtError
from segrt.runtime.native_logs import configure_native_logs
from segrt.runtime.redact import RedactingFilter, redact

OPENCV_HINT = ("desktop: pip install 'segrt[opencv]'; Jetson: JetPack's python3-opencv, seen from a "
               "--system-site-packages venv")
VERBS = ("models", "export", "quantize", "build", "run", "eval", "bench", "demo", "doctor", "deploy")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help, unless X is None or a flag's bool, or the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if isinstance(action, argparse.BooleanOptionalAction) and isinstance(default, bool) and "default" not in text:
            on, off = action.option_strings[0], action.option_strings[-1]
            return f"{text} (default: {on if default else off})".strip()
        if (not action.option_strings or default is None or isinstance(default, bool) or default is argparse.SUPPRESS
                or "default" in text.lower() or "%(default)" in text):
            return action.help
        return f"{text} (default: %(default)s)".strip()


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
    for verb_parser in sub.choices.values():  # one rule for every verb's --help
        verb_parser.formatter_class = DefaultsHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that spin-wait steal the cores the pipeline's other stages need (one
    # torch training step here: 8 s spinning vs 0.6 s passive). Must precede importing torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_native_logs(verbose=args.verbose)  # before any verb imports cv2 or opens a capture
    _configure_logging(args.verbose)
    # Registers the engine builder with the runtime, so a stale engine can be rebuilt (torch-free).
    importlib.import_module("segrt.export.engine_from_onnx")
    try:
        rc = args.func(args)
    except SegrtError as err:
        if args.verbose:  # the full traceback, redacted, and still the error's own exit code
            _print_traceback(err)
        print(f"segrt {args.verb}: error: {err}", file=sys.stderr)
        return err.exit_code
    except ModuleNotFoundError as exc:
        if exc.name != "cv2" or args.verbose:
            raise
        print(f"segrt {args.verb}: error: OpenCV (cv2) is not installed ({OPENCV_HINT})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segrt {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or a library failure: Python's report and exit 1, but redacted
        _print_traceback(exc)
        return 1
    return int(rc or 0)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    threading.excepthook = _thread_excepthook


def _print_traceback(exc: BaseException) -> None:
    print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="", flush=True)


def _thread_excepthook(hook_args: threading.ExceptHookArgs) -> None:
    if hook_args.exc_type is SystemExit:
        return
    name = hook_args.thread.name if hook_args.thread is not None else "?"
    print(redact(f"Exception in thread {name}:"), file=sys.stderr)
    _print_traceback(hook_args.exc_value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
