"""``--weights torchvision`` / ``--weights NAME`` through torchvision's own loader and hub cache.

No model hub is reachable here, so the cache is seeded with a file of the official name holding
tensors of the right keys and shapes (a seeded random state_dict), exactly where torchvision's
loader looks: ``$TORCH_HOME/hub/checkpoints``.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from segrt.errors import WeightsError
from segrt.export.api import export_bundle
from segrt.export.torchvision_weights import names_torchvision_weights
from segrt.tools.cli import main

MODEL = "lraspp_mobilenet_v3_large"
FILE = "lraspp_mobilenet_v3_large-d234d4ea.pth"  # torchvision's official name for the VOC-label weights


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _seed_cache(cache_dir, seed: int = 123):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(seed)
    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sd = net.state_dict()
    torch.save(sd, cache_dir / FILE)
    return sd


def test_names():
    assert names_torchvision_weights("torchvision")
    assert names_torchvision_weights("COCO_WITH_VOC_LABELS_V1")
    assert names_torchvision_weights("LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1")
    assert not names_torchvision_weights("model.pth") and not names_torchvision_weights(None)


@pytest.mark.parametrize("weights", ["torchvision", "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"])
def test_cached_official_file_is_loaded_with_metadata(tmp_path, torch_home, weights):
    sd = _seed_cache(torch_home)
    bundle = export_bundle(MODEL, tmp_path / "b", size=(64, 96), weights=weights)
    m = bundle.manifest
    assert m.classes[0] == "__background__" and m.classes[15] == "person" and len(m.classes) == 21
    assert m.preprocess.mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))
    assert m.preprocess.std == pytest.approx((0.229 * 255, 0.224 * 255, 0.225 * 255))
    w = m.source["weights"]
    assert w["torchvision_weights"] == "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"
    assert w["path"] == str(torch_home / FILE) and m.source["random_init"] is False
    # the seeded tensors are the ones in the graph: the classifier's weights appear as an initializer
    g = onnx.load(str(bundle.path / "model.onnx"))
    want = sd["classifier.high_classifier.weight"].numpy()
    inits = [numpy_helper.to_array(i) for i in g.graph.initializer]
    assert any(a.shape == want.shape and np.allclose(a, want) for a in inits)


def test_offline_names_the_file_and_the_cache_path(tmp_path, torch_home, capsys):
    rc = main(["export", MODEL, "-o", str(tmp_path / "b"), "--size", "64x96", "--weights", "torchvision"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err
    assert FILE in err and str(torch_home) in err
    assert not (tmp_path / "b").exists()


def test_unknown_enum_value_lists_the_valid_ones(tmp_path, torch_home):
    with pytest.raises(WeightsError, match="has no value 'IMAGENET1K_V9'") as exc:
        export_bundle(MODEL, tmp_path / "b", size=(64, 96), weights="IMAGENET1K_V9")
    assert "COCO_WITH_VOC_LABELS_V1" in exc.value.hint
    with pytest.raises(WeightsError, match="weights of another model"):
        export_bundle(MODEL, tmp_path / "b", size=(64, 96), weights="FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1")
    assert os.environ["TORCH_HOME"].endswith("torch")
