"""Tiny datasets in the standard layouts, written on the fly (VOC, Cityscapes, ADE20K)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segrt.runtime.class_presets import CITYSCAPES_TABLE, voc_palette


def _image(rng, h, w):
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def make_voc(root: Path, n: int = 3, size=(40, 56), num_classes: int = 21, seed: int = 0) -> Path:
    """VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/val.txt}; labels with a 255 border."""
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True, exist_ok=True)
    ids, labels = [], []
    flat_palette = [v for c in voc_palette(256) for v in c]
    for i in range(n):
        name = f"2007_{i:06d}"
        h, w = size[0] + 4 * i, size[1]
        cv2.imwrite(str(base / "JPEGImages" / f"{name}.jpg"), _image(rng, h, w))
        lab = rng.integers(0, num_classes, (h, w), dtype=np.uint8)
        lab[:, :2] = 255  # VOC's void border
        im = Image.frombytes("P", (w, h), lab.tobytes())
        im.putpalette(flat_palette)
        im.save(base / "SegmentationClass" / f"{name}.png")
        ids.append(name)
        labels.append(lab)
    (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids) + "\n")
    (base / "ImageSets/Segmentation/train.txt").write_text(ids[0] + "\n")
    return root


def make_cityscapes(root: Path, split: str = "val", seed: int = 1) -> tuple[Path, list[np.ndarray]]:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/*_gtFine_labelIds.png."""
    rng = np.random.default_rng(seed)
    label_ids = np.array([t[1] for t in CITYSCAPES_TABLE] + [0, 1, 4, 9, 14, 29, 30], np.uint8)
    stored = []
    for city, k in (("aachen", 2), ("bonn", 1)):
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for j in range(k):
            stem = f"{city}_{j:06d}_000019"
            cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), _image(rng, 32, 64))
            lab = label_ids[rng.integers(0, len(label_ids), (32, 64))]
            cv2.imwrite(str(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"), lab)
            stored.append(lab)
    return root, stored


def make_ade20k(root: Path, split: str = "validation", n: int = 2, seed: int = 2) -> tuple[Path, list[np.ndarray]]:
    """ADEChallengeData2016/{images,annotations}/<split>/ADE_val_*.{jpg,png}; ids 0..150 (0 = other)."""
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    (base / "images" / split).mkdir(parents=True, exist_ok=True)
    (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
    stored = []
    for i in range(n):
        stem = f"ADE_val_{i:08d}"
        cv2.imwrite(str(base / "images" / split / f"{stem}.jpg"), _image(rng, 24, 40))
        lab = rng.integers(0, 151, (24, 40), dtype=np.uint8)
        cv2.imwrite(str(base / "annotations" / split / f"{stem}.png"), lab)
        stored.append(lab)
    return root, stored
