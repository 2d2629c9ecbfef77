"""The project's U-Net: encoder-decoder with skip connections, configurable depth and width.

Input H and W must be divisible by ``2 ** depth`` (each level halves the resolution with a 2x2
max-pool and the decoder doubles it back, so the skip tensors line up exactly). The forward pass
returns logits ``(N, num_classes, H, W)`` at input resolution. Only plain ops (Conv, BatchNorm,
ReLU, MaxPool, Resize or ConvTranspose, Concat) are used, so the module exports to ONNX opset 17
with both the dynamo and the TorchScript exporters and folds cleanly in TensorRT.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "unet"]


class _DoubleConv(nn.Sequential):
    """(Conv3x3 -> BN -> ReLU) x 2; the conv has no bias because BN follows it."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class _Up(nn.Module):
    """Upsample x2, concatenate the skip tensor, then a double conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, bilinear: bool) -> None:
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            # Resize keeps in_ch channels; the double conv mixes them with the skip.
            self.up: nn.Module = nn.Identity()
            up_ch = in_ch
        else:
            up_ch = in_ch // 2
            self.up = nn.ConvTranspose2d(in_ch, up_ch, kernel_size=2, stride=2)
        self.conv = _DoubleConv(up_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            # scale_factor (not size=skip.shape) keeps the ONNX Resize shape-agnostic.
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        else:
            x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Classic U-Net.

    Args:
        num_classes: output channels (logits per class).
        in_channels: input channels (3 for an RGB/BGR image).
        depth: number of down-sampling levels; H and W must be divisible by ``2 ** depth``.
        base_width: channels of the first level; level ``i`` has ``base_width * 2**i``.
        bilinear: bilinear (align_corners=False) upsampling if True, else transposed convs.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        depth: int = 4,
        base_width: int = 32,
        bilinear: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or depth < 1 or base_width < 1:
            raise ValueError(
                f"UNet: num_classes, in_channels, depth and base_width must be >= 1, got "
                f"{num_classes}, {in_channels}, {depth}, {base_width}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.depth = depth
        self.base_width = base_width
        self.bilinear = bilinear

        widths = [base_width * 2**i for i in range(depth + 1)]
        self.stem = _DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(_DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        # Decoder level i takes the deeper feature (widths[i+1]) and the skip (widths[i]).
        self.ups = nn.ModuleList(
            _Up(widths[i + 1], widths[i], widths[i], bilinear) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    @property
    def stride(self) -> int:
        """Input H and W must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = [x]
        for down in self.downs:
            x = down(self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


def unet(num_classes: int = 21, **kw) -> UNet:
    """Factory for ``module:factory`` loading: ``unet(num_classes=8, depth=4, base_width=16)``."""
    return UNet(num_classes=num_classes, **kw)
