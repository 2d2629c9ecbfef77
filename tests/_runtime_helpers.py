"""Fixtures for the runtime tests: real bundles (torch-exported and onnx.helper-built) and real videos.

Tests may import torch; the runtime may not. ``torch_bundle`` exports a small conv net with
``torch.onnx.export`` in both forms of the I/O contract (fused: uint8 NHWC BGR -> uint8 mask;
unfused: float NCHW -> logits), so the pipeline is checked against PyTorch itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segrt.runtime.bundle import Bundle, onnx_filename
from segrt.runtime.fsutil import atomic_path
from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette

TORCH_CLASSES = ("background", "warm", "cool", "bright")
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def torch_net(num_classes: int = len(TORCH_CLASSES)):
    """A small, deterministic conv net (conv-bn-relu x2 + 1x1 head), eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, num_classes, 1),
    )
    with torch.no_grad():  # non-trivial BN statistics so the export has something to fold
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _fused(net):
    import torch
    from torch import nn

    class Fused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

        def forward(self, frame):  # uint8 [1,H,W,3] BGR
            x = frame.permute(0, 3, 1, 2).float().flip(1)  # NCHW RGB
            x = (x - self.mean) / self.std
            return self.net(x).argmax(1).to(torch.uint8)

    return Fused().eval()


def torch_reference_mask(net, frame_bgr_resized: np.ndarray) -> np.ndarray:
    """PyTorch's mask for a frame already at model size (H,W,3 uint8 BGR)."""
    import torch

    with torch.no_grad():
        return _fused(net)(torch.from_numpy(frame_bgr_resized[None].copy()))[0].numpy()


def torch_bundle(path: str | Path, height: int = 48, width: int = 64, *, fused: bool = True,
                 resize: str = "stretch"):
    """Export ``torch_net()`` into a complete FP32 bundle. Returns (bundle, net)."""
    import torch

    path = Path(path)
    net = torch_net()
    nc = len(TORCH_CLASSES)
    if fused:
        model, dummy = _fused(net), torch.zeros(1, height, width, 3, dtype=torch.uint8)
        inp = InputSpec(name="frame", height=height, width=width, layout="NHWC", dtype="uint8", fused=True)
        out = OutputSpec(kind="mask", names=("mask",), num_classes=nc)
        names = (["frame"], ["mask"])
    else:
        model, dummy = net, torch.zeros(1, 3, height, width)
        inp = InputSpec(name="input", height=height, width=width, layout="NCHW", dtype="float32", fused=False)
        out = OutputSpec(kind="logits", names=("logits",), num_classes=nc)
        names = (["input"], ["logits"])
    manifest = Manifest(name="torch-tiny", classes=TORCH_CLASSES, palette=default_palette(nc), input=inp,
                        preprocess=PreprocessSpec(resize=resize, mean=MEAN, std=STD, color_order="RGB"),
                        output=out, source={"model": "tests._runtime_helpers.torch_net"},
                        export={"exporter": "torch.onnx.export (TorchScript)", "opset": 17})
    bundle = Bundle.create(path, manifest)
    target = path / onnx_filename("fp32")
    with atomic_path(target) as tmp:
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=17,
                          input_names=names[0], output_names=names[1])
    bundle.register_onnx("fp32", target)
    return bundle, net


def instances_bundle(path: str | Path, height: int, width: int, boxes: Sequence[Sequence[float]],
                     labels: Sequence[int], scores: Sequence[float], masks: np.ndarray,
                     classes: Sequence[str] = ("__background__", "person", "car"),
                     rows: int | None = None, score_conv: bool = False) -> Bundle:
    """A bundle whose ONNX follows the instances contract and returns fixed detections.

    With ``score_conv`` the scores pass through a 1x1 Conv of weight 1 (exact in FP32), so an
    FP16 graph of it rounds them to FP16: a real, known score drift.

    The graph really takes the uint8 ``frame`` (its mean brightness is added times 0 to the
    scores, so the input is consumed) and returns boxes/labels/scores/masks as Mask R-CNN does.
    With ``rows`` it follows the static contract: outputs zero-padded to ``rows`` plus
    ``num_detections``; without, the older one (exactly K rows).
    """
    path = Path(path)
    k = len(scores)
    if rows is not None:
        def padded(a, dtype):
            a = np.asarray(a, dtype).reshape(k, *np.shape(a)[1:])
            return np.concatenate([a, np.zeros((rows - k, *a.shape[1:]), dtype)])
        boxes, labels, scores = padded(boxes, np.float32), padded(labels, np.int64), padded(scores, np.float32)
        masks = padded(masks, np.float32)
        k_out = rows
    else:
        k_out = k
    b = np.asarray(boxes, np.float32).reshape(k_out, 4)
    lab = np.asarray(labels, np.int64).reshape(k_out)
    sc = np.asarray(scores, np.float32).reshape(k_out)
    m = np.asarray(masks, np.float32).reshape(k_out, 1, masks.shape[-2], masks.shape[-1])
    inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(lab, "l"),
             numpy_helper.from_array(sc, "s"), numpy_helper.from_array(m, "m"),
             numpy_helper.from_array(np.zeros((1,), np.float32), "zero")]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nil"]),
        helper.make_node("Add", ["s", "nil"], ["scores"]),
        helper.make_node("Identity", ["b"], ["boxes"]),
        helper.make_node("Identity", ["l"], ["labels"]),
        helper.make_node("Identity", ["m"], ["masks"]),
    ]
    if score_conv:
        inits += [numpy_helper.from_array(sc.reshape(1, 1, 1, k_out), "s4"),
                  numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w1"),
                  numpy_helper.from_array(np.array([k_out], np.int64), "k_shape")]
        nodes[3:4] = [helper.make_node("Add", ["s4", "nil"], ["s4n"]),  # fed by the frame: not constant-folded
                      helper.make_node("Conv", ["s4n", "w1"], ["s4c"]),
                      helper.make_node("Reshape", ["s4c", "k_shape"], ["sc"]),
                      helper.make_node("Add", ["sc", "nil"], ["scores"])]
    names = ("boxes", "labels", "scores", "masks")
    extra_out = []
    if rows is not None:
        inits.append(numpy_helper.from_array(np.array([k], np.int64), "n"))
        nodes.append(helper.make_node("Identity", ["n"], ["num_detections"]))
        extra_out = [helper.make_tensor_value_info("num_detections", TensorProto.INT64, [1])]
        names += ("num_detections",)
    for i, node in enumerate(nodes):
        node.name = f"{node.op_type.lower()}_{i}"
    graph = helper.make_graph(
        nodes, "fixed_instances",
        [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, height, width, 3])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [k_out, 4]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, [k_out]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [k_out]),
         helper.make_tensor_value_info("masks", TensorProto.FLOAT, [k_out, 1, m.shape[2], m.shape[3]]),
         *extra_out],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    manifest = Manifest(
        name="fixed-instances", classes=tuple(classes), palette=default_palette(len(classes)),
        input=InputSpec(name="frame", height=height, width=width, layout="NHWC", dtype="uint8", fused=True),
        preprocess=PreprocessSpec(resize="letterbox"),
        output=OutputSpec(kind="instances", names=names, num_classes=len(classes)))
    bundle = Bundle.create(path, manifest)
    bundle.save_onnx("fp32", model)
    return bundle


def numbered_frame(i: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """A frame whose index survives lossy codecs: the left half's grey level encodes ``i % 12``,
    the right half's ``i // 12`` (steps of 20), with the number drawn at the bottom."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:, : w // 2] = 10 + 20 * (i % 12)
    img[:, w // 2:] = 10 + 20 * ((i // 12) % 12)
    cv2.putText(img, str(i), (8, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
    return img


def frame_number(img: np.ndarray) -> int:
    """Recover ``i`` from a :func:`numbered_frame`."""
    lo = int(round((float(np.median(img[:8, :8])) - 10) / 20))
    hi = int(round((float(np.median(img[:8, -8:])) - 10) / 20))
    return hi * 12 + lo


def write_video(path: str | Path, n: int, size: tuple[int, int] = (160, 120), fps: float = 10.0,
                fourcc: str = "MJPG") -> Path:
    """A real video of ``n`` numbered frames written with cv2.VideoWriter."""
    path = Path(path)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert w.isOpened(), f"cannot write {path} with {fourcc}"
    for i in range(n):
        w.write(numbered_frame(i, size))
    w.release()
    return path


def count_video_frames(path: str | Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n
