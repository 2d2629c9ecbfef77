"""quantize_bundle and `segrt quantize` end to end: gate, fallback, provenance, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _calib_helpers import colour_bundle, synthetic
from segrt.calibration.api import quantize_bundle
from segrt.calibration.evaluate import session
from segrt.errors import AccuracyGateError, ConfigError
from segrt.runtime.bundle import MANIFEST_NAME, Bundle
from segrt.tools.cli import main

CALIB = synthetic(160, 120, frames=300, seed=1)


@pytest.fixture()
def bundle(tmp_path):
    return colour_bundle(tmp_path / "colour", 48, 64)


def _snapshot(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_int8_end_to_end_registers_artifact_with_provenance(bundle):
    rep = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=10, gate=97.0,
                          max_fallback=0, progress=False)
    assert rep.passed and rep.artifact is not None
    b = Bundle.open(bundle.path)
    art = b.manifest.artifacts["int8"]
    assert art.path == "model.int8.onnx" and (bundle.path / art.path).is_file()
    b.onnx_path("int8", verify=True)  # checksum matches
    acc = art.accuracy
    assert acc["passed"] is True and acc["gate"] == pytest.approx(0.97)
    assert 0.97 <= acc["agreement"] <= 1.0
    # synthetic:// labels are shape classes (disc, box, ...), not this colour net's: not scored.
    assert acc["miou_vs_labels"] is None and acc["fp32_miou_vs_labels"] is None
    assert set(acc["per_class_iou_vs_fp32"]) == set(b.manifest.classes)
    # held out: evaluation used another synthetic seed, never calibration frames
    assert acc["eval"]["eval_source"] != CALIB and "seed=" in acc["eval"]["eval_source"]
    cal = b.manifest.calibration
    assert cal["source"] == CALIB and cal["method"] == "minmax"
    assert cal["frames"] + cal["dedup_dropped"] <= 30 and cal["frames"] > 0
    assert len(cal["thumbnails_sha256"]) == 64 and 0 < cal["diversity"] < 1
    ranges = json.loads((bundle.path / cal["ranges_file"]).read_text())
    assert ranges["method"] == "minmax" and len(ranges["amax"]) == cal["tensors"]
    d = art.details
    assert d["fp32_sha256"] == b.manifest.artifacts["fp32"].sha256
    assert d["symmetric"] and d["per_channel"] and d["zero_point"] == 0 and d["remainder"] == "fp16"
    assert any("calibration frames" in w for w in rep.warnings)  # 30 < 100 frames
    text = rep.to_text()
    assert "int8" in text and "fp32" in text and "gate" in text and "wrote" in text
    # the registered file runs in ONNX Runtime with the bundle's input
    out = session(str(bundle.path / art.path)).run(None, {"frame": np.zeros((1, 48, 64, 3), np.uint8)})[0]
    assert out.shape == (1, 48, 64) and out.dtype == np.uint8


def test_fp16_without_sources_checks_on_a_synthetic_scene(bundle):
    rep = quantize_bundle(bundle, "fp16", eval_frames=10, progress=False)
    assert rep.passed and rep.accuracy.agreement >= 0.999
    assert any("synthetic" in w for w in rep.warnings)
    assert Bundle.open(bundle.path).manifest.calibration is None  # FP16 needs no calibration
    assert rep.details["fp16_pass"]["fp16_nodes"] > 0


def test_gate_failure_writes_nothing(bundle):
    before = _snapshot(bundle.path)
    with pytest.raises(AccuracyGateError) as info:
        quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=20, eval_frames=10, gate=100.0,
                        max_fallback=0, progress=False)
    assert "not written" in str(info.value)
    assert info.value.report.accuracy.agreement < 1.0  # the numbers behind the refusal
    assert _snapshot(bundle.path) == before


def test_no_gate_override_registers_a_failing_artifact(bundle):
    rep = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=20, eval_frames=10, gate=100.0,
                          enforce_gate=False, max_fallback=0, progress=False)
    assert not rep.passed
    art = Bundle.open(bundle.path).manifest.artifacts["int8"]
    assert art.accuracy["passed"] is False
    assert any("overridden" in w for w in rep.warnings)


def test_sensitivity_fallback_excludes_the_layer_that_breaks(tmp_path):
    # c2 emits one huge constant channel that cls ignores: cls's per-tensor input quantization
    # wipes out the useful channels. The fallback must find cls and keep it out of INT8.
    b = colour_bundle(tmp_path / "sensitive", 48, 64, sensitive=True)
    rep = quantize_bundle(b, "int8", calib=CALIB, calib_frames=30, eval_frames=10, gate=95.0, max_fallback=3,
                          progress=False)
    fb = rep.fallback
    assert fb is not None and fb.baseline < 0.5  # INT8 as is: nearly every pixel wrong
    assert fb.ranking[0][0] == "/cls/Conv" and fb.ranking[0][1] > 0.3
    assert rep.excluded[0] == "/cls/Conv" and rep.passed
    assert fb.final >= 0.95
    art = Bundle.open(b.path).manifest.artifacts["int8"]
    assert art.details["excluded_by_fallback"] == rep.excluded
    assert art.details["fallback"]["agreement_before"] == pytest.approx(fb.baseline)
    assert "sensitivity fallback" in rep.to_text()


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int4"}, "unknown precision"),
    ({"precision": "fp32"}, "unknown precision"),
    ({"precision": "int8"}, "needs calibration frames"),
    ({"precision": "int8", "calib": CALIB, "method": "random"}, "unknown calibration method"),
    ({"precision": "fp16", "calib_frames": 0}, "positive"),
    ({"precision": "fp16", "gate": 250}, "gate"),
])
def test_bad_arguments(bundle, kwargs, match):
    precision = kwargs.pop("precision")
    with pytest.raises(ConfigError, match=match):
        quantize_bundle(bundle, precision, progress=False, **kwargs)


# -- the CLI: every bad input is one line and exit code 2, the FP32 bundle untouched -------------
def _cli(*args):
    return main(["quantize", *map(str, args), "--no-progress"])


def test_cli_int8_succeeds(bundle, capsys):
    rc = _cli(bundle.path, "--precision", "int8", "--calib", CALIB, "--calib-frames", 20, "--eval-frames", 10,
              "--gate", 95)
    assert rc == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "model.int8.onnx" in out


@pytest.mark.parametrize("case", ["unknown_precision", "empty_calib", "unreadable_calib", "no_fp32", "no_calib",
                                  "gate_fails"])
def test_cli_bad_input_exits_2_and_leaves_bundle(bundle, tmp_path, capsys, case):
    args = [bundle.path, "--precision", "int8", "--calib", CALIB, "--calib-frames", 20, "--eval-frames", 10]
    if case == "unknown_precision":
        args[2] = "int4"
    elif case == "empty_calib":
        (tmp_path / "empty").mkdir()
        args[4] = tmp_path / "empty"
    elif case == "unreadable_calib":
        bad = tmp_path / "broken.mp4"
        bad.write_bytes(b"not a video at all")
        args[4] = bad
    elif case == "no_fp32":
        (bundle.path / "model.onnx").unlink()
    elif case == "no_calib":
        args = args[:3]
    elif case == "gate_fails":
        args += ["--gate", 100, "--max-fallback", 0]
    before = _snapshot(bundle.path)
    rc = _cli(*args)
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("segrt quantize: error")]
    assert len(lines) == 1, err
    assert _snapshot(bundle.path) == before
    assert "int8" not in json.loads((bundle.path / MANIFEST_NAME).read_text())["artifacts"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_zoo_models_quantize_end_to_end(tmp_path, model):
    """Random weights: the gate numbers mean nothing, the chain must still work end to end."""
    from segrt.export.api import export_bundle
    b = export_bundle(model, tmp_path / model, size=(64, 128), verify=False)
    calib = synthetic(256, 128, frames=100, seed=3)
    for precision in ("fp16", "int8"):
        rep = quantize_bundle(b, precision, calib=calib, calib_frames=8, eval_frames=4, enforce_gate=False,
                              max_fallback=0, progress=False)
        assert rep.artifact is not None
        path = b.path / rep.artifact.path
        out = session(str(path)).run(None, {"frame": np.zeros((1, 64, 128, 3), np.uint8)})[0]
        assert out.shape == (1, 64, 128) and out.dtype == np.uint8
    int8 = Bundle.open(b.path).manifest.artifacts["int8"]
    assert int8.details["quantized_nodes"] > 20 and int8.details["qdq_nodes"] > 40


def test_fp16_fallback_keeps_layers_in_fp32(bundle):
    # an unreachable gate makes the FP16 fallback rank every conv and keep the useful ones in FP32
    rep = quantize_bundle(bundle, "fp16", calib=CALIB, eval_frames=10, gate=100.0, enforce_gate=False,
                          max_fallback=2, progress=False)
    fb = rep.fallback
    assert fb is not None and fb.candidates == 3 and len(fb.ranking) == 3
    assert len(rep.excluded) <= 2
    fp32_kept = rep.details["fp16_pass"]["fp32_ops"].get("Conv", 0)
    assert fp32_kept == len(rep.excluded)
    if rep.excluded:
        assert fb.final >= fb.baseline
