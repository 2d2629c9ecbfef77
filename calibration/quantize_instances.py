"""``segrt quantize --precision fp16|int8`` on an instance bundle (Mask R-CNN), behind the detection gate.

Flow, as for semantic bundles: held-out frames (never calibration frames) -> FP32 detections
-> the FP16 graph of :func:`~segrt.calibration.instances_fp16.instances_fp16_from_fp32`
(backbone, FPN and heads FP16; RoiAlign, NMS, TopK, box decoding and thresholds FP32) ->
its detections compared with FP32's by :func:`~segrt.calibration.detection_gate.detection_agreement`
-> the ONNX written and registered **only if it passes** (or when the gate is explicitly
disabled; a failing result never replaces an existing artifact).

The FP16 graph is judged twice, as the semantic gate does: as ONNX Runtime's CPU provider runs
it, and on its FP32 emulation with every FP16 tensor rounded to FP16 (what a TensorRT FP16
engine computes; the CPU provider skips most FP16 rounding). Both must meet the gate.
INT8 calibrates on ``calib`` with the semantic machinery and puts Q/DQ on the convolutions
only (:data:`INT8_OPS`), the remainder FP32, so ONNX Runtime's run is the one judged.
Below the gate, the sensitivity fallback (as for semantic models) ranks the convolutions by
how much keeping each in FP32 raises the gate margin on a few frames, and keeps the worst
(at most ``max_fallback``) in FP32 until the gate is met.

Evidence: the gate passes only on at least :data:`~segrt.calibration.evidence.MIN_EVAL_FRAMES`
distinct held-out frames holding at least :data:`MIN_REFERENCE_DETECTIONS` FP32 detections
(``allow_small_eval`` accepts less explicitly); with less, nothing is converted.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from segrt.calibration.detection_gate import DetectionAgreement, DetectionGate, detection_agreement
from segrt.calibration.evaluate import EvalSet, collect_eval_set, session
from segrt.calibration.evidence import MIN_EVAL_FRAMES
from segrt.calibration.fp16 import fp32_emulation_from_fp16
from segrt.calibration.gate import evidence_message, refuse_to_replace
from segrt.calibration.instances_fp16 import fp16_nodes, instances_fp16_from_fp32
from segrt.calibration.progress import progress_bar
from segrt.calibration.quantize_steps import conversion_errors
from segrt.calibration.sampling import SplitPlan, plan_split
from segrt.calibration.sensitivity import sensitivity_fallback
from segrt.errors import AccuracyGateError, ConfigError
from segrt.runtime.bundle import Bundle, onnx_filename
from segrt.runtime.fsutil import atomic_path, sha256_file
from segrt.runtime.manifest import Artifact, plain_json
from segrt.runtime.redact import redact

MIN_REFERENCE_DETECTIONS = 10  # FP32 detections over all held-out frames, for a match rate to mean anything
GATE_RUNS = ("onnxruntime", "fp16_rounded")  # the two ways the FP16 graph is run against FP32
SENSITIVITY_FRAMES = 8  # held-out frames the fallback ranks the layers on


def detection_gate(min_match_rate: float | None = None, max_score_drift: float | None = None,
                   min_mask_iou: float | None = None) -> DetectionGate:
    """A checked :class:`DetectionGate`; None keeps each default (0.95, 0.05, 0.90)."""
    base = DetectionGate()
    vals = {"min_match_rate": base.min_match_rate if min_match_rate is None else min_match_rate,
            "max_score_drift": base.max_score_drift if max_score_drift is None else max_score_drift,
            "min_mask_iou": base.min_mask_iou if min_mask_iou is None else min_mask_iou}
    for name, v in vals.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a fraction in [0, 1], got {v!r}")
    return DetectionGate(**{k: float(v) for k, v in vals.items()})


@dataclass(frozen=True)
class DetectionEvidence:
    """Distinct held-out frames and the FP32 detections on them."""

    frames: int
    reference_detections: int

    def shortfalls(self) -> list[str]:
        out = []
        if self.frames < MIN_EVAL_FRAMES:
            out.append(f"{self.frames} distinct evaluation frame{'s' * (self.frames != 1)} "
                       f"(minimum {MIN_EVAL_FRAMES})")
        if self.reference_detections < MIN_REFERENCE_DETECTIONS:
            out.append(f"{self.reference_detections} FP32 detections on them (minimum {MIN_REFERENCE_DETECTIONS})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"distinct_frames": self.frames, "reference_detections": self.reference_detections,
                "shortfalls": self.shortfalls(),
                "minimum": {"frames": MIN_EVAL_FRAMES, "reference_detections": MIN_REFERENCE_DETECTIONS}}


@dataclass
class InstanceQuantizeReport:
    """What :func:`quantize_instance_bundle` did. ``artifact`` is the registered artifact (or None)."""

    bundle: os.PathLike[str] | str
    precision: str
    gate: DetectionGate
    agreements: Mapping[str, DetectionAgreement]  # one per :data:`GATE_RUNS`
    evidence: DetectionEvidence
    eval_info: Mapping[str, Any]
    allow_small_eval: bool = False
    artifact: Artifact | None = None
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def detections_passed(self) -> bool:
        return all(a.passes(self.gate) for a in self.agreements.values())

    @property
    def passed(self) -> bool:
        return self.detections_passed and (self.allow_small_eval or not self.evidence.shortfalls())

    def to_manifest(self) -> dict[str, Any]:
        """The ``Artifact.accuracy`` record (plain JSON types)."""
        return {"precision": self.precision, "metric": "detection_agreement", "passed": self.passed,
                "gate": dataclasses.asdict(self.gate),
                "runs": {k: dataclasses.asdict(a) for k, a in self.agreements.items()},
                "eval": dict(self.eval_info), "evidence": self.evidence.to_dict(),
                "allow_small_eval": self.allow_small_eval}

    def to_text(self) -> str:
        g = self.gate
        lines = [f"segrt quantize: {self.precision} for {self.bundle}",
                 f"evaluation: {self.eval_info.get('frames')} held-out frames ({self.eval_info.get('held_out')}), "
                 f"{self.evidence.reference_detections} FP32 detections",
                 "",
                 f"{'run':<14} {'matched':>9} {'match rate':>10} {'score drift max':>15} {'mask IoU mean':>13}",
                 f"{'gate':<14} {'':>9} {'>= ' + format(g.min_match_rate, '.3f'):>10} "
                 f"{'<= ' + format(g.max_score_drift, '.3f'):>15} {'>= ' + format(g.min_mask_iou, '.3f'):>13}"]
        for name, a in self.agreements.items():
            lines.append(f"{name:<14} {f'{a.matched}/{a.reference_detections}':>9} {a.match_rate:>10.3f} "
                         f"{a.score_drift_max:>15.4f} {a.mask_iou_mean:>13.3f}"
                         + ("" if a.passes(g) else "  FAIL"))
        lines.append(f"detection gate: {'passed' if self.passed else 'FAILED'}")
        if self.artifact is not None:
            lines.append(f"wrote {self.artifact.path} (sha256 {self.artifact.sha256[:12]})"
                         + ("" if self.passed else "  [gate FAILED, registered because the gate was disabled]"))
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"done in {self.seconds:.1f} s")
        return "\n".join(lines)


def _detections_of(model: onnx.ModelProto, eval_set: EvalSet, threads: int | None) -> list[dict[str, np.ndarray]]:
    sess = session(model, threads)
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, {eval_set.input_name: x}))) for x in eval_set.inputs]


def _count(outputs: Sequence[Mapping[str, np.ndarray]], names: Sequence[str]) -> int:
    if len(names) > 4:
        return int(sum(int(np.asarray(o[names[4]]).reshape(-1)[0]) for o in outputs))
    return int(sum(len(o[names[2]]) for o in outputs))


def quantize_instance_bundle(b: Bundle, precision: str, *, calib: str | None = None, calib_frames: int = 200,
                             eval_source: str | None = None, eval_frames: int = 50, method: str = "minmax",
                             gate: DetectionGate = DetectionGate(), enforce_gate: bool = True,
                             allow_small_eval: bool = False, threads: int | None = None,
                             progress: bool = True, max_fallback: int = 8) -> InstanceQuantizeReport:
    """The FP16 ONNX of the instance bundle ``b``, compared with FP32 by detections, registered if it passes."""
    t0 = time.perf_counter()
    if precision not in ("fp16", "int8"):
        raise ConfigError(f"--precision {precision} is not available for instance bundles", hint="use fp16 or int8")
    if precision == "int8" and not calib:
        raise ConfigError("INT8 needs calibration frames: pass --calib SOURCE",
                          hint="a video, image folder or camera of your scenes; segrt never calibrates on random data")
    m = b.manifest
    fp32_model = onnx.load(str(b.onnx_path("fp32", verify=True)))
    warnings: list[str] = []
    if not calib and not eval_source:
        eval_source = f"synthetic://?size={m.input.width}x{m.input.height}&frames={max(eval_frames, 2)}&seed=9173"
        warnings.append(f"no --eval/--calib source: FP16 was checked on {eval_source}; "
                        "pass --eval with your own footage to check it on your scenes")
    plan = (plan_split(calib, eval_source, calib_frames, eval_frames) if calib else
            SplitPlan(str(eval_source), None, str(eval_source), None, f"evaluation source {redact(eval_source)}"))
    bar = progress_bar(eval_frames, "reading held-out frames", progress)
    eval_set = collect_eval_set(m, plan.eval_uri, eval_frames, index_range=plan.eval_range, on_frame=bar.update)
    bar.close()
    names = m.output.names
    reference = _detections_of(fp32_model, eval_set, threads)
    evidence = DetectionEvidence(len(eval_set), _count(reference, names))
    if evidence.shortfalls() and enforce_gate and not allow_small_eval:
        raise AccuracyGateError(evidence_message(evidence.shortfalls()) + f"; {onnx_filename(precision)} was not "
                                "written", hint="give more varied --eval frames with objects the model detects, "
                                                "or accept it explicitly with --allow-small-eval")
    build, candidates, calibration = _builder(precision, fp32_model, b, plan, calib_frames, method, threads, progress)
    frame_size = (m.input.width, m.input.height)

    def agreements_on(runs: Mapping[str, onnx.ModelProto], idx: Sequence[int]) -> dict[str, DetectionAgreement]:
        frames = EvalSet([eval_set.inputs[i] for i in idx], [None] * len(idx), eval_set.coverage, eval_set.input_name)
        ref = [reference[i] for i in idx]
        return {k: detection_agreement(ref, _detections_of(model, frames, threads), frame_size, names=names)
                for k, model in runs.items()}

    every = range(len(eval_set))
    artifact_model, runs, summary = build(())
    agreements = agreements_on(runs, every)
    fallback = None
    if gate_margin(agreements, gate) < 0 and max_fallback > 0 and candidates:
        few = sorted(set(np.linspace(0, len(eval_set) - 1, min(SENSITIVITY_FRAMES, len(eval_set))).round()
                         .astype(int).tolist()))
        cache: dict[tuple[str, ...], tuple] = {}

        def built(ex: tuple[str, ...]) -> tuple:
            if ex not in cache:
                cache.clear()  # only the latest is reused (the full score right after the subset score)
                cache[ex] = build(ex)
            return cache[ex]

        fallback = sensitivity_fallback(
            candidates, lambda ex: gate_margin(agreements_on(built(ex)[1], few), gate),
            lambda ex: gate_margin(agreements_on(built(ex)[1], every), gate), 0.0, max_fallback=max_fallback,
            baseline=gate_margin(agreements, gate), progress=progress)
        if fallback.excluded:
            artifact_model, runs, summary = built(tuple(fallback.excluded))
            agreements = agreements_on(runs, every)
        summary = {**summary, "fallback": {**fallback.to_dict(), "score": "detection gate margin (>= 0 passes)"},
                   "excluded_by_fallback": list(fallback.excluded)}
    eval_info = {**plan.to_dict(), "frames": len(eval_set), "eval_coverage": eval_set.coverage.to_dict()}
    report = InstanceQuantizeReport(b.path, precision, gate, agreements, evidence, eval_info, allow_small_eval,
                                    warnings=warnings)
    report.details = {**summary, "calibration": calibration, "fp32_sha256": m.artifacts["fp32"].sha256,
                      "gate": dataclasses.asdict(gate),
                      "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    target = b.path / onnx_filename(precision)
    if not report.passed:
        if enforce_gate:
            failing = [k for k, a in agreements.items() if not a.passes(gate)]
            err = AccuracyGateError(f"{precision} detections drift from FP32 beyond the detection gate "
                                    f"({', '.join(failing)}); {target.name} was not written",
                                    hint="check it on your own --eval frames, or accept it explicitly with --no-gate")
            err.report = report  # type: ignore[attr-defined]
            raise err
        refuse_to_replace(b.path, precision, target, precision in m.artifacts, report)
        warnings.append("detection gate FAILED and was overridden: the artifact is registered with passed=false")
    with atomic_path(target) as tmp:
        onnx.save(artifact_model, str(tmp))
    art = Artifact(precision=precision, path=target.name, sha256=sha256_file(target),
                   accuracy=plain_json(report.to_manifest()), details=plain_json(report.details))
    b.update(m.with_artifact(art))
    report.artifact = art
    report.seconds = time.perf_counter() - t0
    return report


def gate_margin(agreements: Mapping[str, DetectionAgreement], gate: DetectionGate) -> float:
    """How far the worst run is inside the gate (>= 0: every run passes), for the sensitivity fallback."""
    return min(min(a.match_rate - gate.min_match_rate, gate.max_score_drift - a.score_drift_max,
                   a.mask_iou_mean - gate.min_mask_iou) for a in agreements.values())


def _builder(precision: str, fp32_model: onnx.ModelProto, b: Bundle, plan: SplitPlan, calib_frames: int, method: str,
             threads: int | None, progress: bool):
    """``build(excluded) -> (artifact, runs judged, summary)``, the fallback's candidates, calibration provenance."""
    if precision == "fp16":
        def build(ex: tuple[str, ...]):
            conv = conversion_errors("FP16")(instances_fp16_from_fp32)(fp32_model, ex)
            return conv.model, {"onnxruntime": conv.model, "fp16_rounded": fp32_emulation_from_fp16(conv.model)}, \
                {"fp16_pass": conv.summary()}
        low = fp16_nodes(fp32_model)
        return build, [n.name for n in fp32_model.graph.node if n.op_type == "Conv" and n.name in low], None
    from segrt.calibration.qdq import auto_excluded_nodes, int8_conversion, prepare_fp32, quantizable_nodes
    from segrt.calibration.quantize_steps import calibrate_for_quantize

    prepared, _ = prepare_fp32(fp32_model)
    ranges, calibration = calibrate_for_quantize(prepared, b, plan, calib_frames, method, INT8_OPS, threads, progress)

    def build(ex: tuple[str, ...]):
        conv = conversion_errors("INT8")(int8_conversion)(prepared, ranges, exclude_nodes=ex, op_types=INT8_OPS,
                                                           remainder="fp32", prepared=True)
        details = {**conv.details(), "method": method, "op_types": list(INT8_OPS), "per_channel": True,
                   "symmetric": True}
        return conv.model, {"onnxruntime": conv.model}, details  # FP32 remainder: ORT computes what TensorRT does
    return build, quantizable_nodes(prepared, INT8_OPS, exclude=auto_excluded_nodes(prepared)), calibration


INT8_OPS = ("Conv",)  # Q/DQ on the convolutions only: RoiAlign, NMS, TopK and box decoding stay FP32
