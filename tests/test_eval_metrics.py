"""``segrt eval``'s metric against an independent implementation of mmsegmentation's IoUMetric formula.

The reference below is written from the formula (per image: drop ignore_index pixels, count
per-class intersection / prediction / label areas with a loop over classes; sum the areas over
the dataset; IoU = I / (P + L - I), Acc = I / L, NaN-skipping means, aAcc = sum I / sum L), not
from segrt's bincount code.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from segrt.calibration.iou_metric import IoUAccumulator


def mmseg_reference(preds, labels, n, ignore=255):
    inter = np.zeros(n)
    area_p = np.zeros(n)
    area_l = np.zeros(n)
    for p, lab in zip(preds, labels):
        keep = lab != ignore
        p, lab = p[keep].astype(int), lab[keep].astype(int)
        for c in range(n):
            inter[c] += np.sum((p == c) & (lab == c))
            area_p[c] += np.sum(p == c)
            area_l[c] += np.sum(lab == c)
    union = area_p + area_l - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
        acc = inter / area_l
    return {"aAcc": inter.sum() / area_l.sum(), "mIoU": np.nanmean(iou), "mAcc": np.nanmean(acc),
            "IoU": iou, "Acc": acc}


def ours(preds, labels, n):
    acc = IoUAccumulator(n)
    for p, lab in zip(preds, labels):
        acc.update(p, lab)
    return acc.result()


def assert_same(res, ref):
    assert res.aacc == pytest.approx(ref["aAcc"], abs=1e-12)
    assert res.miou == pytest.approx(ref["mIoU"], abs=1e-12)
    assert res.macc == pytest.approx(ref["mAcc"], abs=1e-12)
    np.testing.assert_allclose(np.array(res.iou), ref["IoU"], atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(np.array(res.acc), ref["Acc"], atol=1e-12, equal_nan=True)


def test_absent_class_is_nan_and_left_out_of_the_means():
    lab = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 0, 1]], np.uint8)
    res = ours([pred], [lab], 4)  # classes 2 and 3: in neither labels nor predictions
    assert math.isnan(res.iou[2]) and math.isnan(res.iou[3])
    assert math.isnan(res.acc[2]) and math.isnan(res.acc[3])
    # by hand: class 0: I=3, P=4, L=4 -> 3/5; class 1: I=3, P=4, L=4 -> 3/5
    assert res.iou[0] == pytest.approx(0.6) and res.iou[1] == pytest.approx(0.6)
    assert res.miou == pytest.approx(0.6)  # the mean of two, not of four
    assert res.aacc == pytest.approx(6 / 8)
    assert_same(res, mmseg_reference([pred], [lab], 4))


def test_class_only_predicted_counts_as_zero_iou():
    lab = np.zeros((3, 3), np.uint8)
    pred = np.zeros((3, 3), np.uint8)
    pred[0, 0] = 2
    res = ours([pred], [lab], 3)
    assert res.iou[2] == 0.0 and math.isnan(res.acc[2])
    assert res.miou == pytest.approx((8 / 9 + 0.0) / 2)
    assert_same(res, mmseg_reference([pred], [lab], 3))


def test_all_ignore_image_adds_nothing():
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 5, (20, 30), dtype=np.uint8)
    pred = rng.integers(0, 5, (20, 30), dtype=np.uint8)
    ignored = np.full((11, 7), 255, np.uint8)
    junk = rng.integers(0, 5, (11, 7), dtype=np.uint8)
    with_ignored = ours([pred, junk], [lab, ignored], 5)
    alone = ours([pred], [lab], 5)
    assert with_ignored.to_dict()["per_class"] == alone.to_dict()["per_class"]
    assert with_ignored.pixels == alone.pixels == lab.size
    assert with_ignored.frames == 2
    assert_same(with_ignored, mmseg_reference([pred, junk], [lab, ignored], 5))


def test_dataset_level_not_mean_of_images_on_mixed_sizes():
    rng = np.random.default_rng(7)
    shapes = [(5, 9), (64, 48), (17, 130), (1, 1)]
    labels, preds = [], []
    for h, w in shapes:
        lab = rng.integers(0, 6, (h, w), dtype=np.uint8)
        lab[rng.random((h, w)) < 0.1] = 255
        pred = np.where(rng.random((h, w)) < 0.7, lab, rng.integers(0, 6, (h, w))).astype(np.uint8)
        pred[pred == 255] = 0
        labels.append(lab)
        preds.append(pred)
    res = ours(preds, labels, 6)
    ref = mmseg_reference(preds, labels, 6)
    assert_same(res, ref)
    per_image = np.nanmean([np.nanmean(mmseg_reference([p], [lab], 6)["IoU"]) for p, lab in zip(preds, labels)])
    assert abs(res.miou - per_image) > 1e-3  # the two definitions differ here, and we are the dataset one


def test_out_of_range_ids_follow_the_histogram_rule():
    # label 9 (not 255) with 4 classes: no label bin, but its prediction counts; prediction 7: label area only
    lab = np.array([[0, 1, 9, 9], [2, 2, 3, 3]], np.uint8)
    pred = np.array([[0, 7, 1, 9], [2, 0, 3, 3]], np.uint8)
    res = ours([pred], [lab], 4)
    ref = mmseg_reference([pred], [lab], 4)
    assert_same(res, ref)
    assert res.label_pixels[1] == 1 and res.pred_pixels[1] == 1  # the 1 predicted on label 9


def test_confusion_rows_are_labels():
    lab = np.array([[0, 0, 1]], np.uint8)
    pred = np.array([[0, 1, 1]], np.uint8)
    acc = IoUAccumulator(2)
    acc.update(pred, lab)
    np.testing.assert_array_equal(acc.confusion, [[1, 1], [0, 1]])


def test_large_frame_matches_the_reference():
    rng = np.random.default_rng(11)
    lab = rng.integers(0, 21, (512, 1024), dtype=np.uint8)
    lab[:, :13] = 255
    pred = np.where(rng.random(lab.shape) < 0.8, lab % 21, rng.integers(0, 21, lab.shape)).astype(np.uint8)
    assert_same(ours([pred], [lab], 21), mmseg_reference([pred], [lab], 21))
