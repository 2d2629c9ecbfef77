"""Segmentation metrics against hand-computed examples, the gate's thresholds and its report."""
from __future__ import annotations

import numpy as np
import pytest

from segrt.calibration.gate import (
    DEFAULT_GATES,
    AccuracyReport,
    ConfusionMatrix,
    PrecisionAccuracy,
    normalize_gate,
    segmentation_metrics,
)
from segrt.errors import AccuracyGateError, ConfigError


def test_metrics_hand_computed_with_ignore_label():
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    ref = np.array([[0, 1, 1], [1, 2, 255]])  # 255 is ignored: 5 pixels count
    m = segmentation_metrics(pred, ref, 3)
    assert m["pixels"] == 5
    assert m["agreement"] == pytest.approx(4 / 5)
    # class 0: TP 1, pred 2, ref 1 -> 1/2; class 1: TP 2, pred 2, ref 3 -> 2/3; class 2: TP 1 -> 1/1
    assert m["per_class_iou"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_absent_class_has_no_iou_and_is_not_averaged():
    pred = np.array([0, 0, 2, 2])
    ref = np.array([0, 0, 2, 0])
    m = segmentation_metrics(pred, ref, 4)
    assert m["per_class_iou"][1] is None and m["per_class_iou"][3] is None
    assert m["per_class_iou"][0] == pytest.approx(2 / 3)
    assert m["per_class_iou"][2] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_prediction_outside_the_classes_is_wrong_not_ignored():
    pred = np.array([0, 9, 1])
    ref = np.array([0, 1, 1])
    m = segmentation_metrics(pred, ref, 2)
    assert m["agreement"] == pytest.approx(2 / 3)
    assert m["per_class_iou"][1] == pytest.approx(1 / 2)  # the 9 is a missed class-1 pixel


def test_perfect_and_accumulated_over_frames():
    cm = ConfusionMatrix(3)
    a = np.array([[0, 1], [2, 2]])
    cm.update(a, a)
    cm.update(np.array([[1, 1]]), np.array([[0, 1]]))
    m = cm.metrics()
    assert m["pixels"] == 6
    assert m["agreement"] == pytest.approx(5 / 6)
    # class 0: TP1 FN1 -> 1/2; class 1: TP2 FP1 -> 2/3; class 2: 2/2
    assert m["per_class_iou"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    with pytest.raises(ValueError):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize("given, expected", [(None, None), (99.5, 0.995), (0.995, 0.995), (1.0, 1.0), (100, 1.0)])
def test_gate_values(given, expected):
    assert normalize_gate(given, "int8") == pytest.approx(expected if expected is not None else DEFAULT_GATES["int8"])
    assert normalize_gate(None, "fp16") == 0.999


@pytest.mark.parametrize("bad", [0, -1, 100.5, float("nan"), "x"])
def test_bad_gate_values(bad):
    with pytest.raises(ConfigError):
        normalize_gate(bad, "int8")


def _report(agree_emulated: float, agree_ort: float, gate: float = 0.99) -> AccuracyReport:
    def d(a):
        return {"agreement": a, "miou": a - 0.01, "per_class_iou": [a, None], "pixels": 100}
    rows = [PrecisionAccuracy("fp32", vs_labels=d(0.8)),
            PrecisionAccuracy("int8", vs_fp32=d(agree_emulated), vs_labels=d(0.79), ort_vs_fp32=d(agree_ort))]
    return AccuracyReport("int8", gate, ("bg", "thing"), rows, {"frames": 3})


def test_gate_takes_the_lower_of_emulated_and_onnxruntime():
    ok = _report(0.995, 0.992)
    assert ok.passed and ok.agreement == pytest.approx(0.992)
    ok.check()
    bad = _report(0.995, 0.985)
    assert not bad.passed
    with pytest.raises(AccuracyGateError, match="98.50%.*99.000%"):
        bad.check()


def test_manifest_record_and_table():
    rec = _report(0.995, 0.993).to_manifest()
    assert rec["passed"] is True and rec["gate"] == 0.99
    assert rec["agreement"] == pytest.approx(0.993)
    assert rec["miou_vs_labels"] == pytest.approx(0.78)
    assert rec["fp32_miou_vs_labels"] == pytest.approx(0.79)
    assert rec["miou_drop_vs_labels"] == pytest.approx(0.01)
    assert rec["per_class_iou_vs_fp32"] == {"bg": pytest.approx(0.995), "thing": None}
    text = _report(0.995, 0.993).to_text()
    assert "fp32" in text and "int8" in text and "PASSED" in text and "mIoU vs labels" in text
