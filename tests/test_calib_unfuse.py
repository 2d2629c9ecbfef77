"""Fused or not on the CPU: the unfused twin, its I/O, and the pipeline running it with its own pre/post."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from _calib_helpers import colour_bundle, synthetic
from segrt.calibration.api import quantize_bundle
from segrt.calibration.unfuse import unfused_from_fused
from segrt.errors import CalibrationError
from segrt.runtime.auto_precision import cpu_candidates, gpu_candidates
from segrt.runtime.bundle import Bundle
from segrt.runtime.machine import cpu_info_from_text
from segrt.runtime.pipeline import Pipeline
from segrt.runtime.preprocess import Preprocessor
from segrt.tools.tiny_model import reference_logits, tiny_bundle

CALIB = synthetic(160, 120, frames=300, seed=1)
AMD = cpu_info_from_text("model name\t: AMD EPYC\nflags\t\t: avx2 fma f16c\n", "x86_64", 2)


def test_the_twin_is_the_network_without_pre_and_post(tmp_path):
    b = tiny_bundle(tmp_path / "tiny", 32, 48, fused=True)
    twin = unfused_from_fused(onnx.load(str(b.onnx_path("fp32"))), b.manifest)
    assert [i.name for i in twin.graph.input] == ["input"] and [o.name for o in twin.graph.output] == ["logits"]
    assert not {"ArgMax", "Cast", "Transpose"} & {n.op_type for n in twin.graph.node}
    view = b.manifest.replace(input=b.manifest.input.__class__(name="input", height=32, width=48, layout="NCHW",
                                                                 dtype="float32", fused=False))
    frame = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    tensor, _ = Preprocessor(view).pre(frame)  # the runtime's own normalisation
    logits = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": tensor})[0]
    np.testing.assert_allclose(logits, reference_logits(frame[None]), atol=1e-5)


def test_an_unfused_graph_has_no_twin(tmp_path):
    b = tiny_bundle(tmp_path / "plain", 32, 48, fused=False)
    with pytest.raises(CalibrationError, match="no fused"):
        unfused_from_fused(onnx.load(str(b.onnx_path("fp32"))), b.manifest)


def test_quantize_for_the_cpu_writes_both_forms_and_the_pipeline_runs_the_unfused_one(tmp_path):
    bundle = colour_bundle(tmp_path / "colour", 48, 64)
    rep = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=97.0,
                          max_fallback=4, progress=False, target="both")
    b = Bundle.open(bundle.path)
    for p in ("fp32-unfused", "int8-cpu-unfused"):
        art = b.manifest.artifacts[p]
        b.onnx_path(p, verify=True)
        assert art.details["target"] == "cpu" and art.accuracy["twin_agreement"] >= 0.995
        assert art.details["unfused_of"] == p.replace("-unfused", "")
        view = b.manifest.for_precision(p)
        assert (view.input.layout, view.input.dtype, view.input.fused) == ("NCHW", "float32", False)
        assert view.output.kind == "logits"
    assert b.manifest.for_precision("int8-cpu").input == b.manifest.input  # fused artifacts keep the contract
    assert "fp32-unfused: wrote" in rep.to_text()
    cands, _ = cpu_candidates(b.manifest, AMD, ["onnxruntime"])
    assert ("fp32-unfused", "onnxruntime") in cands and ("int8-cpu-unfused", "onnxruntime") in cands
    gpu, skipped = gpu_candidates(b.manifest, ["fp32", "fp32-unfused"])
    assert gpu == [("fp32", "tensorrt")] and "fp32-unfused" in skipped
    src = "synthetic://?size=160x120&frames=6&seed=4"
    fused = Pipeline(b, src, None, backend="onnxruntime", precision="fp32", max_frames=6)
    masks_fused = [r.mask.copy() for r in fused]
    plain = Pipeline(b, src, None, backend="onnxruntime", precision="fp32-unfused", max_frames=6)
    masks_plain = [r.mask.copy() for r in plain]
    assert plain.summary.backend["onnx"] == "model.fp32-unfused.onnx"
    agree = np.mean([np.mean(a == c) for a, c in zip(masks_fused, masks_plain)])
    assert len(masks_plain) == 6 and agree > 0.995


def test_a_twin_stays_ssa_when_an_inner_tensor_is_already_called_logits(tmp_path):
    """A Q/DQ graph quantizes the fused graph's own ``logits`` before its ArgMax, so the cut point
    is another tensor; naming that one ``logits`` must not clash with the inner one."""
    b = tiny_bundle(tmp_path / "tiny", 32, 48, fused=True)
    m = onnx.load(str(b.onnx_path("fp32")))
    argmax = next(n for n in m.graph.node if n.op_type == "ArgMax")
    assert argmax.input[0] == "logits"
    scale = onnx.numpy_helper.from_array(np.array(0.05, np.float32), "logits_scale")
    zero = onnx.numpy_helper.from_array(np.array(0, np.int8), "logits_zero")
    m.graph.initializer.extend([scale, zero])
    q = onnx.helper.make_node("QuantizeLinear", ["logits", "logits_scale", "logits_zero"], ["logits_q"])
    dq = onnx.helper.make_node("DequantizeLinear", ["logits_q", "logits_scale", "logits_zero"], ["logits_dq"])
    at = list(m.graph.node).index(argmax)
    m.graph.node.insert(at, dq)
    m.graph.node.insert(at, q)
    argmax.input[0] = "logits_dq"
    twin = unfused_from_fused(m, b.manifest)  # checks the model: raised 'logits used as output names multiple times'
    outputs = [o for n in twin.graph.node for o in n.output]
    assert len(outputs) == len(set(outputs)) and "logits" in outputs
    frame = np.random.default_rng(5).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    view = b.manifest.replace(input=b.manifest.input.__class__(name="input", height=32, width=48, layout="NCHW",
                                                                 dtype="float32", fused=False))
    tensor, _ = Preprocessor(view).pre(frame)
    logits = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": tensor})[0]
    # the twin ends after the Q/DQ pair: the reference logits to within one quantization step
    np.testing.assert_allclose(logits, reference_logits(frame[None]), atol=0.05 / 2 + 1e-5)
