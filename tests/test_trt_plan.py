"""The build plan: (TensorRT version, precision, ONNX kind, DLA, legacy) -> flags, calibrator, profile, errors."""
from __future__ import annotations

import pytest

from segrt.errors import BundleError, ConfigError, EngineError
from segrt.export.trt_plan import (BuildRequest, ProfileShapes, check_hardware_compat, engine_filename, full_shape,
                                   gpu_slug, inspector_filename, plan_build, profile_shapes, timing_cache_filename)
from segrt.runtime.manifest import InputSpec, ShapeRange
from segrt.runtime.trt_api import parse_version

FUSED = InputSpec(name="frame", height=256, width=512)  # uint8 NHWC
UNFUSED = InputSpec(name="input", height=256, width=512, layout="NCHW", dtype="float32", fused=False)
DYN = InputSpec(name="frame", height=256, width=512,
                dynamic=ShapeRange(min=(1, 128, 256), opt=(1, 256, 512), max=(4, 512, 1024)))
ALL_ONNX = frozenset({"fp32", "fp16", "int8"})
V103, V1016, V114, V1141 = (10, 3, 0), (10, 16, 1, 11), (11, 4, 0, 106), (11, 4, 1)


def req(v, precision, **kw):
    kw.setdefault("input", FUSED)
    kw.setdefault("available_onnx", ALL_ONNX)
    return BuildRequest(trt_version=v, precision=precision, **kw)


def test_parse_version_is_numeric_not_lexical():
    assert parse_version("10.16.1.11") == (10, 16, 1, 11)
    assert parse_version("11.4.0.106") == (11, 4, 0, 106)
    assert parse_version("10.0.0b6") == (10, 0, 0)
    assert parse_version("10.16.1") > parse_version("10.3.0")  # "10.16" < "10.3" as strings
    with pytest.raises(ConfigError):
        parse_version("unknown")


@pytest.mark.parametrize("v", [V103, V1016, V114])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_default_is_strongly_typed_from_the_precision_typed_onnx(v, precision):
    p = plan_build(req(v, precision))
    assert p.path == "strongly_typed" and p.strongly_typed
    assert p.onnx_precision == precision            # model.fp16.onnx / model.int8.onnx
    assert p.builder_flags == ()                    # no precision flags on a strongly typed network
    assert p.calibrator is None
    # 10.x opts in with STRONGLY_TYPED; 11.x is always strongly typed and the flag is ignored
    assert p.network_flags == (("STRONGLY_TYPED",) if v[0] == 10 else ())


def test_legacy_fp16_on_10x_uses_the_fp32_onnx_and_the_fp16_flag():
    p = plan_build(req(V103, "fp16", legacy=True))
    assert (p.path, p.strongly_typed, p.onnx_precision) == ("legacy_calibrator", False, "fp32")
    assert p.network_flags == () and p.builder_flags == ("FP16",) and p.calibrator is None


@pytest.mark.parametrize("kind", ["entropy", "minmax"])
def test_legacy_int8_on_10x_uses_a_calibrator_with_fp16_fallback(kind):
    p = plan_build(req(V1016, "int8", legacy=True, calibrator=kind))
    assert p.onnx_precision == "fp32"
    assert p.builder_flags == ("FP16", "INT8")
    assert p.calibrator == kind
    assert p.calibration_shape == (1, 256, 512, 3)    # static: the input shape


def test_legacy_int8_with_dynamic_profile_calibrates_at_opt():
    p = plan_build(req(V103, "int8", legacy=True, input=DYN))
    assert p.calibration_shape == (1, 256, 512, 3)
    assert p.profile.max == (4, 512, 1024, 3)


def test_calibration_batches_and_calibration_profile_share_one_shape():
    """Batches come at the manifest's size (the reader preprocesses to it): the calibration profile is
    set to that size with OPT's batch, not to OPT's H/W, and must lie inside the profile."""
    other_opt = InputSpec(name="frame", height=256, width=512,
                          dynamic=ShapeRange(min=(1, 128, 256), opt=(2, 384, 768), max=(4, 512, 1024)))
    p = plan_build(req(V103, "int8", legacy=True, input=other_opt))
    assert p.profile.opt == (2, 384, 768, 3)
    assert p.calibration_shape == (2, 256, 512, 3)  # OPT batch, manifest H/W (= what the reader yields)
    outside = InputSpec(name="frame", height=256, width=512,
                        dynamic=ShapeRange(min=(1, 384, 768), opt=(1, 384, 768), max=(1, 512, 1024)))
    with pytest.raises(ConfigError, match="outside the profile"):
        plan_build(req(V103, "int8", legacy=True, input=outside))


def test_dla_refuses_the_minmax_calibrator():
    with pytest.raises(ConfigError, match="entropy calibrator") as e:
        plan_build(req(V103, "int8", legacy=True, calibrator="minmax", dla_core=0, jetson=True))
    assert "--calibrator minmax" in str(e.value)
    assert plan_build(req(V103, "int8", legacy=True, calibrator="entropy", dla_core=0)).calibrator == "entropy"
    assert plan_build(req(V103, "int8", legacy=True, calibrator="minmax")).calibrator == "minmax"  # GPU: fine


@pytest.mark.parametrize("v", [V103, V1016, V114])
def test_fp32_clears_tf32_and_records_it(v):
    p = plan_build(req(v, "fp32"))
    assert p.cleared_builder_flags == ("TF32",) and "TF32" not in p.builder_flags
    assert p.options()["tf32"] is False and p.options()["cleared_builder_flags"] == ["TF32"]
    for precision in ("fp16", "int8"):
        q = plan_build(req(v, precision))
        assert q.cleared_builder_flags == () and q.options()["tf32"] is True


@pytest.mark.parametrize("v", [V114, V1141, (11, 0, 0), (12, 0)])
def test_legacy_is_refused_on_11_with_a_message(v):
    with pytest.raises(EngineError, match="needs TensorRT 10.x") as e:
        plan_build(req(v, "int8", legacy=True))
    assert "segrt quantize BUNDLE --precision int8" in str(e.value)


def test_legacy_fp32_is_a_config_error():
    with pytest.raises(ConfigError, match="fp16 and int8 only"):
        plan_build(req(V103, "fp32", legacy=True))


def test_too_old_tensorrt_is_refused():
    with pytest.raises(EngineError, match="TensorRT 8.6.1 is too old"):
        plan_build(req((8, 6, 1), "fp16"))


def test_missing_precision_onnx_names_the_fix():
    with pytest.raises(BundleError, match="no int8 ONNX") as e:
        plan_build(req(V103, "int8", available_onnx=frozenset({"fp32"})))
    assert "segrt quantize BUNDLE --precision int8" in str(e.value) and "--legacy-calibrator" in str(e.value)
    with pytest.raises(BundleError) as e:
        plan_build(req(V114, "fp16", available_onnx=frozenset({"fp32"})))
    assert "--legacy-calibrator" not in str(e.value)  # not offered where it cannot work
    # legacy needs only the FP32 graph
    assert plan_build(req(V103, "int8", legacy=True, available_onnx=frozenset({"fp32"}))).onnx_precision == "fp32"


# -- DLA ------------------------------------------------------------------------------
def test_dla_on_10x_is_weakly_typed_with_gpu_fallback():
    p = plan_build(req(V103, "fp16", dla_core=0))
    assert (p.device, p.dla_core, p.strongly_typed) == ("DLA", 0, False)
    assert p.onnx_precision == "fp32" and p.builder_flags == ("FP16", "GPU_FALLBACK")
    assert p.parser_flags == () and any("DLA" in n for n in p.notes)
    q = plan_build(req(V103, "int8", dla_core=1))      # Q/DQ graph + INT8 flag, no calibrator
    assert q.onnx_precision == "int8" and q.builder_flags == ("FP16", "INT8", "GPU_FALLBACK") and q.calibrator is None


def test_dla_on_11_4_1_is_strongly_typed_with_adjust_for_dla():
    p = plan_build(req(V1141, "fp16", dla_core=0))
    assert p.strongly_typed and p.onnx_precision == "fp16"
    assert p.parser_flags == ("ADJUST_FOR_DLA",) and p.builder_flags == ("GPU_FALLBACK",)


@pytest.mark.parametrize("v", [(11, 0, 0), (11, 3, 0), V114])
def test_dla_refused_on_11_before_11_4_1(v):
    with pytest.raises(EngineError, match="no DLA support"):
        plan_build(req(v, "fp16", dla_core=0))


def test_dla_refuses_fp32_dynamic_shapes_and_compat():
    with pytest.raises(EngineError, match="FP16 or INT8 only"):
        plan_build(req(V103, "fp32", dla_core=0))
    with pytest.raises(EngineError, match="static shapes"):
        plan_build(req(V103, "fp16", dla_core=0, input=DYN))
    with pytest.raises(EngineError, match="version- or hardware-compatible"):
        plan_build(req(V103, "fp16", dla_core=0, version_compatible=True))


# -- options ---------------------------------------------------------------------------
def test_options_workspace_opt_level_compat():
    p = plan_build(req(V1016, "fp16", workspace_gib=1.5, opt_level=5, version_compatible=True,
                       hardware_compat="ampere+"))
    assert p.workspace_bytes == 3 * (1 << 29)
    assert p.opt_level == 5 and "VERSION_COMPATIBLE" in p.builder_flags
    assert p.hardware_compat == "AMPERE_PLUS"
    o = p.options()
    assert o["version_compatible"] is True and o["hardware_compat"] == "AMPERE_PLUS" and o["onnx"] == "fp16"
    assert plan_build(req(V1016, "fp16")).opt_level == 3 and plan_build(req(V1016, "fp16")).workspace_bytes is None


@pytest.mark.parametrize("kw,match", [
    ({"opt_level": 6}, "0..5"), ({"workspace_gib": 0}, "positive"), ({"dla_core": -1}, ">= 0"),
    ({"calibrator": "percentile"}, "entropy or minmax"), ({"hardware_compat": "turing+"}, "ampere"),
])
def test_bad_options_are_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        plan_build(req(V1016, "fp16", **kw))


def test_same_cc_needs_10_9_and_compat_is_not_for_jetson():
    with pytest.raises(EngineError, match="needs TensorRT >= 10.9"):
        plan_build(req(V103, "fp16", hardware_compat="same-cc"))
    assert plan_build(req(V1016, "fp16", hardware_compat="same-cc")).hardware_compat == "SAME_COMPUTE_CAPABILITY"
    with pytest.raises(EngineError, match="discrete-GPU"):
        plan_build(req(V1016, "fp16", hardware_compat="ampere+", jetson=True))
    check_hardware_compat("AMPERE_PLUS", (8, 6))
    with pytest.raises(EngineError, match="SM 7.5"):
        check_hardware_compat("AMPERE_PLUS", (7, 5))


# -- profile shapes ----------------------------------------------------------------------
def test_profile_from_manifest_range_in_the_graph_layout():
    p = profile_shapes(DYN)
    assert (p.min, p.opt, p.max) == ((1, 128, 256, 3), (1, 256, 512, 3), (4, 512, 1024, 3))
    nchw = InputSpec(name="input", height=64, width=64, layout="NCHW", dtype="float32", fused=False,
                     dynamic=ShapeRange(min=(1, 32, 32), opt=(2, 64, 64), max=(8, 128, 128)))
    q = profile_shapes(nchw)
    assert (q.input_name, q.min, q.opt, q.max) == ("input", (1, 3, 32, 32), (2, 3, 64, 64), (8, 3, 128, 128))
    assert full_shape((2, 10, 20), UNFUSED) == (2, 3, 10, 20)


def test_static_onnx_needs_no_profile_but_dynamic_axes_get_a_fixed_one():
    assert profile_shapes(FUSED, (1, 256, 512, 3)) is None
    assert profile_shapes(FUSED) is None
    p = profile_shapes(FUSED, (-1, 256, 512, 3))
    assert p.is_static and p.opt == (1, 256, 512, 3)
    with pytest.raises(EngineError, match="rank"):
        profile_shapes(FUSED, (-1, 3, 256))
    assert plan_build(req(V114, "fp16", onnx_input_shape=(-1, 256, 512, 3))).profile.max == (1, 256, 512, 3)


def test_manifest_range_on_a_static_onnx_input_adds_no_profile():
    p = plan_build(req(V114, "fp16", input=DYN, onnx_input_shape=(1, 256, 512, 3)))
    assert p.profile is None
    assert any("adds no optimisation profile" in n for n in p.notes)
    assert profile_shapes(DYN, (1, 256, 512, 3)) is None
    assert profile_shapes(DYN, (-1, -1, -1, 3)).max == (4, 512, 1024, 3)  # dynamic ONNX: the range applies


def test_profile_records_into_options():
    o = plan_build(req(V103, "fp32", input=DYN)).options()
    assert o["profile"] == {"input": "frame", "min": [1, 128, 256, 3], "opt": [1, 256, 512, 3],
                            "max": [4, 512, 1024, 3]}
    assert ProfileShapes("x", (1,), (2,), (3,)).is_static is False


# -- names -------------------------------------------------------------------------------
def test_engine_and_cache_names():
    assert gpu_slug("NVIDIA GeForce RTX 4090", (8, 9)) == "geforce-rtx-4090-sm89"
    assert gpu_slug("Orin (nvgpu)", (8, 7)) == "orin-nvgpu-sm87"
    assert (engine_filename("int8", "NVIDIA GeForce RTX 4090", (8, 9), (10, 16, 1, 11))
            == "model.int8.geforce-rtx-4090-sm89.trt10.16.1.11.engine")
    assert engine_filename("fp16", "Orin", (8, 7), (10, 3, 0), dla_core=1) == "model.fp16.orin-sm87-dla1.trt10.3.0.engine"
    assert timing_cache_filename("Orin", (8, 7), (10, 3, 0)) == "timing.orin-sm87.trt10.3.0.cache"
    assert inspector_filename("model.fp16.orin-sm87.trt10.3.0.engine") == "model.fp16.orin-sm87.trt10.3.0.layers.json"
    with pytest.raises(ConfigError):
        engine_filename("int4", "x", (8, 0), (10, 3))
