"""``segrt export --max-batch N``: a batch axis 1..N, each item checked against its batch-1 result."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from segrt.errors import ExportError
from segrt.export.trt_plan import profile_shapes
from segrt.export.verify_batch import verify_batch_items
from segrt.runtime.bundle import Bundle

from _export_helpers import cli, write_user_module


def test_max_batch_exports_a_batch_axis_verified_item_by_item(tmp_path, capsys, monkeypatch):
    write_user_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, out, err = cli(capsys, "export", "user_nets:build", "--size", "32x32", "--max-batch", "3",
                       "-o", str(tmp_path / "b"))
    assert rc == 0, err
    bundle = Bundle.open(tmp_path / "b")
    inp = bundle.manifest.input
    assert (inp.dynamic.min, inp.dynamic.opt, inp.dynamic.max) == ((1, 32, 32), (3, 32, 32), (3, 32, 32))
    graph = onnx.load(str(bundle.onnx_path())).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [32, 32, 3]  # only N is symbolic
    report = json.loads((tmp_path / "b" / "segrt.json").read_text())["export"]["verification"]["batch_items"]
    assert report["batch"] == 3 and report["items_equal"] and report["differing_pixels"] == 0
    sess = ort.InferenceSession(str(bundle.onnx_path()), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"frame": np.zeros((3, 32, 32, 3), np.uint8)})[0].shape == (3, 32, 32)
    # TensorRT's profile covers the axis: min batch 1, opt and max N.
    prof = profile_shapes(inp, [-1, 32, 32, 3])  # the ONNX input as parsed: -1 for N
    assert (prof.min, prof.opt, prof.max) == ((1, 32, 32, 3), (3, 32, 32, 3), (3, 32, 32, 3))


def _batch_mixing_onnx(path, h=8, w=8):
    """uint8 frames -> mask, but each item's mask depends on the batch mean: batching changes it."""
    frame = helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", h, w, 3])
    mask = helper.make_tensor_value_info("mask", TensorProto.UINT8, ["N", h, w])
    nodes = [helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[0], keepdims=1),
             helper.make_node("Sub", ["f", "m"], ["d"]),
             helper.make_node("ArgMax", ["d"], ["i"], axis=3, keepdims=0),
             helper.make_node("Cast", ["i"], ["mask"], to=TensorProto.UINT8)]
    model = helper.make_model(helper.make_graph(nodes, "mix", [frame], [mask]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_graph_that_mixes_batch_items_is_refused(tmp_path):
    with pytest.raises(ExportError, match="items of a batch of 4 differ from their batch-1 results"):
        verify_batch_items(_batch_mixing_onnx(tmp_path / "mix.onnx"), 4, fused=True, height=8, width=8)


def test_max_batch_refusals(tmp_path, capsys):
    onnx_file = _batch_mixing_onnx(tmp_path / "m.onnx")
    rc, _, err = cli(capsys, "export", str(onnx_file), "--max-batch", "2", "-o", str(tmp_path / "x"))
    assert rc != 0 and "--max-batch applies to PyTorch models" in err
    assert not (tmp_path / "x").exists()
    rc, _, err = cli(capsys, "export", "unet", "--size", "32x32", "--max-batch", "0", "-o", str(tmp_path / "y"))
    assert rc != 0 and "--max-batch must be at least 1" in err
    assert not (tmp_path / "y").exists()


def test_fp16_and_int8_keep_the_batch_axis(tmp_path, capsys, monkeypatch):
    write_user_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    b = tmp_path / "b"
    rc, _, err = cli(capsys, "export", "user_nets:build", "--size", "32x32", "--max-batch", "3", "-o", str(b))
    assert rc == 0, err
    for precision in ("fp16", "int8"):
        rc, _, err = cli(capsys, "quantize", str(b), "--precision", precision, "--calib", "synthetic://",
                         "--no-gate")
        assert rc == 0, err
        path = Bundle.open(b).onnx_path(precision)
        dims = [d.dim_param or d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and dims[1:] == [32, 32, 3], (precision, dims)
        rep = verify_batch_items(path, 3, fused=True, height=32, width=32)
        assert rep["items_equal"] and rep["differing_pixels"] == 0
