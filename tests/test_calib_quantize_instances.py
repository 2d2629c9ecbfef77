"""``segrt quantize --precision fp16`` on an instance bundle: the detection gate, its evidence rule,
and no overwrite on failure.

The bundle's graph returns fixed detections; with ``score_conv`` its scores pass through a Conv,
which the FP16 graph computes in FP16, so the scores drift by exactly their FP16 rounding.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from _runtime_helpers import instances_bundle
from segrt.calibration.api import quantize_bundle
from segrt.calibration.quantize_instances import detection_gate
from segrt.errors import AccuracyGateError, ConfigError
from segrt.runtime.bundle import Bundle

SIZE = 64
BOXES = [(4, 6, 20, 30), (30, 8, 50, 24), (10, 40, 40, 60)]
LABELS = [1, 1, 2]
SCORES = [0.9, 0.7, 0.3]
EVAL = f"synthetic://?size={SIZE}x{SIZE}&frames=12&seed=5"
FP16_DRIFT = max(abs(float(np.float16(s)) - float(np.float32(s))) for s in SCORES)


def _bundle(path, score_conv=True):
    masks = np.ones((3, 1, 28, 28), np.float32)
    return instances_bundle(path, SIZE, SIZE, BOXES, LABELS, SCORES, masks, rows=8, score_conv=score_conv)


def test_fp16_instance_bundle_passes_the_detection_gate_and_is_registered(tmp_path):
    b = _bundle(tmp_path / "b")
    rep = quantize_bundle(b.path, "fp16", eval_source=EVAL, eval_frames=12, progress=False)
    assert rep.passed and rep.evidence.frames == 12 and rep.evidence.reference_detections == 36
    for a in rep.agreements.values():
        assert a.match_rate == 1.0 and a.matched == 36 and a.mask_iou_mean == 1.0
    # ONNX Runtime's CPU provider may skip the FP16 rounding; the FP16-rounded run never does
    assert FP16_DRIFT > 0 and rep.agreements["fp16_rounded"].score_drift_max == pytest.approx(FP16_DRIFT, abs=1e-7)
    art = Bundle.open(b.path).manifest.artifacts["fp16"]
    assert art.accuracy["passed"] is True and art.accuracy["metric"] == "detection_agreement"
    assert art.accuracy["gate"] == {"min_match_rate": 0.95, "max_score_drift": 0.05, "min_mask_iou": 0.9}
    fp16 = onnx.load(str(b.path / art.path))
    conv = next(n for n in fp16.graph.node if n.op_type == "Conv")
    types = {i.name: i.data_type for i in fp16.graph.initializer}
    assert types[conv.input[1]] == onnx.TensorProto.FLOAT16  # the Conv really computes in FP16
    assert "detection gate: passed" in rep.to_text()


def test_a_failing_detection_gate_writes_nothing_and_never_overwrites(tmp_path):
    b = _bundle(tmp_path / "b")
    strict = detection_gate(max_score_drift=0.0)  # FP16 rounding of the scores exceeds it
    with pytest.raises(AccuracyGateError, match="detection gate") as err:
        quantize_bundle(b.path, "fp16", eval_source=EVAL, eval_frames=12, progress=False, detection_gate=strict,
                       max_fallback=0)
    assert not (b.path / "model.fp16.onnx").exists() and "fp16" not in Bundle.open(b.path).manifest.artifacts
    assert "FAIL" in err.value.report.to_text()
    # registered once (gate met), a later failing run with --no-gate keeps it unchanged
    quantize_bundle(b.path, "fp16", eval_source=EVAL, eval_frames=12, progress=False)
    before = (b.path / "model.fp16.onnx").read_bytes()
    with pytest.raises(AccuracyGateError, match="already exists"):
        quantize_bundle(b.path, "fp16", eval_source=EVAL, eval_frames=12, progress=False, detection_gate=strict,
                        enforce_gate=False, max_fallback=0)
    assert (b.path / "model.fp16.onnx").read_bytes() == before
    assert Bundle.open(b.path).manifest.artifacts["fp16"].accuracy["passed"] is True


def test_no_gate_registers_a_failing_fp16_as_failed(tmp_path):
    b = _bundle(tmp_path / "b")
    rep = quantize_bundle(b.path, "fp16", eval_source=EVAL, eval_frames=12, progress=False, enforce_gate=False,
                          detection_gate=detection_gate(max_score_drift=0.0), max_fallback=0)
    assert not rep.passed and rep.artifact is not None
    assert Bundle.open(b.path).manifest.artifacts["fp16"].accuracy["passed"] is False


def test_too_few_frames_is_too_little_evidence(tmp_path):
    b = _bundle(tmp_path / "b")
    few = f"synthetic://?size={SIZE}x{SIZE}&frames=3&seed=5"
    with pytest.raises(AccuracyGateError, match="too little evidence.*3 distinct"):
        quantize_bundle(b.path, "fp16", eval_source=few, eval_frames=3, progress=False)
    assert not (b.path / "model.fp16.onnx").exists()
    rep = quantize_bundle(b.path, "fp16", eval_source=few, eval_frames=3, progress=False, allow_small_eval=True)
    assert rep.passed and rep.evidence.shortfalls()


def test_gate_thresholds_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="min-mask-iou"):
        detection_gate(min_mask_iou=1.5)
    b = _bundle(tmp_path / "b", score_conv=False)
    with pytest.raises(ConfigError, match="--calib"):
        quantize_bundle(b.path, "int8", eval_source=EVAL, progress=False)


CALIB = f"synthetic://?size={SIZE}x{SIZE}&frames=20&seed=11"


def test_int8_quantizes_only_the_convolutions_and_passes_the_detection_gate(tmp_path):
    b = _bundle(tmp_path / "b")
    rep = quantize_bundle(b.path, "int8", calib=CALIB, calib_frames=20, eval_source=EVAL, eval_frames=12,
                          progress=False)
    (a,) = rep.agreements.values()
    assert rep.passed and a.match_rate == 1.0 and a.matched == 36
    assert 0 < a.score_drift_max <= 0.9 / 127 + 1e-6  # one INT8 step of the largest score at most
    art = Bundle.open(b.path).manifest.artifacts["int8"]
    assert art.accuracy["passed"] is True and art.details["op_types"] == ["Conv"]
    model = onnx.load(str(b.path / art.path))
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert all(producer[i].op_type == "DequantizeLinear" for i in conv.input[:2] if i in producer)
    assert conv.input[0] in producer  # the activation is quantized
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)  # FP32 remainder
    with pytest.raises(AccuracyGateError, match="detection gate"):
        quantize_bundle(_bundle(tmp_path / "c").path, "int8", calib=CALIB, calib_frames=20, eval_source=EVAL,
                        eval_frames=12, progress=False, detection_gate=detection_gate(max_score_drift=0.0),
                        max_fallback=0)
    assert not (tmp_path / "c" / "model.int8.onnx").exists()


def test_cli_takes_the_detection_gate_thresholds(tmp_path, capsys):
    from segrt.tools.cli import main

    b = _bundle(tmp_path / "b")
    args = ["quantize", str(b.path), "--precision", "fp16", "--eval", EVAL, "--eval-frames", "12", "--no-progress"]
    assert main([*args, "--max-score-drift", "0", "--max-fallback", "0"]) == 2
    assert "fp16_rounded" in capsys.readouterr().out and not (b.path / "model.fp16.onnx").exists()
    assert main([*args, "--max-score-drift", "0.001", "--min-match-rate", "1", "--min-mask-iou", "1"]) == 0
    assert Bundle.open(b.path).manifest.artifacts["fp16"].accuracy["gate"] == {
        "min_match_rate": 1.0, "max_score_drift": 0.001, "min_mask_iou": 1.0}


@pytest.mark.slow
def test_fp16_of_a_real_maskrcnn_goes_through_the_detection_gate(tmp_path):
    """Random weights give near-tied scores, so the figures are reported, not asserted against the gate."""
    from segrt.export.api import export_bundle

    b = export_bundle("maskrcnn_resnet50_fpn", tmp_path / "m", size=(128, 160), verify=False)
    rep = quantize_bundle(b.path, "fp16", eval_source="synthetic://?size=160x128&frames=10&seed=3", eval_frames=10,
                          progress=False, enforce_gate=False, allow_small_eval=True, max_fallback=0)
    print(rep.to_text())
    assert set(rep.agreements) == {"onnxruntime", "fp16_rounded"} and rep.artifact is not None
    art = Bundle.open(b.path).manifest.artifacts["fp16"]
    assert art.accuracy["passed"] == rep.passed and art.details["fp16_pass"]["fp16_nodes"] > 0


@pytest.mark.slow
def test_int8_of_a_real_maskrcnn_quantizes_its_convolutions(tmp_path):
    """Random weights: the gate's figures are reported, not asserted (8 synthetic calibration frames)."""
    from segrt.export.api import export_bundle

    b = export_bundle("maskrcnn_resnet50_fpn", tmp_path / "m", size=(128, 160), verify=False)
    rep = quantize_bundle(b.path, "int8", calib="synthetic://?size=160x128&frames=8&seed=4", calib_frames=8,
                          eval_source="synthetic://?size=160x128&frames=10&seed=3", eval_frames=10,
                          progress=False, enforce_gate=False, allow_small_eval=True, max_fallback=0)
    print(rep.to_text())
    art = Bundle.open(b.path).manifest.artifacts["int8"]
    assert art.details["quantized_nodes"] > 50 and art.details["remainder"] == "fp32"
    model = onnx.load(str(b.path / art.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "RoiAlign"} <= ops


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_the_sensitivity_fallback_keeps_the_drifting_convolution_in_fp32(tmp_path, precision):
    b = _bundle(tmp_path / "b")
    rep = quantize_bundle(b.path, precision, calib=CALIB if precision == "int8" else None, calib_frames=20,
                          eval_source=EVAL, eval_frames=12, progress=False,
                          detection_gate=detection_gate(max_score_drift=0.0))  # only an FP32 score meets it
    assert rep.passed and all(a.score_drift_max == 0.0 for a in rep.agreements.values())
    art = Bundle.open(b.path).manifest.artifacts[precision]
    assert art.details["excluded_by_fallback"] == ["conv_4"] and art.details["fallback"]["passed"] is True
    model = onnx.load(str(b.path / art.path))
    assert not any(n.op_type in ("QuantizeLinear", "Cast") for n in model.graph.node if n.name != "cast_0")
