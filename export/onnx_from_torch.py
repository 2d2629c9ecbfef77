"""PyTorch module -> ONNX file, with the exporter chosen per model and the choice recorded.

torch 2.14 offers two exporters: ``dynamo`` (``torch.export`` + onnxscript; the default, and
the maintained one) and ``torchscript`` (the tracer, ``dynamo=False``; deprecated, "will be
removed"). Measured on every semantic zoo model (benchmarks/export_table.py
--compare-exporters, 128x256 / 256x512): after segrt's graph passes both give the same node
count (DeepLabV3+ 4 fewer with dynamo) and the same numbers vs PyTorch; dynamo takes 1-3x
longer to export (LR-ASPP 6.0 s vs 1.9 s). But dynamo builds opset 18 and down-converts, and
the converter fails on ReduceMean (every model with global pooling: LR-ASPP, DeepLabV3,
DeepLabV3+), leaving opset 18 in the file; TensorRT 8.6 (JetPack 5) stops at opset 17. So the
written opset is checked, and a mismatch counts as a failed attempt. Preferences at the
default opset 17 (zoo ``exporter``): dynamo for FCN and U-Net, TorchScript for the pooled
models and for Mask R-CNN, which ``torch.export`` cannot take at all (data-dependent box
count in ``batched_nms``: GuardOnDataDependentSymNode). At opset >= 18 semantic models prefer
dynamo. ``exporter="auto"`` tries the preferred exporter, then the other one, and records
why it fell back (e.g. a model with data-dependent Python control flow).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from segrt.errors import ConfigError, ExportError, first_line
from segrt.export.graph_passes import DEFAULT_PASSES, run_passes

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "dynamo", "torchscript")
_OP_PATTERNS = (
    re.compile(r"operator '?([\w:.]+)'? to ONNX"),  # TorchScript: Exporting the operator 'aten::x' to ONNX ...
    re.compile(r"(aten::[A-Za-z0-9_.]+)"),
    re.compile(r"(aten\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)"),  # dynamo: aten.x.default
    re.compile(r"(torchvision::[A-Za-z0-9_]+)"),
)


@dataclass(frozen=True)
class DynamicAxes:
    """Which axes of which graph inputs/outputs are dynamic, by name (e.g. ``{"frame": {0: "N"}}``)."""

    inputs: Mapping[str, Mapping[int, str]]
    outputs: Mapping[str, Mapping[int, str]]


def op_name_from_error(text: str) -> str | None:
    """The first operator name an exporter error mentions, if any."""
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            return m.group(1)
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException) -> str:
    """The informative line of an exporter error (dynamo wraps the cause in a long banner)."""
    text = _ANSI.sub("", str(exc)).strip()
    if "## Exception summary" in text:
        for line in text.split("## Exception summary", 1)[1].splitlines():
            m = re.match(r"<class '[\w.]+'>: (.*)", line.strip())
            if m:
                return first_line(m.group(1), 240)
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("[", "-", "#")):
            return first_line(line, 240)
    return type(exc).__name__


@contextlib.contextmanager
def _os_output_captured():
    """Capture the process's stdout and stderr (fds 1 and 2) into a temp file.

    torch 2.14's TorchScript exporter turns its C++ ONNX log on whatever ``verbose`` says (its
    ``setup_onnx_logging`` tests a function object, always true) and prints the whole graph
    from C++ when an export fails; that must not reach the user's terminal.
    """
    import sys
    import tempfile

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if text:
                log.debug("exporter output:\n%s", text[-4000:])


def _export_once(module: torch.nn.Module, args: tuple, path: Path, exporter: str, *,
                 input_names: Sequence[str], output_names: Sequence[str], opset: int,
                 dynamic: DynamicAxes | None) -> None:
    kw: dict[str, Any] = dict(input_names=list(input_names), output_names=list(output_names),
                              opset_version=opset, verbose=False)
    if exporter == "dynamo":
        kw.update(dynamo=True, external_data=False, optimize=True)
        if dynamic is not None:
            dim = torch.export.Dim.DYNAMIC
            kw["dynamic_shapes"] = tuple(
                {ax: dim for ax in dynamic.inputs.get(name, {})} or None for name in input_names)
    else:
        kw.update(dynamo=False, do_constant_folding=True)
        if dynamic is not None:
            kw["dynamic_axes"] = {**{k: dict(v) for k, v in dynamic.inputs.items()},
                                  **{k: dict(v) for k, v in dynamic.outputs.items()}}
    # The exporters print progress to stdout and warn a lot; keep both out of the user's terminal.
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
            _os_output_captured(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), **kw)
    if out.getvalue():
        log.debug("%s exporter output:\n%s", exporter, out.getvalue())
    got = _default_opset(path)
    if got != opset:
        # dynamo builds opset 18 and down-converts; the converter fails on e.g. ReduceMean's
        # axes input (global pooling) and the file silently keeps 18, which TensorRT 8.6 rejects.
        raise ExportError(f"{exporter} exporter wrote opset {got}, not the requested {opset} "
                          "(version conversion failed)")


def _default_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def onnx_from_torch(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    out_path: str | Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = 17,
    exporter: str = "auto",
    preferred: str = "dynamo",  # zoo entries say which; Mask R-CNN: torchscript
    dynamic: DynamicAxes | None = None,
    passes: tuple[str, ...] = DEFAULT_PASSES,
) -> dict[str, Any]:
    """Export ``module`` (eval mode) to ``out_path`` and clean the graph; return the export record.

    The record holds ``exporter`` (the one that succeeded), ``attempts`` (each tried exporter
    and its error, if it failed: the fallback reason), ``opset``, ``passes`` (node counts) and
    ``seconds``. Raises :class:`ExportError` naming the failing operator when it can.
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter {exporter!r}", hint=f"use one of {', '.join(EXPORTERS)}")
    if not 13 <= opset <= 23:
        raise ConfigError(f"opset {opset} is not supported", hint="use an opset from 13 to 23; 17 is the default")
    out_path = Path(out_path)
    module = module.eval()
    order = [exporter] if exporter != "auto" else [preferred, "torchscript" if preferred == "dynamo" else "dynamo"]
    attempts: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for name in order:
        t = time.perf_counter()
        try:
            _export_once(module, example_inputs, out_path, name, input_names=input_names,
                         output_names=output_names, opset=opset, dynamic=dynamic)
        except Exception as exc:  # noqa: BLE001 - exporters raise anything; we report it as one line
            text = f"{exc}\n{exc.__cause__ or ''}"
            attempts.append({"exporter": name, "ok": False, "seconds": round(time.perf_counter() - t, 2),
                             "error": _first_line(exc), "op": op_name_from_error(text)})
            log.info("%s exporter failed: %s", name, attempts[-1]["error"])
            continue
        attempts.append({"exporter": name, "ok": True, "seconds": round(time.perf_counter() - t, 2)})
        break
    else:
        ops = [a["op"] for a in attempts if a.get("op")]
        op = f" at operator {ops[0]}" if ops else ""
        detail = "; ".join(f"{a['exporter']}: {a['error']}" for a in attempts)
        raise ExportError(f"ONNX export failed{op} ({detail})",
                          hint="replace the operator in the model, or try --opset 18 / another --exporter")
    used = attempts[-1]["exporter"]
    record: dict[str, Any] = {
        "exporter": used,
        "requested": exporter,
        "attempts": attempts,
        "fallback_reason": attempts[0]["error"] if len(attempts) > 1 else None,
        "opset": opset,
        "torch": torch.__version__,
    }
    record["passes"] = run_passes(out_path, passes)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record
