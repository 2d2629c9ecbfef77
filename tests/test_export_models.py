"""Every zoo model exports at a small size and passes verification against PyTorch.

Heavy backbones and Mask R-CNN are ``slow`` (CI runs them). Mask R-CNN is checked at 128x160
against the instance I/O contract, and through the score-threshold probe a random or
background-biased model needs (see segrt.export.verify).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from segrt.export.api import export_bundle
from segrt.export.zoo import get_entry
from segrt.runtime.bundle import Bundle

from _export_helpers import run_onnx

LIGHT = ["lraspp_mobilenet_v3_large", "unet", "deeplabv3_mobilenet_v3_large", "deeplabv3plus_mobilenet_v3_large"]
HEAVY = ["fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3plus_resnet50"]


def _check_semantic(tmp_path, name, size):
    b = export_bundle(name, tmp_path / name, size=size)
    m = Bundle.open(b.path).manifest
    v = m.export["verification"]
    assert v["passed"] and v["mask_agreement_pct"] >= 99.0
    for p in v["per_input"]:  # deep random-init nets reach logits ~10: the bound is relative
        assert p["max_abs_diff"] <= p["limit"] and p["max_abs_diff"] <= 2e-3 * max(1.0, p["logit_scale"])
    assert m.source["model"] == name and m.source["random_init"] is True
    assert m.source["params_count"] == get_entry(name).count_params()
    assert m.export["opset"] == 17 and m.export["torch"] == torch.__version__
    assert m.export["seconds"] > 0 and m.export["passes"][-1]["pass"] == "trt_mask_cast"
    frame = np.full((1, *size, 3), 128, np.uint8)
    (mask,) = run_onnx(b.onnx_path("fp32", verify=True), {"frame": frame})
    assert mask.shape == (1, *size) and mask.dtype == np.uint8 and mask.max() < len(m.classes)


@pytest.mark.parametrize("name", LIGHT)
def test_light_zoo_models_export_and_verify(tmp_path, name):
    _check_semantic(tmp_path, name, (64, 64))


@pytest.mark.slow
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_zoo_models_export_and_verify(tmp_path, name):
    _check_semantic(tmp_path, name, (64, 64))


def _check_instances_contract(bundle, h, w, rows=100):
    m = bundle.manifest
    assert m.output.kind == "instances"
    assert m.output.names == ("boxes", "labels", "scores", "masks", "num_detections")
    assert m.input.name == "frame" and m.input.dtype == "uint8" and (m.input.height, m.input.width) == (h, w)
    assert m.output.num_classes == 91 and m.classes[1] == "person"
    import onnx

    graph = onnx.load(str(bundle.onnx_path("fp32"))).graph
    # static outputs: every dimension is a number, padded to `rows` (TensorRT preallocates them)
    declared = {o.name: [d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
                for o in graph.output}
    assert declared == {"boxes": [rows, 4], "labels": [rows], "scores": [rows], "masks": [rows, 1, 28, 28],
                        "num_detections": [1]}, declared
    frame = np.random.default_rng(5).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    boxes, labels, scores, masks, num = run_onnx(bundle.onnx_path("fp32"), {"frame": frame})
    assert boxes.shape == (rows, 4) and labels.shape == (rows,) and masks.shape == (rows, 1, 28, 28)
    k = int(num[0])
    assert num.dtype == np.int64 and 0 <= k <= rows
    assert not boxes[k:].any() and not labels[k:].any() and not scores[k:].any() and not masks[k:].any()
    boxes, labels, scores, masks = boxes[:k], labels[:k], scores[:k], masks[:k]
    assert boxes.dtype == np.float32 and labels.dtype == np.int64 and scores.dtype == np.float32
    assert masks.dtype == np.float32  # 28x28 probabilities, not pasted
    if k:
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (labels >= 1).all() and (np.diff(scores) <= 1e-6).all() and (scores >= 0.05).all()
        assert 0.0 <= masks.min() and masks.max() <= 1.0
    assert "Loop" not in {n.op_type for n in graph.node}  # no in-graph paste loop


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"])
def test_maskrcnn_exports_without_paste_and_verifies(tmp_path, name):
    b = export_bundle(name, tmp_path / name, size=(128, 160))
    v = b.manifest.export["verification"]
    assert b.manifest.export["exporter"] == "torchscript"
    assert v["detections_compared"] > 0 and v["matched_pct"] >= 90.0
    assert v["box_max_abs_diff_px"] <= 1.0 and v["score_max_abs_diff"] <= 1e-3
    _check_instances_contract(b, 128, 160)


@pytest.mark.slow
def test_maskrcnn_with_no_detections_is_verified_through_the_probe(tmp_path):
    """Weights whose classifier always says background: the shipped graph detects nothing."""
    entry = get_entry("maskrcnn_resnet50_fpn")
    torch.manual_seed(0)
    net = entry.build()
    with torch.no_grad():
        net.roi_heads.box_predictor.cls_score.bias[0] = 50.0
    ckpt = tmp_path / "background.pth"
    torch.save({"model": net.state_dict()}, ckpt)
    b = export_bundle("maskrcnn_resnet50_fpn", tmp_path / "b", size=(128, 160), weights=ckpt)
    v = b.manifest.export["verification"]
    assert v["shipped"]["detections"] == 0 and v["shipped"]["passed"]
    assert v["probe"]["graph"].startswith("probe") and v["probe"]["detections"] > 0
    assert v["detections_compared"] == v["probe"]["detections"] and v["matched_pct"] >= 90.0
    assert "box_score_thresh=0" in v["method"]
    assert sorted(p.name for p in b.path.iterdir()) == ["model.onnx", "segrt.json"]  # the probe is not shipped


@pytest.mark.slow
def test_maskrcnn_max_detections_sets_the_static_rows(tmp_path, capsys):
    from segrt.tools.cli import main

    assert main(["export", "maskrcnn_resnet50_fpn", "--size", "128x160", "--max-detections", "7",
                 "-o", str(tmp_path / "b")]) == 0
    b = Bundle.open(tmp_path / "b")
    _check_instances_contract(b, 128, 160, rows=7)
    v = b.manifest.export["verification"]
    assert v["detections_compared"] > 0 and v["matched_pct"] == 100.0


def test_max_detections_is_refused_where_it_does_not_apply(tmp_path):
    from segrt.errors import ConfigError

    with pytest.raises(ConfigError, match="--max-detections applies to Mask R-CNN only"):
        export_bundle("unet", tmp_path / "u", size=(64, 64), spec={"max_detections": 5}, verify=False)
    with pytest.raises(ConfigError, match="must be at least 1"):
        export_bundle("maskrcnn_resnet50_fpn", tmp_path / "m", size=(128, 160), spec={"max_detections": 0})


def test_maskrcnn_refuses_dynamic_and_mean_std(tmp_path):
    from segrt.errors import ConfigError

    with pytest.raises(ConfigError, match="--dynamic.* not supported for Mask R-CNN"):
        export_bundle("maskrcnn_resnet50_fpn", tmp_path / "b", size=(128, 160), dynamic=True)
    with pytest.raises(ConfigError, match="--mean/--std do not apply"):
        export_bundle("maskrcnn_resnet50_fpn", tmp_path / "b", size=(128, 160), spec={"mean": (1, 2, 3)})


@pytest.mark.slow
def test_maskrcnn_unfused_takes_float_rgb(tmp_path):
    b = export_bundle("maskrcnn_resnet50_fpn", tmp_path / "b", size=(128, 160), fuse=False)
    m = b.manifest
    assert (m.input.name, m.input.dtype, m.input.layout, m.input.fused) == ("input", "float32", "NCHW", False)
    # The runtime's generic unfused preprocessing, (x - 0) / 255 in RGB, gives the 0..1 RGB the graph wants.
    assert (m.preprocess.mean, m.preprocess.std, m.preprocess.color_order) == ((0.0,) * 3, (255.0,) * 3, "RGB")
    assert m.export["verification"]["matched_pct"] >= 90.0
