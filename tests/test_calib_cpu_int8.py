"""The CPU INT8 variant (int8-cpu): types per instruction set, shared calibration, its own gate."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from _calib_helpers import colour_bundle, synthetic
from segrt.calibration.api import quantize_bundle
from segrt.calibration.evaluate import session
from segrt.calibration.qdq_cpu import cpu_quant_types, faster_format, float_logits_resize, logits_tensors
from segrt.errors import AccuracyGateError, BackendUnavailableError, ConfigError
from segrt.runtime.bundle import Bundle
from segrt.runtime.machine import cpu_info_from_text
from segrt.tools.cli import main

CALIB = synthetic(160, 120, frames=300, seed=1)
X86 = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n"
X86_VNNI = "model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_vnni amx_int8 amx_tile\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp\nCPU part\t: 0xd0c\n"


@pytest.fixture()
def bundle(tmp_path):
    return colour_bundle(tmp_path / "colour", 48, 64)


@pytest.mark.parametrize("text,arch,act,wt", [
    (X86, "x86_64", "uint8", "int8"), (X86_VNNI, "x86_64", "uint8", "int8"), (ARM, "aarch64", "int8", "int8")])
def test_types_follow_the_instruction_set(text, arch, act, wt):
    t = cpu_quant_types(cpu_info_from_text(text, arch, 4))
    assert (t.activation, t.weight) == (act, wt)
    assert ("VNNI" in t.reason) == (arch == "x86_64")


def test_faster_format_keeps_the_faster_one():
    built = []

    class Conv:
        def __init__(self, fmt):
            self.format, self.model = fmt, fmt

    def build(fmt):
        built.append(fmt)
        return Conv(fmt)

    def timer(table):
        return lambda models, feed, threads=None: {f: table[m] for f, m in models.items()}

    conv, ms = faster_format(build, {}, timer=timer({"qdq": 9.0, "qoperator": 4.0}))
    assert conv.format == "qoperator" and ms == {"qdq": 9.0, "qoperator": 4.0} and built == ["qdq", "qoperator"]
    conv, _ = faster_format(build, {}, timer=timer({"qdq": 3.0, "qoperator": 4.0}))
    assert conv.format == "qdq"
    # QOperator wins in ONNX Runtime, but OpenVINO runs the Q/DQ graph faster still: Q/DQ is kept
    conv, ms = faster_format(build, {}, timer=lambda models, feed, threads=None: {
        "qdq": 9.0, "qoperator": 8.0, "qdq/openvino": 5.0})
    assert conv.format == "qdq" and ms["qdq/openvino"] == 5.0
    conv, _ = faster_format(build, {}, timer=lambda models, feed, threads=None: {
        "qdq": 9.0, "qoperator": 4.0, "qdq/openvino": 5.0})
    assert conv.format == "qoperator"


def test_format_timing_includes_openvino_when_installed(bundle):
    from segrt.calibration.qdq_cpu import OPENVINO_QDQ, interleaved_ms
    from segrt.runtime.backends.openvino import openvino_available
    if not openvino_available():
        pytest.skip("OpenVINO not installed: pip install 'segrt[openvino]'")
    model = onnx.load(str(bundle.onnx_path("fp32")))
    feed = {"frame": np.zeros((1, 48, 64, 3), np.uint8)}
    ms = interleaved_ms({"qdq": model, "qoperator": model}, feed, threads=1)
    assert set(ms) == {"qdq", "qoperator", OPENVINO_QDQ} and all(v > 0 for v in ms.values())
    assert set(interleaved_ms({"qdq": model}, feed, threads=1, openvino=False)) == {"qdq"}


def test_both_targets_share_one_calibration(bundle):
    rep = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=97.0,
                          max_fallback=4, progress=False, target="both")
    b = Bundle.open(bundle.path)
    trt, cpu = b.manifest.artifacts["int8"], b.manifest.artifacts["int8-cpu"]
    assert rep.cpu is not None and rep.cpu.passed and cpu.path == "model.int8-cpu.onnx"
    b.onnx_path("int8-cpu", verify=True)
    assert cpu.details["target"] == "cpu" and cpu.details["remainder"] == "fp32"
    assert trt.details["remainder"] == "fp16" and "target" not in trt.details
    assert cpu.details["format"] in ("qdq", "qoperator") and {"qdq", "qoperator"} <= set(cpu.details["format_ms"])
    assert cpu.accuracy["passed"] and cpu.accuracy["agreement"] >= 0.97
    assert cpu.details["fp32_sha256"] == b.manifest.artifacts["fp32"].sha256
    # one calibration: one ranges file, recorded once
    assert b.manifest.calibration["ranges_file"] and len(list(bundle.path.glob("calibration*.json"))) == 1
    m = onnx.load(str(bundle.path / cpu.path))
    # no FP16 anywhere in the CPU graph; I/O contract unchanged (uint8 frame in, uint8 mask out)
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    out = session(str(bundle.path / cpu.path)).run(None, {"frame": np.zeros((1, 48, 64, 3), np.uint8)})[0]
    assert out.shape == (1, 48, 64) and out.dtype == np.uint8
    assert "int8-cpu" in rep.to_text()


def _graph(nodes, out_name: str, out_type=onnx.TensorProto.FLOAT) -> onnx.ModelProto:
    """x (1,2,4,4) -> nodes -> ``out_name``; a 1x1 conv weight ``w`` and a Resize ``scales`` given."""
    inits = [onnx.numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "w"),
             onnx.numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w2"),
             onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    g = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
                               [onnx.helper.make_tensor_value_info(out_name, out_type, None)], initializer=inits)
    return onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])


def _resize(inp: str, out: str) -> onnx.NodeProto:
    return onnx.helper.make_node("Resize", [inp, "", "scales"], [out], name="up", mode="linear")


def test_a_resize_that_makes_the_logits_stays_fp32_and_no_other():
    conv = onnx.helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    argmax = [onnx.helper.make_node("ArgMax", ["logits"], ["idx"], name="argmax", axis=1, keepdims=0),
              # as torch exports LR-ASPP's mask: int64 -> float -> uint8
              onnx.helper.make_node("Cast", ["idx"], ["idx_f"], name="cast_f", to=onnx.TensorProto.FLOAT),
              onnx.helper.make_node("Cast", ["idx_f"], ["mask"], name="cast", to=onnx.TensorProto.UINT8)]
    fused = _graph([conv, _resize("c", "logits"), *argmax], "mask", onnx.TensorProto.UINT8)
    assert logits_tensors(fused) == ["logits"] and list(float_logits_resize(fused)) == ["up"]
    unfused = _graph([conv, _resize("c", "logits")], "logits")  # the graph returns the logits
    assert logits_tensors(unfused) == ["logits"] and list(float_logits_resize(unfused)) == ["up"]
    # a Resize inside the network (a conv after it makes the logits) is quantized as before
    inner = _graph([conv, _resize("c", "u"), onnx.helper.make_node("Conv", ["u", "w2"], ["logits"], name="cls"),
                    *argmax], "mask", onnx.TensorProto.UINT8)
    assert float_logits_resize(inner) == {}


def test_the_cpu_graph_resizes_its_logits_in_fp32(bundle):
    quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=97.0, max_fallback=4,
                    progress=False, target="cpu")
    art = Bundle.open(bundle.path).manifest.artifacts["int8-cpu"]
    m = onnx.load(str(bundle.path / art.path))
    producer = {o: n for n in m.graph.node for o in n.output}
    argmax = next(n for n in m.graph.node if n.op_type == "ArgMax")
    up = producer[argmax.input[0]]  # the ColourNet's bilinear upsample feeds the argmax directly
    assert up.op_type == "Resize" and list(art.details["kept_float"]) == [up.name]
    assert producer[up.input[0]].op_type == "DequantizeLinear"  # float in, float out: no Q after it
    assert not any(n.op_type == "QuantizeLinear" and up.output[0] in n.input for n in m.graph.node)
    assert sum(n.op_type == "DequantizeLinear" for n in m.graph.node) > 0  # the convs are still 8-bit


def test_cpu_target_alone_writes_only_the_cpu_graph(bundle):
    rep = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=97.0,
                          max_fallback=4, progress=False, target="cpu")
    b = Bundle.open(bundle.path)
    assert rep.precision == "int8-cpu" and rep.artifact is not None
    assert set(b.manifest.artifacts) == {"fp32", "int8-cpu", "fp32-unfused", "int8-cpu-unfused"}  # no TensorRT int8
    assert json.loads((bundle.path / b.manifest.calibration["ranges_file"]).read_text())["amax"]


def test_cpu_variant_below_the_gate_is_refused(bundle):
    with pytest.raises(AccuracyGateError, match="int8-cpu"):
        quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=100.0,
                        max_fallback=0, progress=False, target="cpu")
    assert not (bundle.path / "model.int8-cpu.onnx").exists()
    assert "int8-cpu" not in Bundle.open(bundle.path).manifest.artifacts


def test_both_keeps_the_tensorrt_graph_when_the_cpu_one_fails(bundle, monkeypatch):
    import segrt.calibration.api as api
    real = api.cpu_variant

    def failing(*args, **kwargs):
        res = real(*args, **kwargs)
        res.accuracy.gate = 1.01  # unreachable: the CPU variant fails its gate
        return res

    monkeypatch.setattr(api, "cpu_variant", failing)
    rep = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=97.0,
                          max_fallback=0, progress=False, target="both")
    arts = Bundle.open(bundle.path).manifest.artifacts
    assert "int8" in arts and "int8-cpu" not in arts
    assert any("int8-cpu" in w and "not written" in w for w in rep.warnings)


def test_unknown_target_is_a_config_error(bundle):
    with pytest.raises(ConfigError, match="target"):
        quantize_bundle(bundle, "int8", calib=CALIB, target="gpu", progress=False)


def test_cli_target_cpu(bundle, capsys):
    rc = main(["quantize", str(bundle.path), "--precision", "int8", "--target", "cpu", "--calib", CALIB,
               "--calib-frames", "20", "--eval-frames", "16", "--gate", "95", "--max-fallback", "4", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "int8-cpu" in out and "format" in out


def test_cpu_backends_prefer_the_cpu_graph_and_tensorrt_never_builds_it(bundle):
    from segrt.export.trt_plan import engine_filename
    from segrt.runtime.backends.openvino import openvino_available
    from segrt.runtime.backends.select import backend_for_bundle
    quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=97.0, max_fallback=4,
                    progress=False, target="both")
    b = Bundle.open(bundle.path)
    said: list[str] = []
    be = backend_for_bundle(b, backend="onnxruntime", precision="int8", echo=said.append)
    assert be.onnx_path.name == "model.int8-cpu.onnx" and "int8-cpu" in said[-1]
    exact = backend_for_bundle(b, backend="onnxruntime", precision="int8", prefer_cpu_int8=False)
    assert exact.onnx_path.name == "model.int8.onnx"
    with pytest.raises(ConfigError):
        engine_filename("int8-cpu", "Orin", (8, 7), (10, 3))
    frame = np.zeros((1, 48, 64, 3), np.uint8)
    frame[:, :, :32, 2] = 255  # a red half
    with be:
        ort_mask = be.infer(frame)["mask"].copy()
    if openvino_available() and b.manifest.artifacts["int8-cpu"].details["format"] == "qdq":
        with backend_for_bundle(b, backend="openvino", precision="int8") as ov:  # reads Q/DQ natively
            assert ov.onnx_path.name == "model.int8-cpu.onnx"
            ov_mask = ov.infer(frame)["mask"]
        assert (ov_mask == ort_mask).mean() > 0.95
    elif openvino_available():  # QOperator was faster in ONNX Runtime: OpenVINO says it cannot read it
        with pytest.raises(BackendUnavailableError, match="QOperator"):
            backend_for_bundle(b, backend="openvino", precision="int8")


def test_openvino_runs_the_cpu_qdq_graph(bundle, monkeypatch):
    from segrt.runtime.backends.openvino import openvino_available
    from segrt.runtime.backends.select import backend_for_bundle
    if not openvino_available():
        pytest.skip("OpenVINO not installed: pip install 'segrt[openvino]'")
    import segrt.calibration.qdq_cpu as qc
    monkeypatch.setattr(qc, "FORMATS", ("qdq",))  # keep the Q/DQ form whatever this machine's timing says
    quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=97.0, max_fallback=4,
                    progress=False, target="cpu")
    b = Bundle.open(bundle.path)
    assert b.manifest.artifacts["int8-cpu"].details["format"] == "qdq"
    frame = np.zeros((1, 48, 64, 3), np.uint8)
    frame[:, :, :32, 2] = 255
    with backend_for_bundle(b, backend="onnxruntime", precision="int8-cpu") as ort_be:
        ort_mask = ort_be.infer(frame)["mask"].copy()
    with backend_for_bundle(b, backend="openvino", precision="int8-cpu") as ov:
        assert ov.onnx_path.name == "model.int8-cpu.onnx"
        assert (ov.infer(frame)["mask"] == ort_mask).mean() > 0.95


def test_both_makes_the_cpu_graph_even_when_the_tensorrt_gate_is_overridden(bundle):
    rep = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=16, gate=100.0,
                          max_fallback=0, progress=False, enforce_gate=False, target="both")
    arts = Bundle.open(bundle.path).manifest.artifacts
    assert arts["int8"].accuracy["passed"] is False  # registered because the gate was disabled
    assert rep.cpu is not None and not rep.cpu.passed and "int8-cpu" not in arts  # the CPU graph was tried, gated
