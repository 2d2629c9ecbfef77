"""Make, gate and register the ``int8-cpu`` artifact from ranges already calibrated.

``segrt quantize --precision int8 --target cpu|both`` calls :func:`cpu_variant` with the
prepared FP32 graph, the calibration ranges (computed once, shared with the TensorRT
variant) and the evaluator that holds the held-out frames and FP32 reference masks. The
variant goes through the same gate and sensitivity fallback as ``int8``; it is written
(atomically) and registered only when it passes, or when the gate is explicitly disabled.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import onnx

from segrt.calibration.collect import CalibrationRanges
from segrt.calibration.evaluate import compare_masks, predict_masks
from segrt.calibration.gate import AccuracyReport, PrecisionAccuracy
from segrt.calibration.progress import progress_bar
from segrt.calibration.qdq import DEFAULT_QUANT_OPS, WEIGHTED_OPS, auto_excluded_nodes, quantizable_nodes
from segrt.calibration.qdq_cpu import (
    CPU_PRECISION,
    CpuInt8Conversion,
    CpuQuantTypes,
    cpu_int8_conversion,
    cpu_quant_types,
    faster_format,
)
from segrt.calibration.sensitivity import FallbackResult, sensitivity_fallback
from segrt.errors import CalibrationError
from segrt.runtime.bundle import Bundle, onnx_filename
from segrt.runtime.fsutil import atomic_path, sha256_file
from segrt.runtime.machine import this_cpu
from segrt.runtime.manifest import Artifact


@dataclass
class CpuVariantResult:
    """What :func:`cpu_variant` made; ``artifact`` is None when it was not written."""

    accuracy: AccuracyReport
    details: dict
    format_ms: dict[str, float]
    excluded: list[str] = field(default_factory=list)
    fallback: FallbackResult | None = None
    artifact: Artifact | None = None
    model: onnx.ModelProto | None = None
    twins: dict[str, str] = field(default_factory=dict)  # unfused twins: precision -> what happened

    @property
    def passed(self) -> bool:
        return self.accuracy.passed

    def to_text(self, written_line: bool = True) -> str:
        d = self.details
        fmt = ", ".join(f"{k} {v:.1f} ms" for k, v in self.format_ms.items())
        acc = self.accuracy.agreement
        lines = [f"{CPU_PRECISION}: Q/DQ for ONNX Runtime/OpenVINO on the CPU, {d['activation_type'].upper()} "
                 f"activations / {d['weight_type'].upper()} per-channel weights ({d['types_reason']}), "
                 f"remainder FP32; {d['quantized_nodes']} nodes quantized",
                 f"{CPU_PRECISION}: format {d['format']} kept (measured here: {fmt})",
                 f"{CPU_PRECISION}: agreement with FP32 {100 * (acc or 0):.3f}% (gate {100 * self.accuracy.gate:.3f}%)"
                 + (f" after excluding {len(self.excluded)} layer(s)" if self.excluded else "")
                 + (" passed" if self.passed else " FAILED" if not self.accuracy.agreement_passed
                    else " FAILED (too little evidence, see the gate line)")]
        if self.artifact is not None and written_line:
            lines.append(f"{CPU_PRECISION}: wrote {self.artifact.path} (sha256 {self.artifact.sha256[:12]})")
        elif self.artifact is None:
            lines.append(f"{CPU_PRECISION}: not written (below the gate); the CPU runs fp32 or the int8 graph")
        lines += [f"{p}: {what}" for p, what in self.twins.items()]
        return "\n".join(lines)


def cpu_variant(bundle: Bundle, prepared: onnx.ModelProto, ranges: CalibrationRanges, evaluator: Any, *,
                gate: float, max_fallback: int, progress: bool, threads: int | None,
                op_types: Sequence[str] = DEFAULT_QUANT_OPS, start_excluded: Sequence[str] = (),
                types: CpuQuantTypes | None = None, evidence: Any = None, allow_small_eval: bool = False,
                gate_miou_drop: float | None = None,
                timer: Callable[..., float] | None = None) -> CpuVariantResult:
    """Build the CPU INT8 graph (faster format here), gate it like ``int8``; nothing is written.

    ``evaluator`` is the quantize evaluator (``eval_set``, ``ref``, ``manifest``,
    ``num_classes``, ``agreement(model, subset=)``). ``start_excluded`` are layers the
    TensorRT variant's fallback already took out.
    """
    types = types or cpu_quant_types(this_cpu())
    feed = {evaluator.eval_set.input_name: evaluator.eval_set.inputs[0]}

    def build(fmt: str, exclude: tuple[str, ...]) -> CpuInt8Conversion:
        return cpu_int8_conversion(prepared, ranges, types, fmt=fmt, exclude_nodes=exclude, op_types=op_types)

    excluded = tuple(start_excluded)
    kw = {"timer": timer} if timer is not None else {}
    conv, format_ms = faster_format(lambda fmt: build(fmt, excluded), feed, threads=threads, **kw)
    baseline = evaluator.agreement(conv.model)
    fallback = None
    if baseline < gate and max_fallback > 0:
        candidates = quantizable_nodes(prepared, WEIGHTED_OPS,
                                       exclude=list(auto_excluded_nodes(prepared)) + list(excluded))
        cache: dict[tuple[str, ...], onnx.ModelProto] = {}

        def model_for(ex: tuple[str, ...]) -> onnx.ModelProto:
            key = excluded + tuple(ex)
            if key not in cache:
                cache.clear()
                cache[key] = build(conv.format, key).model
            return cache[key]

        fallback = sensitivity_fallback(
            candidates, lambda ex: evaluator.agreement(model_for(ex), subset=True),
            lambda ex: evaluator.agreement(model_for(ex)), gate, max_fallback=max_fallback,
            baseline=baseline, progress=progress)
        if fallback.excluded:
            excluded = excluded + tuple(fallback.excluded)
            conv = build(conv.format, excluded)
    bar = progress_bar(len(evaluator.eval_set), f"evaluating {CPU_PRECISION}", progress)
    masks = predict_masks(conv.model, evaluator.manifest, evaluator.eval_set, threads, on_frame=bar.update)
    bar.close()
    n = evaluator.num_classes
    vs_fp32 = compare_masks(masks, evaluator.ref, n)
    row = PrecisionAccuracy(CPU_PRECISION, vs_fp32=vs_fp32,
                            vs_labels=compare_masks(masks, evaluator.eval_set.labels, n), ort_vs_fp32=vs_fp32)
    report = AccuracyReport(CPU_PRECISION, gate, evaluator.manifest.classes, [evaluator.fp32_row(), row],
                            {"frames": len(evaluator.eval_set), "labels": evaluator.eval_set.has_labels},
                            evidence=evidence, allow_small_eval=allow_small_eval, gate_miou_drop=gate_miou_drop)
    details = {**conv.details(), "format_ms": format_ms, "cpu": this_cpu().describe(),
               "excluded_by_fallback": list(excluded)}
    if fallback is not None:
        details["fallback"] = fallback.to_dict()
    return CpuVariantResult(report, details, format_ms, list(excluded), fallback, None, conv.model)


def register_cpu_variant(bundle: Bundle, result: CpuVariantResult, shared_details: Mapping[str, Any],
                         eval_info: Mapping[str, Any]) -> Artifact:
    """Write ``model.int8-cpu.onnx`` atomically and register it (the caller decided the gate)."""
    if result.model is None:
        raise CalibrationError("the CPU INT8 result has no model to write")
    result.accuracy.eval_info = dict(eval_info)
    target = bundle.path / onnx_filename(CPU_PRECISION)
    with atomic_path(target) as tmp:
        onnx.save(result.model, str(tmp))
    details = {**dict(shared_details), **result.details}
    art = Artifact(precision=CPU_PRECISION, path=onnx_filename(CPU_PRECISION), sha256=sha256_file(target),
                   accuracy=result.accuracy.to_manifest(), details=details)
    bundle.update(bundle.manifest.with_artifact(art))
    result.artifact = art
    return art


TWIN_MIN_AGREEMENT = 0.995  # the runtime multiplies by 1/std where the graph divides: a few pixels flip


def register_cpu_twins(bundle: Bundle, frames) -> dict[str, str]:
    """The unfused twins of fp32 and int8-cpu (see :mod:`segrt.calibration.unfuse`), each written
    only when it agrees with its fused graph through the runtime's pre/post. Returns
    precision -> what happened, for the report."""
    from segrt.calibration.unfuse import UNFUSED_SUFFIX, register_unfused_twin

    done: dict[str, str] = {}
    if not bundle.manifest.input.fused:
        return done
    for precision in ("fp32", CPU_PRECISION):
        if precision not in bundle.manifest.artifacts:
            continue
        try:
            art = register_unfused_twin(bundle, precision, frames, TWIN_MIN_AGREEMENT)
        except CalibrationError as exc:
            done[precision + UNFUSED_SUFFIX] = f"not made: {exc.message}"
            continue
        done[precision + UNFUSED_SUFFIX] = (
            f"wrote {art.path} (agrees with the fused graph on {100 * art.accuracy['twin_agreement']:.3f}%)"
            if art is not None else "not written: it disagreed with the fused graph")
    return done


__all__ = ["CpuVariantResult", "cpu_variant", "register_cpu_variant", "register_cpu_twins"]
