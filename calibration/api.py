"""``segrt quantize`` as a function: FP16 or INT8 ONNX for a bundle, behind an accuracy gate.

Flow: pick held-out evaluation frames (never the calibration frames) -> FP32 reference
masks -> convert (FP16 cast, or streamed calibration + INT8 Q/DQ) -> compare with FP32
(and with labels when the source has them) -> if below the gate, the sensitivity fallback
excludes the worst layers and re-checks -> write the ONNX atomically and register it in
the manifest with its accuracy report and calibration provenance, **only if it passes**
(or when the caller explicitly disables the gate).

Accuracy of the lower precision is measured twice: as ONNX Runtime's CPU provider runs
the artifact, and on an FP32 emulation in which every FP16 tensor is rounded to FP16
(see :func:`segrt.calibration.fp16.fp32_emulation_from_fp16`): ONNX Runtime's CPU provider
skips most FP16 rounding, so the emulation is the one that predicts a TensorRT FP16/INT8
engine. The gate takes the lower of the two.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import onnx

from segrt.calibration.collect import METHODS
from segrt.calibration.detection_gate import DetectionGate
from segrt.calibration.cpu_variant import CpuVariantResult, cpu_variant, register_cpu_twins, register_cpu_variant
from segrt.calibration.evaluate import collect_eval_set
from segrt.calibration.evidence import evidence_from_masks
from segrt.calibration.fp16 import DEFAULT_KEEP_FP32_OPS, fp16_conversion, fp32_emulation_from_fp16, weights_note
from segrt.calibration.gate import (
    AccuracyReport,
    evidence_message,
    normalize_gate,
    normalize_miou_gate,
    refuse_to_replace,
)
from segrt.calibration.progress import progress_bar
from segrt.calibration.quantize_steps import Evaluator as _Evaluator
from segrt.calibration.quantize_steps import calibrate_for_quantize as _calibrate
from segrt.calibration.quantize_steps import conversion_errors as _conversion_errors
from segrt.calibration.qdq_cpu import CPU_PRECISION, CPU_QUANT_OPS, TARGETS
from segrt.calibration.qdq import (
    DEFAULT_QUANT_OPS,
    FP16_QDQ_OPSET,
    WEIGHTED_OPS,
    auto_excluded_nodes,
    int8_conversion,
    prepare_fp32,
    quantizable_nodes,
)
from segrt.calibration.sampling import SplitPlan, plan_split
from segrt.calibration.sensitivity import FallbackResult, sensitivity_fallback
from segrt.errors import AccuracyGateError, BundleError, ConfigError
from segrt.runtime.bundle import Bundle, onnx_filename
from segrt.runtime.fsutil import atomic_path, sha256_file
from segrt.runtime.manifest import Artifact, plain_json
from segrt.runtime.redact import redact

log = logging.getLogger("segrt.calibration")

QUANT_PRECISIONS = ("fp16", "int8")
MIN_CALIB_FRAMES_WARN = 100
RANGES_FILE = "calibration.int8.json"
SENSITIVITY_FRAMES = 8


@dataclass
class QuantizeReport:
    """What ``quantize_bundle`` did. ``artifact`` is the registered artifact."""

    bundle: Path
    precision: str
    artifact: Artifact | None
    accuracy: AccuracyReport
    excluded: list[str] = field(default_factory=list)
    calibration: dict | None = None
    fallback: FallbackResult | None = None
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu: CpuVariantResult | None = None  # the int8-cpu variant (--target cpu|both)

    @property
    def passed(self) -> bool:
        return self.accuracy.passed

    def to_text(self) -> str:
        lines = [f"segrt quantize: {self.precision} for {self.bundle}"]
        if self.calibration:
            c = self.calibration
            div = f", diversity {c['diversity']:.3f}" if c.get("diversity") is not None else ""
            lines.append(f"calibration: {c['method']} over {c['frames']} frames of {c['source']} "
                         f"({c.get('mode')}; {c['dedup_dropped']} near-duplicates dropped{div})")
        ev = self.accuracy.eval_info
        lines.append(f"evaluation: {ev.get('frames')} held-out frames ({ev.get('held_out')})"
                     + ("; labels available" if ev.get("labels") else ""))
        lines.append("")
        lines.append(self.accuracy.to_text())
        if self.fallback is not None and self.fallback.ranking:
            lines.append(self.fallback.to_text())
            if self.excluded:
                where = (f"{str(self.details.get('remainder', 'fp32')).upper()} instead of INT8"
                         if self.precision == "int8" else "FP32 instead of FP16")
                lines.append(f"cost: {len(self.excluded)} of {self.fallback.candidates} weighted layers run in {where}")
        d = self.details
        if self.precision == "int8":
            lines.append(f"layers: {d.get('quantized_nodes')} quantized to INT8, remainder in {d.get('remainder')}"
                         + (f" ({d['remainder_note']})" if d.get("remainder_note") else ""))
        fp16 = d.get("fp16_pass") or {}
        if fp16:
            ops = ", ".join(f"{k} x{v}" for k, v in fp16.get("fp32_ops", {}).items()) or "none"
            weights = weights_note(int(fp16.get("clamped_values") or 0), int(fp16.get("flushed_values") or 0))
            lines.append(f"FP16: {fp16.get('fp16_nodes')} nodes in FP16; kept in FP32: {ops}; "
                         f"{fp16.get('casts_inserted')} casts" + (f"; {weights}" if weights else ""))
        if self.artifact is not None:
            lines.append(f"wrote {self.bundle / self.artifact.path} (sha256 {self.artifact.sha256[:12]})"
                         + ("" if self.passed else "  [gate FAILED, registered because the gate was disabled]"))
        if self.cpu is not None:  # --target cpu: the "wrote" line above is the CPU graph's already
            lines.append(self.cpu.to_text(written_line=self.cpu.artifact is not self.artifact))
        for w in self.warnings:
            lines.append(f"warning: {w}")
        lines.append(f"done in {self.seconds:.1f} s")
        return "\n".join(lines)


# -----------------------------------------------------------------------------------------------
def _open(bundle: Bundle | str | os.PathLike[str]) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)


def _check_args(precision: str, method: str, calib: str | None, calib_frames: int, eval_frames: int,
                max_fallback: int) -> None:
    if precision not in QUANT_PRECISIONS:
        hint = ("fp32 is the exported model itself" if precision == "fp32"
                else f"use --precision {' or '.join(QUANT_PRECISIONS)}")
        raise ConfigError(f"unknown precision {precision!r}", hint=hint)
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if precision == "int8" and not calib:
        raise ConfigError("INT8 needs calibration frames: pass --calib SOURCE",
                          hint="a video, image folder, camera or synthetic:// URI of your scenes; "
                               "segrt never calibrates on random data")
    for name, v in (("--calib-frames", calib_frames), ("--eval-frames", eval_frames)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(max_fallback, bool) or not isinstance(max_fallback, int) or max_fallback < 0:
        raise ConfigError(f"--max-fallback must be >= 0, got {max_fallback!r}")


def _load_fp32(bundle: Bundle) -> tuple[onnx.ModelProto, Path]:
    path = bundle.onnx_path("fp32", verify=True)
    try:
        return onnx.load(str(path)), path
    except Exception as exc:  # protobuf DecodeError and friends
        raise BundleError(f"{path} is not a readable ONNX model ({exc})", hint="re-export the bundle") from exc


def _default_fp16_eval(bundle: Bundle, eval_frames: int) -> str:
    inp = bundle.manifest.input
    return f"synthetic://?size={inp.width}x{inp.height}&frames={max(eval_frames, 2)}&seed=9173"


def _versions() -> dict:
    import onnxruntime

    from segrt import __version__
    return {"segrt": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}



def quantize_bundle(bundle: Bundle | str | os.PathLike[str], precision: str, *, calib: str | None = None,
                    calib_frames: int = 200, method: str = "minmax", eval_source: str | None = None,
                    eval_frames: int = 50, gate: float | None = None, enforce_gate: bool = True,
                    max_fallback: int = 8, progress: bool = True, threads: int | None = None,
                    op_types: Sequence[str] = DEFAULT_QUANT_OPS, remainder: str = "fp16",
                    sensitivity_frames: int = SENSITIVITY_FRAMES, allow_small_eval: bool = False,
                    gate_miou: float | None = None, target: str = "both",
                    detection_gate: DetectionGate | None = None) -> QuantizeReport:
    """Make the ``precision`` ONNX of ``bundle``, gate it against FP32, and register it.

    ``gate`` is the minimum pixel agreement with FP32 (fraction or percent; default 99.9% for
    FP16, 99.0% for INT8). Below it, after the fallback, AccuracyGateError is raised and
    nothing is written, unless ``enforce_gate=False``. ``calib`` is required for INT8;
    ``target`` (INT8 only): ``tensorrt`` the Q/DQ graph for TensorRT (``int8``), ``cpu`` the
    CPU graph (``int8-cpu``: FP32 remainder, types for this instruction set), ``both`` (default)
    the two from one calibration, the CPU one kept when it passes its gate;
    ``eval_source`` defaults to a held-out part of ``calib`` (for ``synthetic://``, another
    seed), and for FP16 without either to a synthetic scene at the model's size.

    The gate passes only on enough evidence (:mod:`segrt.calibration.evidence`: distinct
    held-out frames, FP32 pixels per class); with less, AccuracyGateError is raised before
    anything is converted, unless ``allow_small_eval`` (or ``enforce_gate=False``, which
    registers the result as failed). A failing result never replaces an existing artifact.
    ``gate_miou`` (mIoU points, e.g. 1.0) gates on the drop of mIoU against the evaluation
    source's labels; given alone, it replaces the agreement gate (pass ``gate`` for both).
    An instance bundle (FP16 only) is gated on detections instead (``detection_gate``; see
    :mod:`segrt.calibration.quantize_instances`) and returns an ``InstanceQuantizeReport``.
    """
    t0 = time.perf_counter()
    _check_args(precision, method, calib, calib_frames, eval_frames, max_fallback)
    if target not in TARGETS:
        raise ConfigError(f"unknown --target {target!r}", hint="use cpu, tensorrt or both")
    miou_gate = normalize_miou_gate(gate_miou)
    gate_value = 0.0 if miou_gate is not None and gate is None else normalize_gate(gate, precision)
    b = _open(bundle)
    if b.manifest.output.kind == "instances":  # detections gated, not pixels: calibration/quantize_instances.py
        from segrt.calibration.quantize_instances import quantize_instance_bundle
        return quantize_instance_bundle(b, precision, calib=calib, calib_frames=calib_frames, eval_source=eval_source,
                                        eval_frames=eval_frames, method=method,
                                        gate=detection_gate or DetectionGate(),
                                        enforce_gate=enforce_gate, allow_small_eval=allow_small_eval,
                                        threads=threads, progress=progress, max_fallback=max_fallback)
    if b.manifest.output.kind not in ("mask", "logits"):
        raise ConfigError(f"bundle {b.path} outputs {b.manifest.output.kind}; the accuracy gate compares "
                          "semantic masks", hint="quantize semantic or instance segmentation bundles")
    fp32_model, _ = _load_fp32(b)
    fp32_sha = b.manifest.artifacts["fp32"].sha256
    warnings: list[str] = []

    # -- held-out evaluation frames -------------------------------------------------------------
    if precision == "fp16" and not calib and not eval_source:
        eval_source = _default_fp16_eval(b, eval_frames)
        warnings.append(f"no --eval/--calib source: FP16 was checked on {eval_source}; "
                        "pass --eval with your own footage to check it on your scenes")
    if calib:
        plan = plan_split(calib, eval_source, calib_frames, eval_frames)
    else:  # FP16 without calibration frames: the evaluation source is used whole
        plan = SplitPlan(str(eval_source), None, str(eval_source), None, f"evaluation source {redact(eval_source)}")
    bar = progress_bar(eval_frames, "reading held-out frames", progress)
    eval_set = collect_eval_set(b.manifest, plan.eval_uri, eval_frames, index_range=plan.eval_range,
                                on_frame=bar.update)
    bar.close()
    if miou_gate is not None and not eval_set.has_labels:
        raise ConfigError(f"--gate-miou needs labels, and {redact(plan.eval_uri)} has none for this model's classes",
                          hint="pass --eval with a labelled dataset of the model's classes (voc://ROOT, "
                               "cityscapes://ROOT, ade20k://ROOT, or images/ + masks/)")
    if len(eval_set) < eval_frames:
        warnings.append(f"only {len(eval_set)} evaluation frames (asked {eval_frames})")
    evaluator = _Evaluator(b, eval_set, fp32_model, threads, progress, sensitivity_frames)
    evidence = evidence_from_masks(evaluator.ref, b.manifest.classes)
    if evidence.shortfalls() and enforce_gate and not allow_small_eval:
        clause = evidence.meaningless_clause()
        raise AccuracyGateError(evidence_message(evidence.shortfalls())
                                + (f"; {clause}" if clause else "")
                                + f"; {onnx_filename(precision)} was not written",
                                hint=("give more varied --eval frames" if precision == "fp16" else
                                      "give more varied --eval frames (or a longer --calib to hold out from)")
                                     + ", or accept it explicitly with --allow-small-eval")
    note = evidence.meaningless_note()
    if note:
        warnings.append(note)

    # -- the conversion, as a function of the excluded layers ------------------------------------
    calibration = None
    ranges = None
    if precision == "fp16":
        prepared, _ = prepare_fp32(fp32_model)

        @_conversion_errors("FP16")
        def build(exclude: tuple[str, ...]):
            conv = fp16_conversion(prepared, keep_fp32_nodes=exclude)
            return conv.model, fp32_emulation_from_fp16(conv.model), {"fp16_pass": conv.summary()}

        base_conv = _conversion_errors("FP16")(fp16_conversion)(prepared)
        candidates = [n.name for n in prepared.graph.node
                      if n.op_type in WEIGHTED_OPS and n.name not in base_conv.fp32_nodes]
    else:
        prepared, note = prepare_fp32(fp32_model, min_opset=FP16_QDQ_OPSET if remainder == "fp16" else None)
        if note:
            warnings.append(f"INT8 remainder stays FP32: {note}")
        # one calibration for both variants: the CPU graph quantizes more op types (CPU_QUANT_OPS)
        cpu_ops = CPU_QUANT_OPS if tuple(op_types) == DEFAULT_QUANT_OPS else tuple(op_types)
        calib_ops = tuple(op_types) if target == "tensorrt" else tuple(dict.fromkeys((*op_types, *cpu_ops)))
        ranges, calibration = _calibrate(prepared, b, plan, calib_frames, method, calib_ops, threads, progress)
        if calibration["frames"] < MIN_CALIB_FRAMES_WARN:
            warnings.append(f"only {calibration['frames']} calibration frames (< {MIN_CALIB_FRAMES_WARN}): "
                            "INT8 ranges may not cover your scenes; give a longer or more varied --calib")

        @_conversion_errors("INT8")
        def build(exclude: tuple[str, ...]):
            conv = int8_conversion(prepared, ranges, exclude_nodes=exclude, op_types=op_types,
                                   remainder=remainder, prepared=True)
            emu = fp32_emulation_from_fp16(conv.model) if conv.remainder == "fp16" else conv.model
            return conv.model, emu, conv.details()

        candidates = quantizable_nodes(prepared, WEIGHTED_OPS, exclude=auto_excluded_nodes(prepared))
        if target == "cpu":
            return _cpu_only(b, prepared, ranges, calibration, evaluator, plan, eval_set, gate_value, enforce_gate,
                             max_fallback, progress, threads, cpu_ops, method, fp32_sha, warnings, t0,
                             {"evidence": evidence, "allow_small_eval": allow_small_eval, "gate_miou_drop": miou_gate})

    artifact_model, emulated, details = build(())
    baseline = evaluator.agreement(emulated)
    fallback = None
    excluded: tuple[str, ...] = ()
    if baseline < gate_value and max_fallback > 0 and candidates:
        cache: dict[tuple[str, ...], onnx.ModelProto] = {}

        def emulated_for(ex: tuple[str, ...]) -> onnx.ModelProto:
            if ex not in cache:
                cache.clear()  # only the latest is reused (full_score right after subset_score)
                cache[ex] = build(ex)[1]
            return cache[ex]

        fallback = sensitivity_fallback(
            candidates, lambda ex: evaluator.agreement(emulated_for(ex), subset=True),
            lambda ex: evaluator.agreement(emulated_for(ex)), gate_value, max_fallback=max_fallback,
            baseline=baseline, progress=progress)
        excluded = tuple(fallback.excluded)
        if excluded:
            artifact_model, emulated, details = build(excluded)

    low_row = evaluator.row(precision, emulated, artifact_model)
    eval_info = {**plan.to_dict(), "frames": len(eval_set), "labels": eval_set.has_labels,
                 "eval_coverage": eval_set.coverage.to_dict(), "emulated_fp16_rounding": True}
    report = AccuracyReport(precision, gate_value, b.manifest.classes, [evaluator.fp32_row(), low_row], eval_info,
                            evidence=evidence, allow_small_eval=allow_small_eval, gate_miou_drop=miou_gate)
    if fallback is not None:
        details["fallback"] = fallback.to_dict()
    details.update({"fp32_sha256": fp32_sha, "excluded_by_fallback": list(excluded), "gate": gate_value,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "versions": _versions()})
    if precision == "int8":
        details.update({"method": method, "op_types": list(op_types), "per_channel": True, "symmetric": True,
                        "zero_point": 0, "activation_type": "int8", "weight_type": "int8"})
    result = QuantizeReport(b.path, precision, None, report, list(excluded), calibration, fallback, details, warnings,
                            seconds=time.perf_counter() - t0)

    if not report.miou_passed and enforce_gate:
        err = AccuracyGateError(report.miou_gate_text() + f"; {onnx_filename(precision)} was not written",
                                hint="try --method entropy/percentile, more varied --calib frames, or accept it "
                                     "explicitly with --no-gate")
        err.report = result  # type: ignore[attr-defined]
        raise err
    if not report.passed and enforce_gate:
        msg = (f"{precision} agrees with FP32 on {100 * (report.agreement or 0):.3f}% of pixels, below the gate of "
               f"{100 * gate_value:.3f}%")
        if fallback is not None and fallback.ranking:
            msg += f" even after excluding {len(excluded)} layer(s) (--max-fallback {max_fallback})"
        err = AccuracyGateError(msg + f"; {onnx_filename(precision)} was not written", hint=gate_hint(precision))
        err.report = result  # type: ignore[attr-defined]
        raise err
    if not report.passed:
        refuse_to_replace(b.path, precision, b.path / onnx_filename(precision), precision in b.manifest.artifacts,
                          result)
        why = (f"{100 * (report.agreement or 0):.3f}% < {100 * gate_value:.3f}%" if not report.agreement_passed
               else report.miou_gate_text() if not report.miou_passed
               else "too little evidence: " + "; ".join(report.evidence_shortfalls))
        warnings.append(f"gate FAILED ({why}) and was overridden: the artifact is registered with passed=false")

    # -- write: ranges, then the ONNX, then one manifest update ---------------------------------
    manifest = b.manifest
    if precision == "int8" and ranges is not None and calibration is not None:
        ranges_path = b.path / RANGES_FILE
        ranges.save(ranges_path)
        calibration.update({"ranges_file": RANGES_FILE, "ranges_sha256": sha256_file(ranges_path),
                            "eval": plan.to_dict()})
        manifest = manifest.replace(calibration=calibration)
    onnx_target = b.path / onnx_filename(precision)
    with atomic_path(onnx_target) as tmp:
        onnx.save(artifact_model, str(tmp))
    art = Artifact(precision=precision, path=onnx_filename(precision), sha256=sha256_file(onnx_target),
                   accuracy=report.to_manifest(), details=plain_json(details))
    b.update(manifest.with_artifact(art))
    result.artifact = art
    if precision == "int8" and target == "both" and ranges is not None:
        result.cpu = _cpu_beside(b, prepared, ranges, evaluator, eval_info, gate_value, max_fallback, progress,
                                 threads, cpu_ops, excluded, details, warnings,
                                 {"evidence": evidence, "allow_small_eval": allow_small_eval, "gate_miou_drop": miou_gate})
    result.seconds = time.perf_counter() - t0
    return result


def _cpu_shared_details(details: Mapping, gate_value: float, method: str, op_types: Sequence[str]) -> dict:
    keep = ("fp32_sha256", "created", "versions")
    return {**{k: details[k] for k in keep if k in details}, "gate": gate_value, "method": method,
            "op_types": list(op_types)}


def _cpu_beside(b: Bundle, prepared, ranges, evaluator, eval_info, gate_value, max_fallback, progress, threads,
                op_types, excluded, details, warnings, gate_evidence: Mapping) -> CpuVariantResult:
    """The int8-cpu variant from the ranges the TensorRT variant used; kept only if it passes."""
    cpu = _conversion_errors("CPU INT8")(cpu_variant)(
        b, prepared, ranges, evaluator, gate=gate_value, max_fallback=max_fallback, progress=progress,
        threads=threads, op_types=op_types, start_excluded=excluded, **gate_evidence)
    if cpu.passed:
        register_cpu_variant(b, cpu, plain_json(_cpu_shared_details(details, gate_value, details.get("method", ""),
                                                                    op_types)), plain_json(eval_info))
        cpu.twins = register_cpu_twins(b, evaluator.eval_set.inputs)
    else:
        warnings.append(f"{CPU_PRECISION} agrees with FP32 on {100 * (cpu.accuracy.agreement or 0):.3f}% of pixels, "
                        f"below the gate: not written (use --target cpu --no-gate to keep it anyway)")
    return cpu


def _cpu_only(b: Bundle, prepared, ranges, calibration, evaluator, plan, eval_set, gate_value, enforce_gate,
              max_fallback, progress, threads, op_types, method, fp32_sha, warnings, t0,
              gate_evidence: Mapping) -> QuantizeReport:
    """``--target cpu``: the int8-cpu variant alone, gated like int8; the ranges are saved for reuse."""
    cpu = _conversion_errors("CPU INT8")(cpu_variant)(
        b, prepared, ranges, evaluator, gate=gate_value, max_fallback=max_fallback, progress=progress,
        threads=threads, op_types=op_types, **gate_evidence)
    eval_info = {**plan.to_dict(), "frames": len(eval_set), "labels": eval_set.has_labels,
                 "eval_coverage": eval_set.coverage.to_dict()}
    cpu.accuracy.eval_info = eval_info
    details = {"fp32_sha256": fp32_sha, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "versions": _versions(), "method": method}
    result = QuantizeReport(b.path, CPU_PRECISION, None, cpu.accuracy, list(cpu.excluded), calibration,
                            cpu.fallback, {**cpu.details, **details}, warnings, cpu=cpu)
    if not cpu.passed and enforce_gate:
        err = AccuracyGateError(
            f"{CPU_PRECISION} agrees with FP32 on {100 * (cpu.accuracy.agreement or 0):.3f}% of pixels, below the "
            f"gate of {100 * gate_value:.3f}%; {onnx_filename(CPU_PRECISION)} was not written",
            hint=gate_hint("int8"))
        err.report = result  # type: ignore[attr-defined]
        raise err
    if not cpu.passed and CPU_PRECISION in b.manifest.artifacts:
        err = AccuracyGateError(f"{CPU_PRECISION} failed its gate and {onnx_filename(CPU_PRECISION)} already exists: "
                                "a failing result never replaces an artifact, so it was kept unchanged",
                                hint=f"to inspect the failing model, quantize a copy (cp -r {b.path} {b.path}-try) "
                                     "with --no-gate")
        err.report = result  # type: ignore[attr-defined]
        raise err
    if calibration is not None:
        ranges_path = b.path / RANGES_FILE
        ranges.save(ranges_path)
        calibration.update({"ranges_file": RANGES_FILE, "ranges_sha256": sha256_file(ranges_path),
                            "eval": plan.to_dict()})
        b.update(b.manifest.replace(calibration=calibration))
    result.artifact = register_cpu_variant(b, cpu, plain_json(_cpu_shared_details(details, gate_value, method, op_types)),
                                           plain_json(eval_info))
    cpu.twins = register_cpu_twins(b, evaluator.eval_set.inputs)  # registered: passed, or --no-gate
    result.seconds = time.perf_counter() - t0
    return result


def gate_hint(precision: str) -> str:
    """What to try after ``precision`` failed its gate: only options that apply to that precision."""
    if precision == "fp16":
        return ("try a larger --max-fallback (keeps the worst layers in FP32), check it on your own --eval "
                "frames, or accept it explicitly with --no-gate")
    return ("try --method entropy or percentile, a larger --max-fallback, more varied --calib frames, "
            "or accept it explicitly with --no-gate")


__all__ = ["QuantizeReport", "quantize_bundle", "DEFAULT_KEEP_FP32_OPS"]
