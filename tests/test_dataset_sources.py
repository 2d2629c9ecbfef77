"""voc://, cityscapes:// and ade20k:// on tiny datasets written in each layout; class presets."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segrt.errors import ConfigError, SourceError
from segrt.runtime.class_presets import (
    PRESETS,
    class_preset,
    label_ids_from_train_ids,
    train_ids_from_label_ids,
)
from segrt.runtime.sources import open_source
from tests._dataset_helpers import make_ade20k, make_cityscapes, make_voc


def test_voc_reads_the_split_with_palette_indices_as_labels(tmp_path):
    root = make_voc(tmp_path, n=3)
    src = open_source(f"voc://{root}?split=val")
    with src:
        frames = list(src)
        assert src.label_classes == PRESETS["voc"].classes
    assert len(frames) == 3
    png = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png"
    stored = np.asarray(Image.open(png))  # palette indices, not colours
    np.testing.assert_array_equal(frames[1].label, stored)
    assert frames[1].image.shape[:2] == stored.shape
    assert (frames[1].label[:, :2] == 255).all() and frames[1].label[:, 2:].max() <= 20
    with open_source(f"voc://{root / 'VOCdevkit' / 'VOC2012'}?split=train") as one:
        assert one.frame_count == 1  # the root may be VOC2012 itself; split picks the list


def test_voc_bad_layout_names_what_is_missing(tmp_path):
    root = make_voc(tmp_path)
    with pytest.raises(SourceError, match=r"missing the 'test' split list: .*ImageSets/Segmentation/test.txt"):
        open_source(f"voc://{root}?split=test")
    (root / "VOCdevkit/VOC2012/SegmentationClass/2007_000002.png").unlink()
    with pytest.raises(SourceError, match=r"1 listed files are missing \(first: .*2007_000002.png\)"):
        open_source(f"voc://{root}")
    with pytest.raises(SourceError, match="missing dataset root"):
        open_source(f"voc://{tmp_path / 'nowhere'}")
    with pytest.raises(SourceError, match="unknown parameter"):
        open_source(f"voc://{root}?splt=val")


def test_cityscapes_maps_label_ids_to_train_ids_and_back(tmp_path):
    root, stored = make_cityscapes(tmp_path)
    with open_source(f"cityscapes://{root}?split=val") as src:
        frames = list(src)
        assert len(src.label_classes) == 19 and src.label_classes[0] == "road"
    assert len(frames) == 3
    lab_ids = stored[0]
    got = frames[0].label
    assert (got[lab_ids == 7] == 0).all() and (got[lab_ids == 33] == 18).all()  # road, bicycle
    assert (got[np.isin(lab_ids, [0, 1, 4, 9, 14, 29, 30])] == 255).all()  # ignored classes
    assert set(np.unique(got)) <= set(range(19)) | {255}
    back = label_ids_from_train_ids()[got]  # predictions written for the benchmark server
    keep = got != 255
    np.testing.assert_array_equal(back[keep], lab_ids[keep])
    np.testing.assert_array_equal(train_ids_from_label_ids()[back[keep]], got[keep])


def test_cityscapes_bad_layout(tmp_path):
    root, _ = make_cityscapes(tmp_path)
    with pytest.raises(SourceError, match=r"missing the gtFine/train folder: .*gtFine/train"):
        (root / "leftImg8bit/train").mkdir()
        open_source(f"cityscapes://{root}?split=train")


def test_ade20k_reduces_the_zero_label(tmp_path):
    root, stored = make_ade20k(tmp_path)
    with open_source(f"ade20k://{root}") as src:  # split defaults to validation
        frames = list(src)
        assert len(src.label_classes) == 150 and src.label_classes[0] == "wall"
    raw, got = stored[1], frames[1].label
    assert (got[raw == 0] == 255).all()
    np.testing.assert_array_equal(got[raw > 0], raw[raw > 0] - 1)
    assert got.max() <= 149 or got.max() == 255
    from segrt.runtime.class_presets import ade20k_labels_from_reduced

    np.testing.assert_array_equal(ade20k_labels_from_reduced()[got], raw)  # back to the stored ids


def test_ade20k_bad_layout(tmp_path):
    with pytest.raises(SourceError, match=r"missing the images/validation folder"):
        (tmp_path / "ADEChallengeData2016").mkdir()
        open_source(f"ade20k://{tmp_path}")


def test_presets_have_official_palettes():
    voc = class_preset("voc")
    assert voc.palette_rgb[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert voc.palette_rgb[15] == (192, 128, 128)  # person
    city = class_preset("cityscapes")
    assert dict(zip(city.classes, city.palette_rgb))["car"] == (0, 0, 142)
    ade = class_preset("ade20k")
    assert len(ade.classes) == len(set(ade.classes)) == len(ade.palette_rgb) == 150
    assert ade.palette_rgb[0] == (120, 120, 120) and ade.palette_bgr()[2] == (230, 230, 6)
    with pytest.raises(ConfigError, match="no class preset"):
        class_preset("coco")
