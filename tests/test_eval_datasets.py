"""The path end to end on a generated VOC-layout set: a torchvision model (random weights) exported with
``--classes voc``, quantized with ``--calib voc:// --eval voc:// --gate-miou``, then ``segrt eval``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from segrt.calibration.gate import AccuracyReport, PrecisionAccuracy
from segrt.errors import AccuracyGateError, ConfigError
from segrt.runtime.bundle import Bundle
from segrt.runtime.class_presets import class_preset
from segrt.tools.cli import main
from tests._dataset_helpers import make_voc


@pytest.fixture(scope="module")
def voc_bundle(tmp_path_factory):
    from segrt.export.api import export_bundle

    tmp = tmp_path_factory.mktemp("voc")
    root = make_voc(tmp / "data", n=6)
    bundle = export_bundle("lraspp_mobilenet_v3_large", tmp / "bundle", size=(64, 96), classes="voc")
    return bundle, root


def test_voc_preset_sets_names_and_palette(voc_bundle):
    bundle, _ = voc_bundle
    m = Bundle.open(bundle.path).manifest
    assert m.classes == class_preset("voc").classes
    assert m.palette == class_preset("voc").palette_bgr()


def test_quantize_on_voc_with_miou_gate_then_eval(voc_bundle, tmp_path, capsys):
    bundle, root = voc_bundle
    uri = f"voc://{root}?split=val"
    rc = main(["quantize", str(bundle.path), "--precision", "int8", "--calib", uri, "--calib-frames", "4",
               "--eval", uri, "--eval-frames", "2", "--gate-miou", "100", "--max-fallback", "0", "--allow-small-eval", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "mIoU drop vs labels" in text and "PASSED" in text
    acc = Bundle.open(bundle.path).manifest.artifacts["int8"].accuracy
    assert acc["gate_miou_drop"] == 1.0 and acc["fp32_miou_vs_labels"] is not None

    out = tmp_path / "eval"
    rc = main(["eval", str(bundle.path), "--data", uri, "--precision", "fp32,int8", "--out", str(out),
               "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "aeroplane" in text and "int8" in text
    data = json.loads((out / "eval.json").read_text())
    assert [r["precision"] for r in data["runs"]] == ["fp32", "int8"]
    assert data["frames"] == 6
    for r in data["runs"]:
        assert 0.0 <= r["mIoU"] <= 1.0 and 0.0 <= r["aAcc"] <= 1.0
        assert np.asarray(r["confusion"]).sum() == r["pixels"]
    stored = Bundle.open(bundle.path).manifest.artifacts["int8"].details["eval"]["onnxruntime"][uri]
    assert stored["mIoU"] == pytest.approx(data["runs"][1]["mIoU"])


def test_miou_gate_needs_labels(voc_bundle):
    from segrt.calibration.api import quantize_bundle

    bundle, _ = voc_bundle
    with pytest.raises(ConfigError, match="--gate-miou needs labels"):
        quantize_bundle(bundle.path, "fp16", eval_source="synthetic://?size=96x64&frames=4", eval_frames=2,
                        gate_miou=1.0, progress=False)


def _row(precision, miou_labels):
    return PrecisionAccuracy(precision, vs_fp32={"agreement": 0.995, "miou": 0.9, "per_class_iou": [0.9, 0.9]}
                             if precision != "fp32" else None,
                             vs_labels={"agreement": 0.9, "miou": miou_labels, "per_class_iou": [miou_labels] * 2})


def test_miou_gate_decides_on_the_drop_in_points():
    report = AccuracyReport("int8", 0.0, ("bg", "thing"), [_row("fp32", 0.70), _row("int8", 0.68)],
                            gate_miou_drop=0.01)
    assert report.miou_drop == pytest.approx(0.02)
    assert not report.passed
    assert "2.00 points > 1.00 points -> FAILED" in report.to_text()
    with pytest.raises(AccuracyGateError, match="mIoU drop vs labels 2.00 points"):
        report.check()
    loose = AccuracyReport("int8", 0.0, ("bg", "thing"), [_row("fp32", 0.70), _row("int8", 0.68)],
                           gate_miou_drop=0.03)
    assert loose.passed and loose.to_manifest()["gate_miou_drop"] == 0.03


def test_predictions_are_written_in_the_datasets_ids(voc_bundle, tmp_path):
    from PIL import Image

    from segrt.calibration.dataset_eval import evaluate_bundle
    from segrt.export.api import export_bundle
    from segrt.runtime.class_presets import CITYSCAPES_TABLE, train_ids_from_label_ids
    from tests._dataset_helpers import make_cityscapes

    bundle, root = voc_bundle
    evaluate_bundle(bundle.path, f"voc://{root}", progress=False, store=False, predictions_dir=tmp_path / "voc")
    files = sorted((tmp_path / "voc" / "fp32").glob("*.png"))
    assert [f.stem for f in files] == [f"2007_{i:06d}" for i in range(6)]
    with Image.open(files[0]) as im:
        assert im.mode == "P" and im.getpalette()[3:6] == [128, 0, 0]  # VOC's palette: aeroplane

    city_root, _ = make_cityscapes(tmp_path / "city")
    city = export_bundle("lraspp_mobilenet_v3_large", tmp_path / "cb", size=(32, 64), classes="cityscapes",
                         verify=False)
    report = evaluate_bundle(city.path, f"cityscapes://{city_root}", progress=False, store=False,
                             predictions_dir=tmp_path / "cs")
    written = sorted((tmp_path / "cs" / "fp32").glob("*.png"))
    assert len(written) == report.frames == 3
    label_ids = {t[1] for t in CITYSCAPES_TABLE}
    from segrt.runtime.sources import open_source

    total = np.zeros(19, np.int64)
    with open_source(f"cityscapes://{city_root}") as src:
        for f, frame in zip(written, src):
            ids = np.asarray(Image.open(f))
            assert set(np.unique(ids)) <= label_ids  # labelIds, what the benchmark server scores
            scored = frame.label != 255
            total += np.bincount(train_ids_from_label_ids()[ids][scored], minlength=19)[:19]
    assert total.tolist() == list(report.runs[0].result.pred_pixels)  # the same predictions, mapped back
