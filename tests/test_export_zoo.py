"""The model zoo: names, did-you-mean, default configs, the shipped demo entry, `segrt models`."""
from __future__ import annotations

import json

import pytest
import torch

from segrt.errors import ModelNotFoundError
from segrt.export import zoo
from segrt.export.zoo import get_entry, list_entries

from _export_helpers import cli

REQUIRED = (
    "fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2", "unet", "deeplabv3plus_resnet50", "demo_unet",
)


def test_zoo_holds_every_required_model_with_a_cpu_sized_default():
    names = {e.name for e in list_entries()}
    assert set(REQUIRED) <= names
    for e in list_entries():
        h, w = e.input_size
        assert h * w <= 320 * 480, e.name
        assert h % e.size_multiple == 0 and w % e.size_multiple == 0, e.name
        assert e.family in ("semantic", "instances")
    assert get_entry("maskrcnn_resnet50_fpn").input_size == (320, 480)
    assert get_entry("fcn_resnet50").input_size == (256, 512)
    assert get_entry("maskrcnn_resnet50_fpn").num_classes == 91
    assert get_entry("deeplabv3_resnet50").classes[15] == "person"


@pytest.mark.parametrize("typo, expected", [
    ("lraspp_mobilenet_v3_larg", "lraspp_mobilenet_v3_large"),
    ("deeplabv3_resnet5", "deeplabv3_resnet50"),
    ("fcn", "fcn_resnet50"),
    ("maskrcnn", "maskrcnn_resnet50_fpn"),
])
def test_unknown_name_suggests_the_closest(typo, expected):
    with pytest.raises(ModelNotFoundError) as err:
        get_entry(typo)
    assert f"unknown model '{typo}'" in str(err.value)
    assert "did you mean" in str(err.value) and expected in str(err.value)


def test_unrelated_name_points_to_segrt_models():
    with pytest.raises(ModelNotFoundError, match="segrt models"):
        get_entry("yolov8-seg-xyz")


def test_build_gives_eval_model_with_requested_classes():
    m = get_entry("lraspp_mobilenet_v3_large").build(5)
    assert not m.training
    with torch.no_grad():
        out = m(torch.zeros(1, 3, 64, 64))["out"]
    assert tuple(out.shape) == (1, 5, 64, 64)
    assert get_entry("unet").count_params() == sum(p.numel() for p in get_entry("unet").build().parameters())


def test_deeplabv3plus_upsamples_to_input_and_has_a_low_level_skip():
    from segrt.export.models.deeplabv3plus import DeepLabV3Plus

    m = DeepLabV3Plus(4, backbone="mobilenet_v3_large").eval()
    with torch.no_grad():
        low, high = m.backbone(torch.zeros(1, 3, 64, 96))
        out = m(torch.zeros(1, 3, 64, 96))
    assert tuple(low.shape[-2:]) == (16, 24) and tuple(high.shape[-2:]) == (4, 6)  # stride 4 and 16
    assert tuple(out.shape) == (1, 4, 64, 96)


def _install_demo(folder, monkeypatch):
    from segrt.export.models.unet import UNet

    folder.mkdir()
    torch.manual_seed(1)
    net = UNet(3, depth=2, base_width=4)
    torch.save(net.state_dict(), folder / "demo_unet.pth")
    (folder / "demo_unet.json").write_text(json.dumps({
        "arch": "unet", "params": {"depth": 2, "base_width": 4}, "classes": ["bg", "road", "car"],
        "palette": [[0, 0, 0], [128, 64, 128], [142, 0, 0]], "input_size": [32, 64],
        "mean": [110.0, 111.0, 112.0], "std": [50.0, 51.0, 52.0], "color_order": "RGB",
        "metrics": {"miou_heldout": 0.5}}))
    monkeypatch.setattr(zoo, "shipped_weights_dir", lambda: folder)
    zoo.reset_cache()
    return net


def test_demo_unet_says_clearly_when_its_weights_are_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "shipped_weights_dir", lambda: tmp_path / "none")
    zoo.reset_cache()
    try:
        entry = {e.name: e for e in list_entries()}["demo_unet"]
        assert "demo_unet.json" in entry.unavailable and "not found" in entry.unavailable
        with pytest.raises(ModelNotFoundError, match="not available.*not found"):
            get_entry("demo_unet")
    finally:
        zoo.reset_cache()


def test_demo_unet_loads_its_shipped_spec_and_weights(tmp_path, monkeypatch):
    net = _install_demo(tmp_path / "weights", monkeypatch)
    try:
        e = get_entry("demo_unet")
        assert e.classes == ("bg", "road", "car") and e.input_size == (32, 64)
        assert e.mean == (110.0, 111.0, 112.0) and e.palette[1] == (128, 64, 128)
        assert e.weights == tmp_path / "weights" / "demo_unet.pth"
        from segrt.export.api import export_bundle

        b = export_bundle("demo_unet", tmp_path / "bundle")
        m = b.manifest
        assert m.classes == ("bg", "road", "car") and m.palette[2] == (142, 0, 0)
        assert (m.input.height, m.input.width) == (32, 64)
        assert m.preprocess.mean == (110.0, 111.0, 112.0)
        assert m.source["random_init"] is False
        assert m.source["weights"]["path"].endswith("demo_unet.pth")
        assert m.source["params_count"] == sum(p.numel() for p in net.parameters())
        assert m.source["provenance"]["metrics"] == {"miou_heldout": 0.5}
        assert e.size_multiple == 4  # 2 ** depth
    finally:
        zoo.reset_cache()


def test_segrt_models_lists_size_classes_and_params(capsys):
    rc, out, err = cli(capsys, "models")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["name", "family", "input", "classes", "params"]
    row = next(ln for ln in lines if ln.startswith("maskrcnn_resnet50_fpn "))
    assert "instances" in row and "320x480" in row and " 91 " in row and "M" in row
    row = next(ln for ln in lines if ln.startswith("lraspp_mobilenet_v3_large "))
    assert "256x512" in row and "3.22M" in row
    rc, out, _ = cli(capsys, "models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["fcn_resnet101"]["params_m"] == pytest.approx(51.95, abs=0.01)
