"""The INT8 Q/DQ graph itself: symmetric, zero point 0, per-channel weights, I/O unchanged, runs in ORT."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from _calib_helpers import colour_net_onnx, io_signature, run
from segrt.calibration.collect import calibrate_ranges, tensors_to_calibrate
from segrt.calibration.fp16 import fp32_emulation_from_fp16
from segrt.calibration.graph import ai_onnx_opset
from segrt.calibration.qdq import (
    DEFAULT_QUANT_OPS,
    auto_excluded_nodes,
    int8_conversion,
    int8_onnx_from_fp32,
    prepare_fp32,
)


def _feeds(n, seed, h=48, w=64):
    from segrt.runtime.sources import open_source
    with open_source(f"synthetic://?size={2 * w}x{2 * h}&frames={n}&seed={seed}") as src:
        import cv2
        return [{"frame": cv2.resize(f.image, (w, h))[None]} for f in src]


@pytest.fixture(scope="module")
def calibrated():
    fp32 = colour_net_onnx(48, 64)
    prepared, note = prepare_fp32(fp32, min_opset=19)
    assert note is None
    ranges = calibrate_ranges(prepared, iter(_feeds(12, seed=1)), tensors_to_calibrate(prepared, DEFAULT_QUANT_OPS))
    return fp32, prepared, ranges


def _inits(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


@pytest.mark.parametrize("remainder, scale_dtype", [("fp16", np.float16), ("fp32", np.float32)])
def test_qdq_is_symmetric_per_channel_int8(calibrated, remainder, scale_dtype):
    fp32, prepared, ranges = calibrated
    q = int8_onnx_from_fp32(prepared, ranges, remainder=remainder)
    onnx.checker.check_model(q)
    inits = _inits(q)
    prod = _producers(q)
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and dqs
    for n in qs + dqs:
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name  # symmetric: zero point 0, int8
        assert inits[n.input[1]].dtype == scale_dtype
        assert (inits[n.input[1]] > 0).all()
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3
    for conv in convs:
        x_dq, w_dq = prod[conv.input[0]], prod[conv.input[1]]
        assert x_dq.op_type == "DequantizeLinear" and w_dq.op_type == "DequantizeLinear"
        assert inits[x_dq.input[1]].shape == ()  # activations: per tensor
        w = inits[w_dq.input[0]]
        assert w.dtype == np.int8 and w.min() >= -127  # symmetric weight range
        axis = next(a.i for a in w_dq.attribute if a.name == "axis")
        scale = inits[w_dq.input[1]]
        assert axis == 0 and scale.shape == (w.shape[0],)  # one scale per output channel
        # the bias stays floating point (TensorRT folds it; no int32 bias Q/DQ)
        assert conv.input[2] in inits and inits[conv.input[2]].dtype == scale_dtype
        # no output Q/DQ on convs: TensorRT fuses it from the consumer's input quantization
        assert all(n.op_type != "QuantizeLinear" for n in q.graph.node if conv.output[0] in n.input)
    assert io_signature(q) == io_signature(fp32)
    if remainder == "fp16":
        assert ai_onnx_opset(q) >= 19


def test_weights_dequantize_to_the_fp32_weights(calibrated):
    fp32, prepared, ranges = calibrated
    q = int8_onnx_from_fp32(prepared, ranges, remainder="fp32")
    inits, orig, prod = _inits(q), _inits(prepared), _producers(q)
    for conv in (n for n in q.graph.node if n.op_type == "Conv"):
        dq = prod[conv.input[1]]
        w8, scale = inits[dq.input[0]].astype(np.float32), inits[dq.input[1]]
        w = next(orig[k] for k in orig if dq.input[0].startswith(k) and orig[k].shape == w8.shape)
        deq = w8 * scale.reshape(-1, 1, 1, 1)
        # per channel, amax/127 steps: the error is at most half a step
        assert np.all(np.abs(deq - w) <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7)
        amax = np.abs(w).reshape(len(w), -1).max(1)
        live = amax > 0  # an all-zero channel may have any positive scale
        np.testing.assert_allclose(scale[live], amax[live] / 127, rtol=1e-6)


def test_activation_scales_come_from_the_calibration(calibrated):
    _, prepared, ranges = calibrated
    q = int8_onnx_from_fp32(prepared, ranges, remainder="fp32")
    inits = _inits(q)
    checked = 0
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in ranges.amax:
            assert float(inits[n.input[1]]) == pytest.approx(ranges.amax[n.input[0]] / 127, rel=1e-6)
            checked += 1
    assert checked >= 3


def test_fused_pre_and_post_processing_are_not_quantized(calibrated):
    _, prepared, ranges = calibrated
    auto = auto_excluded_nodes(prepared)
    ops = {n.name: n.op_type for n in prepared.graph.node}
    reasons = {ops[k]: v for k, v in auto.items()}
    assert reasons["Cast"] in ("fused preprocessing", "fused postprocessing")
    assert reasons["Sub"] == reasons["Div"] == reasons["Transpose"] == "fused preprocessing"
    assert reasons["ArgMax"] == "fused postprocessing"
    q = int8_onnx_from_fp32(prepared, ranges)
    prod = _producers(q)
    for n in q.graph.node:
        if n.op_type in ("Sub", "Div", "Transpose", "ArgMax", "Slice"):
            assert all(prod.get(x) is None or prod[x].op_type != "DequantizeLinear" for x in n.input), n.name
    # the uint8 input feeds the original Cast, and the mask comes from the original Cast
    (inp,) = [n for n in q.graph.node if "frame" in n.input]
    assert inp.op_type == "Cast"
    assert prod["mask"].op_type == "Cast"


def test_int8_runs_in_onnxruntime_and_agrees_with_fp32(calibrated):
    fp32, prepared, ranges = calibrated
    conv = int8_conversion(prepared, ranges, prepared=True)
    assert conv.remainder == "fp16" and conv.quantized_nodes >= 3
    same = total = 0
    for feed in _feeds(6, seed=99):  # held out: another seed than calibration
        ref = run(fp32, feed)[0]
        for model in (conv.model, fp32_emulation_from_fp16(conv.model)):
            out = run(model, feed)[0]
            assert out.dtype == np.uint8 and out.shape == ref.shape
            same += int((out == ref).sum())
            total += ref.size
    assert same / total >= 0.97


def test_excluded_node_keeps_float_inputs(calibrated):
    _, prepared, ranges = calibrated
    cls = next(n.name for n in prepared.graph.node if n.op_type == "Conv" and "cls" in n.name)
    conv = int8_conversion(prepared, ranges, exclude_nodes=[cls], prepared=True)
    prod = _producers(conv.model)
    node = next(n for n in conv.model.graph.node if n.name == cls)
    assert all(prod.get(x) is None or prod[x].op_type != "DequantizeLinear" for x in node.input)
    assert conv.requested_excluded == (cls,) and conv.quantized_nodes == 2
    with pytest.raises(Exception, match="unknown nodes"):
        int8_conversion(prepared, ranges, exclude_nodes=["no_such_node"], prepared=True)


def test_opset_below_19_keeps_fp32_remainder_with_a_reason(calibrated):
    fp32, _, ranges = calibrated
    prepared17, _ = prepare_fp32(fp32)  # no upgrade requested
    assert ai_onnx_opset(prepared17) == 17
    conv = int8_conversion(prepared17, ranges, prepared=True, remainder="fp16")
    assert conv.remainder == "fp32" and "opset" in conv.remainder_note
    scales = [numpy_helper.to_array(t) for t in conv.model.graph.initializer if t.name.endswith("_scale")]
    assert scales and all(s.dtype == np.float32 for s in scales)
    assert all(t.data_type != TensorProto.FLOAT16 for t in conv.model.graph.initializer)
