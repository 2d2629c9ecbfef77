"""The project's U-Net: shapes, configuration, and a clean ONNX export with both exporters."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from segrt.export.models.unet import UNet, unet


@pytest.mark.parametrize("depth, width, bilinear", [(1, 4, True), (3, 8, True), (3, 8, False), (4, 4, False)])
def test_logits_at_input_resolution(depth, width, bilinear):
    model = UNet(5, depth=depth, base_width=width, bilinear=bilinear).eval()
    h, w = 2**depth * 3, 2**depth * 5
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    assert out.shape == (2, 5, h, w)
    assert model.stride == 2**depth


def test_width_and_depth_set_the_parameter_count():
    small = sum(p.numel() for p in UNet(6, depth=4, base_width=8).parameters())
    wide = sum(p.numel() for p in UNet(6, depth=4, base_width=16).parameters())
    deep = sum(p.numel() for p in UNet(6, depth=5, base_width=8).parameters())
    # Conv weights scale with width squared; one more level adds the widest block.
    assert 3.5 < wide / small < 4.1
    assert deep > 3 * small


def test_factory_and_in_channels():
    model = unet(num_classes=3, in_channels=1, depth=2, base_width=4).eval()
    assert isinstance(model, UNet) and model.num_classes == 3
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 24)).shape == (1, 3, 16, 24)
    with pytest.raises(ValueError):
        UNet(0)
    with pytest.raises(ValueError):
        UNet(3, depth=0)


def test_skip_connections_carry_fine_detail():
    """A one-pixel input change moves the output at that pixel: the full-res skip is wired."""
    torch.manual_seed(0)
    model = UNet(2, depth=3, base_width=4).eval()
    x = torch.zeros(1, 3, 32, 32)
    y = x.clone()
    y[0, :, 10, 20] = 5.0
    with torch.no_grad():
        d = (model(y) - model(x)).abs().sum(1)[0]
    assert d[10, 20] > 0
    assert d[10, 20] >= d.max() * 0.2


@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_onnx_export_matches_torch(tmp_path, bilinear, dynamo):
    torch.manual_seed(0)
    model = UNet(4, depth=3, base_width=4, bilinear=bilinear).eval()
    x = torch.randn(1, 3, 48, 64)
    path = tmp_path / "unet.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=dynamo,
                      input_names=["input"], output_names=["logits"])
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= {"Conv", "Relu", "MaxPool", "Resize", "ConvTranspose", "Concat", "BatchNormalization",
                   "Identity", "Constant"}, ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
