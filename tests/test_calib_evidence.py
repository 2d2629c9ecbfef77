"""The gate refuses to pass on too little evidence, says when agreement is meaningless,
and a failing result never replaces an existing artifact."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from _calib_helpers import colour_bundle, synthetic
from segrt.calibration.api import quantize_bundle
from segrt.calibration.evidence import (DOMINANT_SHARE, MIN_CLASS_PIXELS, MIN_EVAL_FRAMES, Evidence,
                                        evidence_from_masks)
from segrt.calibration.gate import AccuracyReport, PrecisionAccuracy
from segrt.errors import AccuracyGateError
from segrt.runtime.bundle import Bundle
from segrt.runtime.sources import open_source
from segrt.tools.cli import main

CALIB = synthetic(160, 120, frames=300, seed=1)


@pytest.fixture()
def bundle(tmp_path):
    return colour_bundle(tmp_path / "colour", 48, 64)


def _copies(folder, image, n):
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), image)
    return folder


def _scene_frame():
    with open_source(synthetic(160, 120, frames=1, seed=1)) as src:
        return next(iter(src)).image


def test_evidence_counts_reference_pixels_per_class():
    masks = [np.zeros((10, 20), np.uint8) for _ in range(3)]
    masks[0][:5] = 2
    masks[1][0, 0] = 200  # an id outside the classes is not counted
    ev = evidence_from_masks(masks, ("a", "b", "c"))
    assert ev.frames == 3 and ev.class_pixels == (499, 0, 100) and ev.pixels == 599
    assert ev.dominant == ("a", pytest.approx(499 / 599))


def test_shortfalls_name_frames_and_classes():
    ok = Evidence(MIN_EVAL_FRAMES, ("a", "b"), (MIN_CLASS_PIXELS, MIN_CLASS_PIXELS))
    assert ok.sufficient and ok.shortfalls() == []
    few = Evidence(MIN_EVAL_FRAMES - 1, ("a", "b"), (MIN_CLASS_PIXELS, MIN_CLASS_PIXELS - 1))
    reasons = few.shortfalls()
    assert len(reasons) == 2
    assert f"{MIN_EVAL_FRAMES - 1} distinct evaluation frames" in reasons[0]
    assert "1 class with" in reasons[1]


def test_a_dominant_class_makes_agreement_meaningless_in_the_report():
    n = 100_000
    other = int(n * (1 - DOMINANT_SHARE) / 2)  # well under the dominance threshold
    ev = Evidence(20, ("background", "person"), (n - other, other))
    assert not ev.agreement_meaningful
    rep = AccuracyReport("int8", 0.99, ev.classes,
                         [PrecisionAccuracy("fp32"), PrecisionAccuracy("int8", vs_fp32={
                             "agreement": 0.999, "miou": 0.9, "per_class_iou": [0.999, 0.8]})], evidence=ev)
    assert rep.passed  # enough evidence by count, but the note says what the number is worth
    text = rep.to_text()
    assert "meaningless" in text and "'background'" in text
    assert rep.to_manifest()["evidence"]["agreement_meaningful"] is False
    balanced = Evidence(20, ("background", "person"), (n // 2, n // 2))
    assert balanced.agreement_meaningful and balanced.meaningless_note() is None


def test_identical_frames_refuse_the_gate_and_keep_the_existing_artifact(bundle, tmp_path):
    good = quantize_bundle(bundle, "int8", calib=CALIB, calib_frames=30, eval_frames=12, gate=97.0,
                           max_fallback=0, progress=False)
    assert good.passed and good.accuracy.evidence.sufficient
    target = bundle.path / "model.int8.onnx"
    before = target.read_bytes(), (bundle.path / "segrt.json").read_bytes()
    same = _copies(tmp_path / "same", _scene_frame(), 60)
    with pytest.raises(AccuracyGateError, match="too little evidence.*1 distinct evaluation frame.*not written"):
        quantize_bundle(bundle, "int8", calib=str(same), progress=False)
    assert (target.read_bytes(), (bundle.path / "segrt.json").read_bytes()) == before
    # --no-gate registers a failing result only where nothing would be replaced
    with pytest.raises(AccuracyGateError, match="already exists.*kept unchanged"):
        quantize_bundle(bundle, "int8", calib=str(same), enforce_gate=False, progress=False)
    assert (target.read_bytes(), (bundle.path / "segrt.json").read_bytes()) == before


def test_small_eval_is_accepted_only_explicitly(bundle, tmp_path, capsys):
    same = _copies(tmp_path / "same", _scene_frame(), 60)
    rc = main(["quantize", str(bundle.path), "--precision", "int8", "--calib", str(same), "--no-progress"])
    assert rc == 2 and "too little evidence" in capsys.readouterr().err
    assert not (bundle.path / "model.int8.onnx").exists()
    rc = main(["quantize", str(bundle.path), "--precision", "int8", "--calib", str(same), "--no-progress",
               "--allow-small-eval"])
    out = capsys.readouterr().out
    assert rc == 0 and "accepted by --allow-small-eval" in out and "PASSED" in out
    acc = Bundle.open(bundle.path).manifest.artifacts["int8"].accuracy
    assert acc["allow_small_eval"] is True and acc["evidence"]["distinct_frames"] == 1


def test_no_gate_on_small_evidence_registers_it_as_failed(bundle, tmp_path):
    same = _copies(tmp_path / "same", _scene_frame(), 60)
    rep = quantize_bundle(bundle, "int8", calib=str(same), enforce_gate=False, progress=False)
    assert rep.accuracy.agreement_passed and not rep.passed
    assert any("too little evidence" in w for w in rep.warnings)
    assert Bundle.open(bundle.path).manifest.artifacts["int8"].accuracy["passed"] is False


def test_one_class_scene_says_agreement_is_meaningless_on_the_cli(bundle, tmp_path, capsys):
    # dark flat frames: the colour net answers "background" everywhere
    folder = tmp_path / "dark"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"d{i:02d}.png"), np.full((120, 160, 3), 4 * i, np.uint8))
    rc = main(["quantize", str(bundle.path), "--precision", "fp16", "--eval", str(folder), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "too little evidence" in err and "meaningless" in err
    rc = main(["quantize", str(bundle.path), "--precision", "fp16", "--eval", str(folder), "--no-progress",
               "--allow-small-eval"])
    out = capsys.readouterr().out
    assert rc == 0 and out.count("meaningless") >= 1 and "warning: FP32 predicts 'background'" in out
