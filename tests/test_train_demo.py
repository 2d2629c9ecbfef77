"""The demo-model trainer runs end to end, and the shipped weights are accurate on held-out seeds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segrt.export.models.unet import UNet
from segrt.runtime.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from segrt.tools import train_demo

WEIGHTS = Path(train_demo.__file__).resolve().parent.parent / "weights"


def _load(stem: Path) -> tuple[UNet, dict]:
    meta = json.loads(stem.with_suffix(".json").read_text())
    model = UNet(len(meta["classes"]), **meta["params"])
    state = torch.load(stem.with_suffix(".pth"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)  # strict: every key present, every shape right
    return model.eval(), meta


def test_trainer_runs_end_to_end_at_tiny_size(tmp_path):
    rc = train_demo.main([
        "--out", str(tmp_path), "--name", "tiny", "--steps", "6", "--batch", "2",
        "--input-size", "64x128", "--crop", "32x64", "--depth", "2", "--base-width", "4",
        "--workers", "0", "--eval-seeds", "0-1", "--eval-frames", "2", "--log-every", "3",
    ])
    assert rc == 0
    model, meta = _load(tmp_path / "tiny")
    assert meta["arch"] == "unet"
    assert meta["params"] == {"depth": 2, "base_width": 4, "bilinear": True}
    assert meta["classes"] == list(SYNTHETIC_CLASSES)
    assert meta["palette"] == [list(c) for c in SYNTHETIC_PALETTE]
    assert meta["input_size"] == [64, 128] and meta["color_order"] == "RGB"
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert all(20 < m < 235 for m in meta["mean"]) and all(5 < s < 128 for s in meta["std"])
    assert meta["train"]["steps"] == 6 and meta["train"]["torch"] == torch.__version__
    m = meta["metrics"]
    assert m["eval_seeds"] == [0, 1] and m["eval_frames"] == 4
    assert 0.0 <= m["miou_heldout"] <= 1.0
    assert set(m["per_class_iou"]) == set(SYNTHETIC_CLASSES)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 128)).shape == (1, len(SYNTHETIC_CLASSES), 64, 128)
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no temporaries


def test_miou_from_confusion():
    conf = np.zeros((3, 3), np.int64)
    label = np.array([[0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1]], np.uint8)
    train_demo.confusion_update(conf, label, pred)
    iou = train_demo.iou_from_confusion(conf)
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(2 / 3)
    assert np.isnan(iou[2])  # absent class: excluded from the mean, not counted as 0 or 1


def test_shipped_weights_file():
    pth, meta_path = WEIGHTS / "demo_unet.pth", WEIGHTS / "demo_unet.json"
    assert pth.is_file() and meta_path.is_file()
    assert pth.stat().st_size < 5 * 1024 * 1024
    meta = json.loads(meta_path.read_text())
    assert meta["classes"] == list(SYNTHETIC_CLASSES)
    assert meta["metrics"]["miou_heldout"] >= 0.90
    assert all(s < train_demo.TRAIN_SEED_BASE for s in meta["metrics"]["eval_seeds"])
    state = torch.load(pth, map_location="cpu", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())


def test_shipped_weights_reach_miou_on_heldout_seeds():
    """Recompute mIoU on a few held-out frames (not the trainer's set) with torch eval."""
    model, meta = _load(WEIGHTS / "demo_unet")
    h, w = meta["input_size"]
    metrics = train_demo.evaluate(model, meta["mean"], meta["std"], (h, w),
                                  seeds=(11, 101, 202), frames_per_seed=3,
                                  sizes=((1920, 1080), (1280, 720)))
    assert metrics["eval_frames"] == 9
    assert metrics["miou_heldout"] >= 0.90, metrics["per_class_iou"]
