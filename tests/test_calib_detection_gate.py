"""The detection gate's comparison: match rate, score drift and mask IoU on known detections."""
from __future__ import annotations

import numpy as np
import pytest

from segrt.calibration.detection_gate import DetectionGate, detection_agreement

SIZE = (64, 64)  # (w, h) of the model input


def _frame(boxes, labels, scores, masks=None, rows=10):
    k = len(scores)
    out = {"boxes": np.zeros((rows, 4), np.float32), "labels": np.zeros(rows, np.int64),
           "scores": np.zeros(rows, np.float32), "masks": np.zeros((rows, 1, 28, 28), np.float32),
           "num_detections": np.array([k], np.int64)}
    if k:
        out["boxes"][:k] = boxes
        out["labels"][:k] = labels
        out["scores"][:k] = scores
        out["masks"][:k] = masks if masks is not None else 1.0
    return out


REF = _frame([[4, 4, 20, 20], [30, 30, 60, 60]], [1, 2], [0.9, 0.8])


def test_identical_detections_agree_fully():
    a = detection_agreement([REF, _frame([], [], [])], [REF, _frame([], [], [])], SIZE)
    assert (a.matched, a.match_rate, a.score_drift_max, a.mask_iou_mean) == (2, 1.0, 0.0, 1.0)
    assert a.passes()


def test_a_missed_detection_and_a_wrong_label_lower_the_match_rate():
    missed = _frame([[4, 4, 20, 20]], [1], [0.9])
    relabelled = _frame([[4, 4, 20, 20], [30, 30, 60, 60]], [1, 3], [0.9, 0.8])
    assert detection_agreement([REF], [missed], SIZE).match_rate == pytest.approx(0.5)
    a = detection_agreement([REF], [relabelled], SIZE)
    assert a.match_rate == pytest.approx(0.5) and not a.passes()


def test_score_drift_and_mask_iou_of_matched_pairs():
    half = np.zeros((2, 1, 28, 28), np.float32)
    half[:, :, :, :14] = 1.0  # left half of each box
    got = _frame([[4, 4, 20, 20], [31, 30, 60, 60]], [1, 2], [0.85, 0.7], masks=half)
    a = detection_agreement([REF], [got], SIZE)
    assert a.matched == 2 and a.score_drift_max == pytest.approx(0.1, abs=1e-6)
    assert a.score_drift_mean == pytest.approx(0.075, abs=1e-6)
    assert 0.45 < a.mask_iou_min <= a.mask_iou_mean < 0.55  # half of each box
    assert not a.passes() and a.passes(DetectionGate(min_match_rate=1.0, max_score_drift=0.11, min_mask_iou=0.45))


def test_a_box_below_the_iou_threshold_is_not_a_match():
    shifted = _frame([[12, 12, 28, 28], [30, 30, 60, 60]], [1, 2], [0.9, 0.8])  # IoU 1/7 with the first
    assert detection_agreement([REF], [shifted], SIZE).matched == 1


@pytest.mark.slow
def test_fp16_maskrcnn_keeps_detection_logic_fp32_and_parses_everywhere(tmp_path):
    """Random weights: the agreement figures are printed, not gated (their scores are near ties)."""
    import onnx
    import onnxruntime as ort

    from segrt.calibration.instances_fp16 import instances_fp16_from_fp32
    from segrt.export.api import export_bundle
    from segrt.export.trt_opcheck import check_releases

    b = export_bundle("maskrcnn_resnet50_fpn", tmp_path / "m", size=(128, 160), verify=False)
    fp32 = onnx.load(str(b.onnx_path("fp32")))
    conv = instances_fp16_from_fp32(fp32)
    graph = onnx.shape_inference.infer_shapes(conv.model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    ops = {}
    for n in graph.node:
        ops.setdefault(n.op_type, set()).add(types.get(n.input[0]))
    assert ops["Conv"] == {onnx.TensorProto.FLOAT16} and ops["If"] == {onnx.TensorProto.BOOL}
    for op in ("RoiAlign", "TopK", "Exp"):  # NonMaxSuppression sits in an If, which stays FP32
        assert ops[op] == {onnx.TensorProto.FLOAT}, op
    assert all(not v for v in check_releases(conv.model).values())
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for m in (fp32, conv.model)]
    frame = np.random.default_rng(0).integers(0, 256, (1, 128, 160, 3), dtype=np.uint8)
    names = [o.name for o in sessions[0].get_outputs()]
    ref, got = ([dict(zip(names, s.run(None, {"frame": frame})))] for s in sessions)
    a = detection_agreement(ref, got, (160, 128))
    print(a)
    assert a.reference_detections > 0 and a.matched > 0 and 0.0 <= a.mask_iou_mean <= 1.0
