"""Torch wrappers that put pre/post-processing inside the exported graph (the fused I/O contract).

Fused semantic graph: ``frame`` uint8 ``[N, H, W, 3]`` BGR  ->  Cast -> Transpose (NHWC->NCHW)
-> Gather (BGR->RGB, only if the model wants RGB) -> Sub mean -> Div std -> network -> ArgMax
-> Cast float -> Cast uint8  ->  ``mask`` uint8 ``[N, H, W]``. The cast comes first because
TensorRT does little on uint8 tensors besides casting them. ArgMax is followed by a cast to
uint8 because TensorRT's ArgMax yields int64 and a uint8 mask is 8x less device-to-host
traffic; it goes through float32 because TensorRT 10.3 documents UINT8 casts only to and from
FLOAT/HALF (class ids < 256 are exact in float32). The ``trt_mask_cast`` graph pass keeps
that form after the optimizer.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from segrt.errors import ConfigError

MAX_FUSED_CLASSES = 256  # class ids must fit the uint8 mask


class SemanticLogits(nn.Module):
    """Adapt a segmentation model to return one logits tensor ``(N, C, H, W)``.

    torchvision's segmentation models return ``{"out": ..., "aux": ...}``; others return a
    tensor or a tuple whose first item is the logits.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        if isinstance(y, dict):
            y = y["out"] if "out" in y else next(iter(y.values()))
        elif isinstance(y, (tuple, list)):
            y = y[0]
        return y


class FusedSegmentation(nn.Module):
    """``frame`` uint8 NHWC BGR -> ``mask`` uint8 NHW, around a logits model.

    ``mean``/``std`` are on the 0..255 scale in the model's ``color_order``.
    """

    def __init__(self, logits_model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 color_order: str, num_classes: int) -> None:
        super().__init__()
        if num_classes > MAX_FUSED_CLASSES:
            raise ConfigError(f"{num_classes} classes do not fit a fused uint8 mask",
                              hint="export with --no-fuse (logits out)")
        self.core = logits_model
        self.to_rgb = color_order == "RGB"
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0], dtype=torch.int64), persistent=False)

    def normalise(self, frame: torch.Tensor) -> torch.Tensor:
        """The in-graph preprocessing alone: uint8 NHWC BGR -> normalised float NCHW."""
        x = frame.to(torch.float32).permute(0, 3, 1, 2)
        if self.to_rgb:
            x = torch.index_select(x, 1, self.bgr_to_rgb)
        # Sub then Div (not a multiply by 1/std) so the CPU runtime's (x - mean) / std matches bit for bit.
        return (x - self.mean) / self.std

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        logits = self.core(self.normalise(frame))
        return torch.argmax(logits, dim=1).to(torch.float32).to(torch.uint8)
