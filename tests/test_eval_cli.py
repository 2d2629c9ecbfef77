"""``segrt eval`` end to end on the tiny bundle (numpy reference model) and an images+masks folder."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from segrt.calibration.dataset_eval import evaluate_bundle
from segrt.errors import BundleError, SourceError
from segrt.runtime.bundle import Bundle
from segrt.tools.cli import main
from segrt.tools.tiny_model import TINY_CLASSES, reference_mask, tiny_bundle
from tests.test_eval_metrics import mmseg_reference

SIZES = [(32, 48), (60, 90), (45, 45), (32, 48)]  # mixed sizes: resized to 32x48 and back


def _scene(i: int, h: int, w: int):
    rng = np.random.default_rng(i)
    img = np.zeros((h, w, 3), np.uint8)
    lab = np.zeros((h, w), np.uint8)
    colours = {1: (0, 0, 255), 2: (0, 255, 0), 3: (255, 0, 0)}
    for k, (cls, bgr) in enumerate(colours.items()):
        if i == 2 and cls == 3:
            continue
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        img[y0:y0 + h // 3, x0:x0 + w // 3] = bgr
        lab[y0:y0 + h // 3, x0:x0 + w // 3] = cls
    img = cv2.add(img, rng.integers(0, 40, img.shape, dtype=np.uint8))
    lab[: max(1, h // 10)] = 255
    if i == 3:
        lab[:] = 255  # an all-ignore image
    return img, lab


@pytest.fixture()
def dataset(tmp_path):
    (tmp_path / "ds/images").mkdir(parents=True)
    (tmp_path / "ds/masks").mkdir()
    for i, (h, w) in enumerate(SIZES):
        img, lab = _scene(i, h, w)
        cv2.imwrite(str(tmp_path / f"ds/images/{i:03d}.png"), img)
        cv2.imwrite(str(tmp_path / f"ds/masks/{i:03d}.png"), lab)
    return tmp_path / "ds"


def _expected(model_hw=(32, 48)):
    preds, labels = [], []
    for i, (h, w) in enumerate(SIZES):
        img, lab = _scene(i, h, w)
        small = cv2.resize(img, (model_hw[1], model_hw[0]), interpolation=cv2.INTER_LINEAR)
        mask = reference_mask(small[None])[0]
        preds.append(cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT))
        labels.append(lab)
    return mmseg_reference(preds, labels, len(TINY_CLASSES))


def test_eval_matches_the_independent_formula_and_is_stored(tmp_path, dataset):
    bundle = tiny_bundle(tmp_path / "b")
    report = evaluate_bundle(bundle.path, str(dataset), progress=False)
    ref = _expected()
    run = report.runs[0]
    assert report.frames == len(SIZES)
    assert run.result.miou == pytest.approx(ref["mIoU"], abs=1e-9)
    assert run.result.aacc == pytest.approx(ref["aAcc"], abs=1e-9)
    assert run.result.macc == pytest.approx(ref["mAcc"], abs=1e-9)
    np.testing.assert_allclose(run.result.iou, ref["IoU"], atol=1e-9, equal_nan=True)
    assert 0.2 < run.result.miou < 1.0  # a real score, not a degenerate one
    stored = Bundle.open(bundle.path).manifest.artifacts["fp32"].details["eval"]["onnxruntime"][str(dataset)]
    assert stored["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-6)
    assert stored["frames"] == len(SIZES)


def test_unfused_bundle_scores_the_same(tmp_path, dataset):
    fused = evaluate_bundle(tiny_bundle(tmp_path / "f").path, str(dataset), progress=False, store=False)
    unfused = evaluate_bundle(tiny_bundle(tmp_path / "u", fused=False).path, str(dataset), progress=False,
                              store=False)
    assert unfused.runs[0].result.miou == pytest.approx(fused.runs[0].result.miou, abs=1e-9)


def test_cli_writes_table_json_csv_and_charts(tmp_path, dataset, capsys):
    bundle = tiny_bundle(tmp_path / "b")
    out = tmp_path / "out"
    rc = main(["eval", str(bundle.path), "--data", str(dataset), "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0
    ref = _expected()
    assert f"{100 * ref['mIoU']:.2f}" in text and "background" in text
    data = json.loads((out / "eval.json").read_text())
    assert data["runs"][0]["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-6)
    assert np.asarray(data["runs"][0]["confusion"]).shape == (4, 4)
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert float(rows[0]["mIoU"]) == pytest.approx(ref["mIoU"], abs=1e-6)
    assert [r["class"] for r in rows[1:]] == list(TINY_CLASSES)
    pytest.importorskip("matplotlib")
    for name in ("confusion_fp32_onnxruntime.png", "iou_per_class.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_precision_names_the_fix(tmp_path, dataset):
    bundle = tiny_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="no int8 model") as exc:
        evaluate_bundle(bundle.path, str(dataset), precisions="fp32,int8", progress=False)
    assert "segrt quantize" in exc.value.hint


def test_unlabelled_source_is_refused(tmp_path, dataset):
    bundle = tiny_bundle(tmp_path / "b")
    with pytest.raises(SourceError, match="no labels"):
        evaluate_bundle(bundle.path, str(dataset / "images" / "000.png"), progress=False)


def test_limit_stops_early_and_counts_only_those_frames(tmp_path, dataset):
    bundle = tiny_bundle(tmp_path / "b")
    report = evaluate_bundle(bundle.path, str(dataset), limit=2, progress=False, store=False)
    assert report.frames == 2 and report.runs[0].result.frames == 2
    full = evaluate_bundle(bundle.path, str(dataset), progress=False, store=False)
    assert report.runs[0].result.pixels < full.runs[0].result.pixels


def test_prefetch_thread_changes_nothing_but_speed(tmp_path, dataset):
    bundle = tiny_bundle(tmp_path / "b")
    a = evaluate_bundle(bundle.path, str(dataset), progress=False, store=False, prefetch=True)
    b = evaluate_bundle(bundle.path, str(dataset), progress=False, store=False, prefetch=False)
    assert a.runs[0].result.to_dict() == b.runs[0].result.to_dict()
    np.testing.assert_array_equal(a.runs[0].confusion, b.runs[0].confusion)
