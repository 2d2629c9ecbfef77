"""The FP16 pass: I/O kept, sensitive ops kept in FP32, initializers converted, agreement with FP32."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _calib_helpers import colour_net_onnx, initializer, io_signature, run
from segrt.calibration.fp16 import (
    FP16_MAX,
    fp16_conversion,
    fp16_onnx_from_fp32,
    fp32_emulation_from_fp16,
)
from segrt.tools.tiny_model import reference_logits, tiny_segmentation_onnx


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {vi.name: vi.type.tensor_type.elem_type
           for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    out.update({t.name: t.data_type for t in model.graph.initializer})
    return out


def _frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    from segrt.runtime.sources import open_source
    with open_source(f"synthetic://?size={w}x{h}&frames={n}&seed={seed}") as src:
        return [f.image[None] for f in src]


def test_fused_graph_keeps_io_and_agrees_with_fp32():
    fp32 = colour_net_onnx(48, 64)
    conv = fp16_conversion(fp32)
    fp16 = conv.model
    onnx.checker.check_model(fp16)
    assert io_signature(fp16) == io_signature(fp32)  # uint8 NHWC in, uint8 mask out
    same = total = 0
    for x in _frames(6, 48, 64):
        a = run(fp32, {"frame": x})[0]
        b = run(fp16, {"frame": x})[0]
        e = run(fp32_emulation_from_fp16(fp16), {"frame": x})[0]
        assert b.dtype == np.uint8 and b.shape == a.shape == (1, 48, 64)
        same += int((a == e).sum()) + int((a == b).sum())
        total += 2 * a.size
    assert same / total >= 0.999
    # every conv weight is FP16 now; the conv runs in FP16
    convs = [n for n in fp16.graph.node if n.op_type == "Conv"]
    assert convs and all(initializer(fp16, n.input[1]).dtype == np.float16 for n in convs)
    assert conv.fp16_nodes >= 5 and conv.initializers_converted >= 6


def test_preprocessing_and_resize_scales_stay_fp32():
    fp16 = fp16_onnx_from_fp32(colour_net_onnx(48, 64))
    types = _types(fp16)
    by_op = {}
    for n in fp16.graph.node:
        by_op.setdefault(n.op_type, []).append(n)
    # normalisation computes in FP32 (x - 123.675 is not representable in FP16)
    for op in ("Sub", "Div"):
        for n in by_op[op]:
            assert types[n.output[0]] == TensorProto.FLOAT, op
    # the first conv reads FP16 through one boundary Cast
    first_conv = by_op["Conv"][0]
    assert types[first_conv.input[0]] == TensorProto.FLOAT16
    # Resize: data in FP16, but scales (if any) must stay float32 by the ONNX spec
    (resize,) = by_op["Resize"]
    assert types[resize.input[0]] == TensorProto.FLOAT16
    for i in (1, 2):
        if len(resize.input) > i and resize.input[i] and resize.input[i] in types:
            assert types[resize.input[i]] == TensorProto.FLOAT
    # ArgMax takes the FP16 logits directly (a cast would not change any index)
    (argmax,) = by_op["ArgMax"]
    assert types[argmax.input[0]] == TensorProto.FLOAT16


def _graph(nodes, inits, inputs, outputs, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_overflow_prone_ops_kept_fp32_and_weights_clamped(caplog):
    w = np.full((4, 3, 1, 1), 0.5, np.float32)
    w[0, 0, 0, 0] = 1e6  # beyond FP16: clamped, counted
    w[1, 0, 0, 0] = 1e-9  # below FP16's smallest subnormal: becomes 0, counted
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("ReduceMean", ["c"], ["m"], keepdims=1, axes=[2, 3], name="mean"),
        helper.make_node("Softmax", ["c"], ["s"], axis=1, name="softmax"),
        helper.make_node("Mul", ["s", "m"], ["y"], name="mul"),
    ]
    m = _graph(nodes, [numpy_helper.from_array(w, "w")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])])
    with caplog.at_level("INFO"):
        conv = fp16_conversion(m)
    assert conv.clamped_values == 1 and conv.flushed_values == 1
    # counted, not logged per conversion (a fallback converts once per candidate layer): the
    # caller prints the final model's one line
    assert not caplog.records
    assert conv.weights_note() == ("1 weight values beyond ±65504 were clamped; "
                                   "1 weight values below FP16's smallest subnormal became 0")
    assert initializer(conv.model, "w").max() == np.float16(FP16_MAX)
    assert initializer(conv.model, "w")[1, 0, 0, 0] == 0
    assert conv.fp32_nodes["mean"].startswith("ReduceMean") and conv.fp32_nodes["softmax"].startswith("Softmax")
    types = _types(conv.model)
    assert types["m"] == TensorProto.FLOAT and types["s"] == TensorProto.FLOAT
    assert types["c"] == TensorProto.FLOAT16
    assert io_signature(conv.model) == io_signature(m)
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    assert np.isfinite(run(conv.model, {"x": x})[0]).all()


def test_resize_scales_input_stays_float32():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="linear", name="up")]
    m = _graph(nodes, [numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w"),
                       numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])])
    out = fp16_onnx_from_fp32(m)
    assert initializer(out, "scales").dtype == np.float32  # tensor(float) by the ONNX spec
    assert initializer(out, "w").dtype == np.float16
    assert _types(out)["c"] == TensorProto.FLOAT16
    x = np.random.default_rng(0).random((1, 3, 4, 4), np.float32)
    np.testing.assert_allclose(run(out, {"x": x})[0], run(m, {"x": x})[0], rtol=2e-3, atol=2e-3)


def test_shared_initializer_gets_fp16_copy_and_fp32_stays():
    # "b" feeds an FP16 Add and an FP32 Softmax branch: both must see their own type.
    b = np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1)
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add"),
             helper.make_node("Softmax", ["b"], ["s"], axis=1, name="sm"),
             helper.make_node("Mul", ["a", "s"], ["y"], name="mul")]
    m = _graph(nodes, [numpy_helper.from_array(b, "b")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])])
    out = fp16_onnx_from_fp32(m)
    assert initializer(out, "b").dtype == np.float32
    assert initializer(out, "b__fp16").dtype == np.float16
    x = np.ones((1, 4, 2, 2), np.float32)
    np.testing.assert_allclose(run(out, {"x": x})[0], run(m, {"x": x})[0], rtol=2e-3)


def test_unfused_float_io_kept_and_emulation_rounds_like_fp16():
    """The FP32 emulation equals a numpy model of an FP16 engine: FP16-rounded input and
    weights, FP32 accumulation, FP16-rounded output."""
    fp32 = tiny_segmentation_onnx(16, 24, fused=False)
    fp16 = fp16_onnx_from_fp32(fp32)
    assert io_signature(fp16) == io_signature(fp32)  # float32 NCHW in, float32 logits out
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1, 3, 16, 24)) * 3.3).astype(np.float32)
    emulated = run(fp32_emulation_from_fp16(fp16), {"input": x})[0]
    # numpy reference: the tiny model's logits from FP16-rounded input, rounded to FP16
    x16 = x.astype(np.float16).astype(np.float32)
    w = np.zeros((4, 3), np.float32)
    w[0, :] = -1.0
    w[1, 0] = w[2, 1] = w[3, 2] = 2.0
    bias = np.array([0.0, -1.0, -1.0, -1.0], np.float32)
    ref = (np.einsum("nchw,kc->nkhw", x16, w) + bias.reshape(1, 4, 1, 1)).astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(emulated, ref, rtol=0, atol=float(np.abs(ref).max()) * 2 ** -10)
    exact = run(fp32, {"input": x})[0]
    assert np.abs(emulated - exact).max() > 0  # the rounding is really there


def test_fp16_of_tiny_reference_model_matches_numpy():
    fp16 = fp16_onnx_from_fp32(tiny_segmentation_onnx(32, 48))
    frame = np.random.default_rng(3).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    mask = run(fp16, {"frame": frame})[0]
    logits = reference_logits(frame)
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-2  # pixels FP16 rounding cannot flip
    assert np.array_equal(mask[clear], logits.argmax(1).astype(np.uint8)[clear])


@pytest.mark.parametrize("keep", [("Conv",)])
def test_keep_list_by_op_and_by_name(keep):
    fp32 = colour_net_onnx(32, 32)
    by_op = fp16_conversion(fp32, keep_fp32_ops=keep)
    assert by_op.fp32_ops.get("Conv") == 3
    first = next(n.name for n in fp32.graph.node if n.op_type == "Conv")
    by_name = fp16_conversion(fp32, keep_fp32_nodes=[first])
    assert by_name.fp32_nodes[first] == "requested"
    assert by_name.fp32_ops.get("Conv") == 1
