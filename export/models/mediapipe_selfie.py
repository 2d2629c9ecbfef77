"""MediaPipe Selfie Segmentation (Apache-2.0) re-implemented in PyTorch, and its weights from the ``.tflite``.

The network (a MobileNetV3-style encoder with squeeze-excitation gates and a light decoder that
upsamples by 2 three times, then a 2x2 stride-2 transposed convolution to a 1-channel person
probability) is written out below as a list of operations, one per TFLite operator of
``selfie_segmentation.tflite`` (256x256) and ``selfie_segmentation_landscape.tflite`` (144x256),
which share it. Each entry reads ``kind[:args]@sources``: ``conv:in.out.k.stride``,
``dw:channels.k.stride`` (depthwise), ``deconv:in.out.k.stride``, ``hswish``, ``relu``,
``sigmoid``, ``gap`` (global average), ``add``, ``mul``, ``up2`` (bilinear x2, half-pixel
centres); sources are earlier entries' indices, ``x`` the input. Convolutions pad like
TensorFlow's ``SAME`` (the extra row and column at the end).

Input: NCHW float RGB in [0, 1] (the manifest's mean 0 / std 255). Output: (N, 2, H, W)
``[1 - p, p]``, so the fused argmax is the 0.5 threshold of MediaPipe's person probability.

Neither code nor weights are vendored: :func:`state_dict_from_tflite` reads a ``.tflite``
(through the ``tflite`` flatbuffer parser; its float16 weights are widened to float32) and
:mod:`segrt.export.mediapipe_fetch` fetches the pinned ``mediapipe`` wheel that ships them.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from segrt.errors import WeightsError

CLASSES = ("background", "person")
SPEC = (
    "conv:3.16.3.2@x hswish@0 conv:16.16.1.1@1 relu@2 dw:16.3.2@3 relu@4 gap@5 conv:16.8.1.1@6 relu@7 "
    "conv:8.16.1.1@8 sigmoid@9 mul@5,10 conv:16.16.1.1@11 conv:16.72.1.1@12 relu@13 dw:72.3.2@14 relu@15 "
    "conv:72.24.1.1@16 conv:24.88.1.1@17 relu@18 dw:88.3.1@19 relu@20 conv:88.24.1.1@21 add@22,17 "
    "conv:24.96.1.1@23 hswish@24 dw:96.5.2@25 hswish@26 gap@27 conv:96.24.1.1@28 relu@29 "
    "conv:24.96.1.1@30 sigmoid@31 mul@27,32 conv:96.32.1.1@33 conv:32.128.1.1@34 hswish@35 dw:128.5.1@36 "
    "hswish@37 gap@38 conv:128.32.1.1@39 relu@40 conv:32.128.1.1@41 sigmoid@42 mul@38,43 "
    "conv:128.32.1.1@44 add@45,34 conv:32.128.1.1@46 hswish@47 dw:128.5.1@48 hswish@49 gap@50 "
    "conv:128.32.1.1@51 relu@52 conv:32.128.1.1@53 sigmoid@54 mul@50,55 conv:128.32.1.1@56 add@57,46 "
    "conv:32.96.1.1@58 hswish@59 dw:96.5.1@60 hswish@61 gap@62 conv:96.24.1.1@63 relu@64 "
    "conv:24.96.1.1@65 sigmoid@66 mul@62,67 conv:96.32.1.1@68 add@69,58 conv:32.96.1.1@70 hswish@71 "
    "dw:96.5.1@72 hswish@73 gap@74 conv:96.24.1.1@75 relu@76 conv:24.96.1.1@77 sigmoid@78 mul@74,79 "
    "conv:96.32.1.1@80 add@81,70 gap@82 conv:32.128.1.1@82 conv:32.128.1.1@83 relu@84 sigmoid@85 "
    "mul@86,87 up2@88 conv:128.24.1.1@89 add@23,90 gap@91 conv:24.24.1.1@92 relu@93 conv:24.24.1.1@94 "
    "sigmoid@95 mul@23,96 add@97,90 conv:24.24.1.1@98 relu@99 dw:24.3.1@100 relu@101 add@100,102 up2@103 "
    "conv:24.16.1.1@104 add@12,105 gap@106 conv:16.16.1.1@107 relu@108 conv:16.16.1.1@109 sigmoid@110 "
    "mul@12,111 add@112,105 conv:16.16.1.1@113 relu@114 dw:16.3.1@115 relu@116 add@115,117 up2@118 "
    "conv:16.16.1.1@119 add@1,120 gap@121 conv:16.16.1.1@122 relu@123 conv:16.16.1.1@124 sigmoid@125 "
    "mul@1,126 add@127,120 conv:16.16.1.1@128 relu@129 dw:16.3.1@130 relu@131 add@130,132 "
    "deconv:16.1.2.2@133 sigmoid@134 "
)
WEIGHTED = ("conv", "dw", "deconv")


def parse_spec(text: str = "".join(SPEC)) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """``(kind, args, sources)`` per operation; source -1 is the input."""
    ops = []
    for item in text.split():
        head, _, srcs = item.partition("@")
        kind, _, args = head.partition(":")
        ops.append((kind, tuple(int(a) for a in args.split(".")) if args else (),
                    tuple(-1 if s == "x" else int(s) for s in srcs.split(","))))
    return ops


def _same_pad(x: torch.Tensor, k: int, s: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """TensorFlow SAME padding as the conv's symmetric padding plus, where TF pads one more row or
    column at the end, zeros appended by concatenation (a ``Pad`` would export a ConstantOfShape
    that TensorRT 10 refuses)."""
    pads = []
    for size in (int(x.shape[2]), int(x.shape[3])):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    if bottom > top:
        x = torch.cat([x, x[:, :, : bottom - top, :] * 0.0], dim=2)
    if right > left:
        x = torch.cat([x, x[:, :, :, : right - left] * 0.0], dim=3)
    return x, (top, left)


class SelfieSegmentation(nn.Module):
    """The selfie segmenter: ``layers[i]`` is the i-th weighted operation of :data:`SPEC`."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        if num_classes != 2:
            raise WeightsError(f"MediaPipe Selfie Segmentation has 2 classes (background, person), not {num_classes}",
                               hint="drop --num-classes")
        self.ops = parse_spec()
        layers = []
        for kind, args, _ in self.ops:
            if kind == "conv":
                layers.append(nn.Conv2d(args[0], args[1], args[2], stride=args[3]))
            elif kind == "dw":
                layers.append(nn.Conv2d(args[0], args[0], args[1], stride=args[2], groups=args[0]))
            elif kind == "deconv":
                layers.append(nn.ConvTranspose2d(args[0], args[1], args[2], stride=args[3]))
        self.layers = nn.ModuleList(layers)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) person probability."""
        vals: list[torch.Tensor] = []
        li = 0
        for kind, args, srcs in self.ops:
            a = x if srcs[0] < 0 else vals[srcs[0]]
            if kind in WEIGHTED:
                layer = self.layers[li]
                li += 1
                if kind != "deconv":
                    k, s = (args[2], args[3]) if kind == "conv" else (args[1], args[2])
                    a, pad = _same_pad(a, k, s)
                    y = F.conv2d(a, layer.weight, layer.bias, s, pad, 1, layer.groups)
                else:
                    y = layer(a)
            elif kind == "hswish":
                y = F.hardswish(a)
            elif kind == "relu":
                y = F.relu(a)
            elif kind == "sigmoid":
                y = torch.sigmoid(a)
            elif kind == "gap":
                y = a.mean(dim=(2, 3), keepdim=True)
            elif kind == "add":
                y = a + vals[srcs[1]]
            elif kind == "mul":
                y = a * vals[srcs[1]]
            else:  # up2
                y = F.interpolate(a, size=(2 * int(a.shape[2]), 2 * int(a.shape[3])), mode="bilinear",
                                  align_corners=False)
            vals.append(y)
        return vals[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.probability(x)
        return torch.cat([1.0 - p, p], dim=1)


def state_dict_from_tflite(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The :class:`SelfieSegmentation` state_dict held by a selfie-segmentation ``.tflite``."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    try:
        buf = open(path, "rb").read()
        model = tflite.Model.GetRootAsModel(buf, 0)
        graph = model.Subgraphs(0)
    except (OSError, IndexError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable .tflite ({exc})",
                           hint="pass selfie_segmentation.tflite or its landscape variant") from exc
    producers = {}
    codes = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        codes.append(code)
        if code == BuiltinOperator.DEQUANTIZE:
            producers[op.Outputs(0)] = op.Inputs(0)

    def constant(index: int) -> np.ndarray:
        t = graph.Tensors(producers.get(index, index))
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        dtype = {TensorType.FLOAT16: np.float16, TensorType.FLOAT32: np.float32}.get(t.Type())
        if dtype is None or isinstance(data, int):
            raise WeightsError(f"{path}: tensor {t.Name().decode()} is not a float constant",
                               hint="pass an unquantized selfie_segmentation .tflite")
        return np.frombuffer(data.tobytes(), dtype).astype(np.float32).reshape(t.ShapeAsNumpy())

    weighted = {BuiltinOperator.CONV_2D: "conv", BuiltinOperator.DEPTHWISE_CONV_2D: "dw",
                BuiltinOperator.CUSTOM: "deconv"}
    sd: dict[str, torch.Tensor] = {}
    k = 0
    for i, code in enumerate(codes):
        kind = weighted.get(code)
        if kind is None:
            continue
        op = graph.Operators(i)
        kernel, bias = constant(op.Inputs(1)), constant(op.Inputs(2))
        # TFLite kernels: conv [O,H,W,I]; depthwise [1,H,W,C]; MediaPipe's transposed conv [O,H,W,I].
        w = kernel.transpose(0, 3, 1, 2) if kind == "conv" else kernel.transpose(3, 0, 1, 2)
        sd[f"layers.{k}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        sd[f"layers.{k}.bias"] = torch.from_numpy(bias.copy())
        k += 1
    return sd
