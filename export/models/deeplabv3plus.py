"""DeepLabV3+: a dilated backbone, ASPP on its deepest feature, and a decoder with a low-level skip.

Output stride 16 (the last backbone stage is dilated instead of strided). The decoder upsamples
the ASPP output x4 to the stride-4 feature, concatenates a 48-channel projection of that
low-level feature, refines with two 3x3 convs and upsamples to the input size. Every resize is
bilinear with ``align_corners=False`` (half-pixel centres in ONNX) and the image-pooling branch
broadcasts with ``expand`` instead of resizing a 1x1 map, so the graph is plain for TensorRT.
Input H and W should be multiples of 16 so the stride-4 and stride-16 grids line up.

Backbones: torchvision ``resnet50``, ``resnet101`` (low level = ``layer1``, 256 channels) or
``mobilenet_v3_large`` (low level = the stride-4 block, 24 channels), built without pretrained
weights (nothing is downloaded).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DeepLabV3Plus", "deeplabv3plus", "BACKBONES"]

BACKBONES = ("resnet50", "resnet101", "mobilenet_v3_large")


def _conv_bn_relu(in_ch: int, out_ch: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class _ImagePooling(nn.Module):
    """Global average -> 1x1 conv -> broadcast back over the feature map."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = _conv_bn_relu(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.pool(x))
        # Broadcasting a 1x1 map is exactly what a bilinear resize of it computes; Expand is cheaper.
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and image pooling, then a 1x1 fuse."""

    def __init__(self, in_ch: int, out_ch: int = 256, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        branches: list[nn.Module] = [_conv_bn_relu(in_ch, out_ch)]
        branches += [_conv_bn_relu(in_ch, out_ch, 3, r) for r in rates]
        branches.append(_ImagePooling(in_ch, out_ch))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_conv_bn_relu(out_ch * len(branches), out_ch), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class _Backbone(nn.Module):
    """Returns (low-level stride-4 feature, high-level stride-16 feature)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        from torchvision import models

        if name not in BACKBONES:
            raise ValueError(f"DeepLabV3Plus: unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
        self.name = name
        if name.startswith("resnet"):
            net = getattr(models, name)(weights=None, replace_stride_with_dilation=[False, False, True])
            self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
            self.low = net.layer1
            self.high = nn.Sequential(net.layer2, net.layer3, net.layer4)
            self.low_channels, self.high_channels = 256, 2048
        else:
            net = models.mobilenet_v3_large(weights=None, dilated=True)
            feats = net.features
            # Blocks 0..3 end at stride 4 (24 ch); the rest reach stride 16 thanks to dilation.
            self.stem = nn.Identity()
            self.low = feats[:4]
            self.high = feats[4:]
            self.low_channels, self.high_channels = 24, 960

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low(self.stem(x))
        return low, self.high(low)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ returning logits ``(N, num_classes, H, W)`` at input resolution.

    Args:
        num_classes: output channels.
        backbone: one of :data:`BACKBONES`.
        aspp_channels: width of the ASPP and decoder.
        low_level_channels: width of the projected low-level skip (48 in the paper).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", aspp_channels: int = 256,
                 low_level_channels: int = 48) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"DeepLabV3Plus: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = _Backbone(backbone)
        self.aspp = ASPP(self.backbone.high_channels, aspp_channels)
        self.low_proj = _conv_bn_relu(self.backbone.low_channels, low_level_channels)
        self.decoder = nn.Sequential(
            _conv_bn_relu(aspp_channels + low_level_channels, aspp_channels, 3),
            _conv_bn_relu(aspp_channels, aspp_channels, 3),
        )
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        low, high = self.backbone(x)
        y = self.aspp(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([self.low_proj(low), y], dim=1))
        y = self.classifier(y)
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


def deeplabv3plus(num_classes: int = 21, **kw) -> DeepLabV3Plus:
    """Factory for ``module:factory`` loading."""
    return DeepLabV3Plus(num_classes=num_classes, **kw)
