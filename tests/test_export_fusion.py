"""Fused graphs: the I/O contract, TensorRT-friendly ops, fused mask == argmax(unfused logits), dynamic shapes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from segrt.export.api import export_bundle
from segrt.export.verify import normalise_frames, sample_frames
from segrt.runtime.bundle import Bundle

from _export_helpers import run_onnx, write_user_module


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    write_user_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_nets"


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("model, size", [("user_nets:build", (32, 48)), ("lraspp_mobilenet_v3_large", (64, 96))])
def test_fused_mask_equals_argmax_of_unfused_logits(tmp_path, user_module, model, size):
    h, w = size
    fused = export_bundle(model, tmp_path / "fused", size=size)
    plain = export_bundle(model, tmp_path / "plain", size=size, fuse=False)
    mf, mp = fused.manifest, plain.manifest
    assert (mf.input.name, mf.input.dtype, mf.input.layout, mf.input.fused) == ("frame", "uint8", "NHWC", True)
    assert (mf.output.kind, mf.output.names) == ("mask", ("mask",))
    assert (mp.input.name, mp.input.dtype, mp.input.layout, mp.input.fused) == ("input", "float32", "NCHW", False)
    assert (mp.output.kind, mp.output.names) == ("logits", ("logits",))
    pre = mp.preprocess
    for kind, frame in sample_frames(h, w, seed=7):
        (mask,) = run_onnx(fused.onnx_path("fp32"), {"frame": frame})
        (logits,) = run_onnx(plain.onnx_path("fp32"),
                             {"input": normalise_frames(frame, pre.mean, pre.std, pre.color_order)})
        assert mask.dtype == np.uint8 and mask.shape == (1, h, w)
        assert logits.dtype == np.float32 and logits.shape == (1, mf.output.num_classes, h, w)
        np.testing.assert_array_equal(mask, logits.argmax(axis=1).astype(np.uint8), err_msg=kind)


def test_fused_graph_preprocessing_and_argmax_are_trt_friendly(tmp_path):
    b = export_bundle("lraspp_mobilenet_v3_large", tmp_path / "b", size=(64, 96))
    model = onnx.load(str(b.onnx_path("fp32")))
    ops = [n.op_type for n in model.graph.node]
    # uint8 -> float first (TensorRT does little on uint8), then layout, channel order, normalise.
    assert ops[:5] == ["Cast", "Transpose", "Gather", "Sub", "Div"]
    # ArgMax (TensorRT: TopK, INT64 ids) -> FLOAT -> UINT8: UINT8 casts only to/from FLOAT (TensorRT 10.3)
    assert ops[-3:] == ["ArgMax", "Cast", "Cast"]
    casts = [onnx.helper.get_attribute_value(n.attribute[0]) for n in model.graph.node[-2:]]
    assert casts == [onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8]
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.opset_import[0].version == 17
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert resizes
    for n in resizes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs.get("antialias", 0) == 0
        assert attrs["coordinate_transformation_mode"] == b"half_pixel"
        assert attrs["mode"] == b"linear"
    ex = b.manifest.export
    assert ex["exporter"] in ("torchscript", "dynamo") and ex["opset"] == 17
    assert [p["pass"] for p in ex["passes"]] == ["export", "check", "optimize", "shape_inference", "trt_resize",
                                                 "trt_mask_cast"]
    v = ex["verification"]
    assert v["passed"] and v["mask_agreement_pct"] == 100.0 and v["max_abs_diff"] < 1e-4
    assert v["inputs"] == ["random", "gradient", "shapes"]


def test_bgr_model_has_no_channel_swap_and_uses_its_mean(tmp_path, user_module):
    b = export_bundle("user_nets:build", tmp_path / "b", size=(32, 32),
                      spec={"color_order": "BGR", "mean": (10.0, 20.0, 30.0), "std": (2.0, 3.0, 4.0)})
    assert "Gather" not in _ops(b.onnx_path("fp32"))[:5]
    pre = b.manifest.preprocess
    assert (pre.color_order, pre.mean, pre.std) == ("BGR", (10.0, 20.0, 30.0), (2.0, 3.0, 4.0))


def test_fused_normalisation_matches_the_cpu_formula(tmp_path, user_module):
    """The graph's own preprocessing equals (x - mean) / std in the model's colour order."""
    import torch

    from segrt.export.fuse import FusedSegmentation, SemanticLogits

    fused = FusedSegmentation(SemanticLogits(torch.nn.Identity()), (1.0, 2.0, 3.0), (4.0, 5.0, 6.0), "RGB", 3)
    frame = sample_frames(8, 8, kinds=("random",))[0][1]
    got = fused.normalise(torch.from_numpy(frame)).numpy()
    np.testing.assert_array_equal(got, normalise_frames(frame, (1.0, 2.0, 3.0), (4.0, 5.0, 6.0), "RGB"))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_dynamic_export_runs_at_every_profile_shape(tmp_path, user_module, exporter):
    b = export_bundle("user_nets:build", tmp_path / "b", size=(32, 48), dynamic=True, exporter=exporter)
    m = b.manifest
    dyn = m.input.dynamic
    assert dyn is not None and dyn.opt == (1, 32, 48) and dyn.min[1:] == (16, 24) and dyn.max == (4, 64, 96)
    assert m.export["dynamic"] == dyn.to_dict() and m.export["exporter"] == exporter
    shapes = [p["shape"] for p in m.export["verification"]["dynamic_shapes"]]
    assert shapes == [[1, 16, 24, 3], [2, 32, 48, 3]]
    graph_in = onnx.load(str(b.onnx_path("fp32"))).graph.input[0]
    assert [d.HasField("dim_value") for d in graph_in.type.tensor_type.shape.dim] == [False, False, False, True]
    for n, h, w in (dyn.min, dyn.opt, dyn.max):
        frame = np.random.default_rng(n * h).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        (mask,) = run_onnx(b.onnx_path("fp32"), {"frame": frame})
        assert mask.shape == (n, h, w) and mask.dtype == np.uint8


def test_dynamic_unfused_export_has_symbolic_logits(tmp_path, user_module):
    b = export_bundle("user_nets:build", tmp_path / "b", size=(32, 32), dynamic=True, fuse=False)
    frame = np.zeros((3, 3, 64, 32), np.float32)
    (logits,) = run_onnx(b.onnx_path("fp32"), {"input": frame})
    assert logits.shape == (3, 3, 64, 32)
    assert Bundle.open(tmp_path / "b").manifest.input.dynamic is not None


def test_too_many_classes_for_a_uint8_mask_is_refused(tmp_path, user_module):
    from segrt.errors import ConfigError

    with pytest.raises(ConfigError, match="300 classes do not fit a fused uint8 mask.*--no-fuse"):
        export_bundle("user_nets:build", tmp_path / "b", size=(32, 32), num_classes=300)
    assert not (tmp_path / "b").exists()


def _resize_graph(mode: str, antialias: int, out_hw=(8, 8)):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, *out_hw])
    sizes = onnx.numpy_helper.from_array(np.array([1, 1, *out_hw], np.int64), "sizes")
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                            coordinate_transformation_mode=mode, antialias=antialias)
    g = helper.make_graph([node], "r", [x], [y], [sizes])
    # IR 10, what the exporters write: onnx's default (the newest IR) is more than older ORT loads.
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_trt_resize_pass_rewrites_pytorch_half_pixel_and_refuses_antialias(tmp_path):
    from segrt.errors import ExportError
    from segrt.export.graph_passes import run_passes

    p = tmp_path / "r.onnx"
    onnx.save(_resize_graph("pytorch_half_pixel", 0), str(p))
    x = np.random.default_rng(0).random((1, 1, 4, 4), dtype=np.float32)
    (before,) = run_onnx(p, {"x": x})
    rec = run_passes(p, ("shape_inference", "trt_resize"))
    assert rec[-1]["rewritten_to_half_pixel"] == 1
    node = onnx.load(str(p)).graph.node[0]
    assert {a.name: a.s for a in node.attribute}["coordinate_transformation_mode"] == b"half_pixel"
    (after,) = run_onnx(p, {"x": x})
    np.testing.assert_array_equal(before, after)  # identical when the output size is > 1
    onnx.save(_resize_graph("half_pixel", 1), str(p))
    with pytest.raises(ExportError, match="antialiasing, which TensorRT does not support"):
        run_passes(p, ("shape_inference", "trt_resize"))


def test_mask_cast_pass_routes_argmax_through_float_and_keeps_the_mask(tmp_path):
    """A graph ending ArgMax -> Cast(UINT8) (an imported fused ONNX) gets Cast(FLOAT) in between;
    ONNX Runtime gives the same mask before and after, and the pass is idempotent."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from segrt.export.graph_passes import run_passes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 6, 7])
    y = helper.make_tensor_value_info("mask", TensorProto.UINT8, [1, 6, 7])
    graph = helper.make_graph([helper.make_node("ArgMax", ["x"], ["ids"], axis=1, keepdims=0),
                               helper.make_node("Cast", ["ids"], ["mask"], to=TensorProto.UINT8)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "m.onnx"
    onnx.save(model, str(p))
    feed = {"x": np.random.default_rng(0).normal(size=(1, 5, 6, 7)).astype(np.float32)}
    before = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    rec = run_passes(p, ("check", "trt_mask_cast"))
    assert rec[-1] == {"pass": "trt_mask_cast", "nodes": 3, "argmax_uint8_casts": 1}
    m = onnx.load(str(p))
    assert [(n.op_type, [a.i for a in n.attribute if a.name == "to"]) for n in m.graph.node] == [
        ("ArgMax", []), ("Cast", [TensorProto.FLOAT]), ("Cast", [TensorProto.UINT8])]
    after = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_array_equal(after, before)
    assert run_passes(p, ("trt_mask_cast",))[-1]["argmax_uint8_casts"] == 0
