"""COCO box/mask AP of instance bundles, by pycocotools, on a tiny COCO set made on the fly.

The bundle's graph returns fixed detections, so the expected AP is known by construction:
detections equal to the ground truth give 1.0; dropping one of two same-category instances
leaves recall 0.5, which pycocotools' 101-point interpolation turns into AP = 51/101.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from _runtime_helpers import instances_bundle

pytest.importorskip("pycocotools")

from segrt.calibration.instance_metrics import AP_KEYS, CocoSet, evaluate_instance_bundle  # noqa: E402
from segrt.errors import ConfigError, SourceError  # noqa: E402

SIZE = 64
# two people and a car, boxes on whole pixels (xyxy); each small (< 32x32)
GT_BOXES = [(4, 6, 20, 30), (30, 8, 50, 24), (10, 40, 40, 60)]
GT_CLASSES = ["person", "person", "car"]
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}]
CLASSES = ("__background__", "person", "car")


def _coco_set(folder):
    from pycocotools import mask as mask_utils

    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((SIZE, SIZE, 3), 90, np.uint8))
    anns = []
    for i, ((x0, y0, x1, y1), name) in enumerate(zip(GT_BOXES, GT_CLASSES), start=1):
        m = np.zeros((SIZE, SIZE), np.uint8)
        m[y0:y1, x0:x1] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        cat = next(c["id"] for c in CATEGORIES if c["name"] == name)
        anns.append({"id": i, "image_id": 1, "category_id": cat, "segmentation": rle, "iscrowd": 0,
                     "area": float(m.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0]})
    ann = {"images": [{"id": 1, "file_name": "a.png", "width": SIZE, "height": SIZE}],
           "annotations": anns, "categories": CATEGORIES}
    (folder / "instances.json").write_text(json.dumps(ann))
    return f"coco://{folder}?ann={folder / 'instances.json'}"


def _bundle(path, keep, rows=None):
    boxes = [GT_BOXES[i] for i in keep]
    labels = [CLASSES.index(GT_CLASSES[i]) for i in keep]
    scores = [0.9 - 0.1 * n for n in range(len(keep))]
    masks = np.ones((len(keep), 1, 28, 28), np.float32)  # a full box: pasted, exactly the GT rectangle
    return instances_bundle(path, SIZE, SIZE, boxes, labels, scores, masks, classes=CLASSES, rows=rows)


@pytest.mark.parametrize("rows", [None, 10], ids=["k-rows", "static-10"])
def test_a_perfect_prediction_scores_one(tmp_path, rows):
    uri = _coco_set(tmp_path / "coco")
    scores = evaluate_instance_bundle(_bundle(tmp_path / "b", [0, 1, 2], rows), uri)
    assert scores.images == 1 and scores.detections == 3
    for table in (scores.box, scores.mask):
        assert table["AP"] == pytest.approx(1.0) and table["AP50"] == pytest.approx(1.0)
        assert table["AP75"] == pytest.approx(1.0) and table["APs"] == pytest.approx(1.0)
        assert table["APm"] is None and table["APl"] is None  # no medium/large ground truth
    rec = scores.as_record()
    assert rec["implementation"].startswith("pycocotools") and set(rec["mask"]) == set(AP_KEYS)


def test_a_dropped_instance_lowers_recall_as_pycocotools_computes(tmp_path):
    uri = _coco_set(tmp_path / "coco")
    scores = evaluate_instance_bundle(_bundle(tmp_path / "b", [0, 2]), uri)  # the second person is missed
    # person: recall 0.5 at precision 1 -> 51 of 101 recall points; car: 1.0; AP is their mean
    person_ap = 51 / 101
    for table in (scores.box, scores.mask):
        assert table["AP"] == pytest.approx((person_ap + 1.0) / 2)
        assert table["AP50"] == pytest.approx((person_ap + 1.0) / 2)


def test_a_shifted_mask_keeps_box_ap_and_loses_mask_ap(tmp_path):
    uri = _coco_set(tmp_path / "coco")
    keep = [0, 1, 2]
    masks = np.zeros((3, 1, 28, 28), np.float32)
    masks[:, :, :, :7] = 1.0  # only the left quarter of each box: mask IoU 0.25
    b = instances_bundle(tmp_path / "b", SIZE, SIZE, [GT_BOXES[i] for i in keep],
                         [CLASSES.index(GT_CLASSES[i]) for i in keep], [0.9, 0.8, 0.7], masks, classes=CLASSES)
    scores = evaluate_instance_bundle(b, uri)
    assert scores.box["AP"] == pytest.approx(1.0)
    assert scores.mask["AP50"] == pytest.approx(0.0) and scores.mask["AP"] == pytest.approx(0.0)


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="coco://IMAGES"):
        CocoSet.from_uri("coco://only-images")
    with pytest.raises(SourceError, match="does not exist"):
        CocoSet.from_uri(f"coco://{tmp_path}?ann=missing.json")
    uri = _coco_set(tmp_path / "coco")
    other = instances_bundle(tmp_path / "o", SIZE, SIZE, [GT_BOXES[0]], [1], [0.9], np.ones((1, 1, 28, 28), np.float32),
                             classes=("__background__", "zebra"))
    with pytest.raises(ConfigError, match="no class of o is a category"):
        evaluate_instance_bundle(other, uri)


def test_segrt_eval_on_an_instance_bundle_writes_table_json_csv_and_manifest(tmp_path, capsys):
    import csv

    from segrt.runtime.bundle import Bundle
    from segrt.tools.cli import main

    uri = _coco_set(tmp_path / "coco")
    bundle = _bundle(tmp_path / "b", [0, 2], rows=10)  # the second person is missed
    expected = (51 / 101 + 1.0) / 2
    out = tmp_path / "report"
    assert main(["eval", str(bundle.path), "--data", uri, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "box" in printed and "mask" in printed and f"{100 * expected:.2f}" in printed
    report = json.loads((out / "eval.json").read_text())
    (run,) = report["runs"]
    assert run["precision"] == "fp32" and run["backend"] == "onnxruntime" and run["detections"] == 2
    assert run["mask"]["AP"] == pytest.approx(expected) and run["box"]["AP50"] == pytest.approx(expected)
    assert run["mask"]["APl"] is None
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert [(r["precision"], r["task"]) for r in rows] == [("fp32", "box"), ("fp32", "mask")]
    assert float(rows[1]["AP"]) == pytest.approx(expected, abs=1e-6) and rows[1]["APm"] == ""
    stored = Bundle.open(bundle.path).manifest.artifacts["fp32"].details["eval"]["onnxruntime"][uri]
    assert stored["metric"] == "coco_ap" and stored["mask"]["AP"] == pytest.approx(expected)
    assert stored["frames"] == 1


def test_segrt_eval_on_an_instance_bundle_wants_a_coco_set(tmp_path):
    from segrt.tools.eval_run import evaluate_and_write

    bundle = _bundle(tmp_path / "b", [0], rows=4)
    with pytest.raises(ConfigError, match="coco://"):
        evaluate_and_write(bundle.path, str(tmp_path), progress=False)
