"""Small fused segmentation nets for the calibration tests, exported with torch.onnx.

They follow the fused I/O contract (uint8 NHWC BGR ``frame`` in, uint8 ``mask`` out; BGR->RGB,
normalisation, NCHW transpose and argmax inside the graph) and have fixed, meaningful weights
(no training needed): the classes respond to colour, so they segment the synthetic:// scene's
coloured objects, and the FP32 masks are not constant.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx

from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
CLASSES = ("background", "red", "green", "blue", "bright")


def _net(sensitive: bool):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class ColourNet(nn.Module):
        """conv(3->8, stride 2) + relu + conv(8->8) + hardswish + conv(8->C) + bilinear up + argmax."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
            g = torch.Generator().manual_seed(0)
            self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(8, 8, 1)
            self.cls = nn.Conv2d(8, len(CLASSES), 1)
            with torch.no_grad():
                # c1: smoothed colour detectors (RGB order after the flip) plus noise channels
                w = torch.zeros(8, 3, 3, 3)
                for k in range(3):
                    w[k, k] = 1.0 / 9
                    w[k, [j for j in range(3) if j != k]] = -0.5 / 9
                w[3] = 1.0 / 27  # brightness
                w[4:] = 0.05 * torch.randn(4, 3, 3, 3, generator=g)
                self.c1.weight.copy_(w)
                self.c1.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -0.3, 0.0, 0.0, 0.0, 0.0]))
                self.c2.weight.copy_(torch.eye(8).view(8, 8, 1, 1) + 0.02 * torch.randn(8, 8, 1, 1, generator=g))
                self.c2.bias.zero_()
                wc = torch.zeros(len(CLASSES), 8, 1, 1)
                wc[1, 0] = wc[2, 1] = wc[3, 2] = 3.0
                wc[4, 3] = 2.0
                self.cls.weight.copy_(wc)
                self.cls.bias.copy_(torch.tensor([0.6, 0.0, 0.0, 0.0, 0.0]))
                if sensitive:
                    # One channel of c2's output is a huge constant that cls ignores: per-tensor
                    # INT8 of cls's input then needs a scale ~ 3000/127 and rounds every useful
                    # channel to 0. Only excluding `cls` from quantization recovers it.
                    self.c2.bias[7] = 3000.0
                    self.cls.weight[:, 7] = 0.0

        def forward(self, frame):
            x = frame.float().permute(0, 3, 1, 2).flip(1)
            x = (x - self.mean) / self.std
            h, w = x.shape[-2:]
            y = F.relu(self.c1(x))
            y = F.hardswish(self.c2(y))
            y = F.interpolate(self.cls(y), size=(h, w), mode="bilinear", align_corners=False)
            return y.argmax(1).to(torch.uint8)

    return ColourNet().eval()


def colour_net_onnx(height: int = 48, width: int = 64, *, sensitive: bool = False, opset: int = 17) -> onnx.ModelProto:
    """The colour net as a fused ONNX graph (TorchScript exporter, static shape)."""
    import io

    import torch
    net = _net(sensitive)
    x = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact and fast here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (x,), buf, input_names=["frame"], output_names=["mask"], opset_version=opset,
                          dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return model


def colour_manifest(height: int, width: int, name: str = "colour") -> Manifest:
    return Manifest(
        name=name, classes=CLASSES, palette=default_palette(len(CLASSES)),
        input=InputSpec(name="frame", height=height, width=width, layout="NHWC", dtype="uint8", fused=True),
        preprocess=PreprocessSpec(resize="stretch", mean=MEAN, std=STD, color_order="RGB"),
        output=OutputSpec(kind="mask", names=("mask",), num_classes=len(CLASSES)),
        source={"model": "tests._calib_helpers.colour_net"}, export={"exporter": "torchscript"},
    )


def colour_bundle(path: str | Path, height: int = 48, width: int = 64, *, sensitive: bool = False) -> Bundle:
    """A complete FP32 bundle of the colour net."""
    path = Path(path)
    bundle = Bundle.create(path, colour_manifest(height, width))
    bundle.save_onnx("fp32", colour_net_onnx(height, width, sensitive=sensitive))
    return bundle


def synthetic(width: int = 160, height: int = 120, frames: int = 200, seed: int = 1) -> str:
    return f"synthetic://?size={width}x{height}&frames={frames}&seed={seed}"


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    from segrt.calibration.evaluate import session
    return session(model).run(None, feeds)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    from onnx import numpy_helper
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def io_signature(model: onnx.ModelProto) -> list[tuple]:
    """(name, elem_type, shape) of every graph input and output."""
    def sig(vi):
        t = vi.type.tensor_type
        return (vi.name, t.elem_type, tuple(d.dim_value or d.dim_param for d in t.shape.dim))
    inits = {t.name for t in model.graph.initializer}
    return [sig(v) for v in model.graph.input if v.name not in inits] + [sig(v) for v in model.graph.output]
