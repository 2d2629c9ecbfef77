"""Shared helpers for the export tests: small models, checkpoints and a CLI runner."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort

from segrt.tools.cli import main

TINY_UNET = {"depth": 2, "base_width": 4}


def tiny_unet(num_classes: int = 3):
    """A 2-level, 4-wide U-Net: exports in well under a second."""
    from segrt.export.models.unet import UNet

    return UNet(num_classes, **TINY_UNET).eval()


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``segrt`` in-process; return (exit code, stdout, stderr)."""
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def write_user_module(folder: Path, name: str = "user_nets") -> Path:
    """A user package module with factories: a tiny U-Net, a bad op, a non-module."""
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from segrt.export.models.unet import UNet

        def build(num_classes=3):
            return UNet(num_classes, depth=2, base_width=4)

        def build_fixed():
            return UNet(5, depth=1, base_width=4)

        class Cholesky(nn.Module):
            def forward(self, x):
                m = x[0, 0, :4, :4]
                return x[:, :2] + torch.linalg.cholesky(torch.eye(4) + m @ m.T).sum()

        def bad_op():
            return Cholesky()

        def not_a_model():
            return 42

        class Branchy(nn.Module):
            # Data-dependent control flow: a trace freezes one branch, eager takes the other.
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(3, 2, 1)
                self.b = nn.Conv2d(3, 2, 1)
            def forward(self, x):
                return self.a(x) if bool(x.mean() > -1.0) else self.b(x)

        class Pooled(nn.Module):
            # Global pooling -> ReduceMean: dynamo cannot down-convert that to opset 17.
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1)
            def forward(self, x):
                y = self.conv(x)
                return y * torch.sigmoid(y.mean((2, 3), keepdim=True))

        def pooled():
            return Pooled()

        def branchy():
            torch.manual_seed(3)
            return Branchy()
    """))
    return path


def run_onnx(path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)
