"""A tiny segmentation graph built with onnx.helper (no torch): for self-tests and conformance.

It follows the fused I/O contract exactly (uint8 NHWC BGR ``frame`` in, uint8 ``mask``
out, normalisation/transpose/argmax inside), or the unfused one (float NCHW ``input``
in, float ``logits`` out). The weights are fixed and the reference output is
computable in numpy (:func:`reference_mask`), so a backend can be checked bit for bit.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette

TINY_CLASSES = ("background", "red", "green", "blue")
TINY_MEAN = (127.5, 127.5, 127.5)
TINY_STD = (127.5, 127.5, 127.5)


def _weights() -> tuple[np.ndarray, np.ndarray]:
    # 1x1 conv over normalised RGB: class k>0 responds to colour channel k-1, background to darkness.
    w = np.zeros((4, 3, 1, 1), np.float32)
    w[0, :, 0, 0] = -1.0
    w[1, 0, 0, 0] = w[2, 1, 0, 0] = w[3, 2, 0, 0] = 2.0
    b = np.array([0.0, -1.0, -1.0, -1.0], np.float32)
    return w, b


def tiny_segmentation_onnx(height: int = 32, width: int = 48, *, fused: bool = True,
                           opset: int = 17) -> onnx.ModelProto:
    """The tiny model as an ONNX graph (static batch 1)."""
    w, b = _weights()
    inits = [numpy_helper.from_array(w, "conv.w"), numpy_helper.from_array(b, "conv.b")]
    nodes = []
    if fused:
        mean = np.array(TINY_MEAN, np.float32).reshape(1, 3, 1, 1)
        std = np.array(TINY_STD, np.float32).reshape(1, 3, 1, 1)
        inits += [numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(std, "std"),
                  numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr2rgb")]
        nodes += [
            helper.make_node("Cast", ["frame"], ["f32"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f32"], ["nchw_bgr"], perm=[0, 3, 1, 2]),
            helper.make_node("Gather", ["nchw_bgr", "bgr2rgb"], ["nchw"], axis=1),
            helper.make_node("Sub", ["nchw", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "std"], ["input"]),
        ]
        graph_in = helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, height, width, 3])
    else:
        graph_in = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    nodes.append(helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["logits"]))
    if fused:
        nodes += [
            helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0),
            # INT64 -> FLOAT -> UINT8: TensorRT 10.3 documents UINT8 casts only to/from FLOAT/HALF
            helper.make_node("Cast", ["argmax"], ["argmax_f32"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["argmax_f32"], ["mask"], to=TensorProto.UINT8),
        ]
        graph_out = helper.make_tensor_value_info("mask", TensorProto.UINT8, [1, height, width])
    else:
        graph_out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, height, width])
    graph = helper.make_graph(nodes, "segrt_tiny", [graph_in], [graph_out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="segrt.tools.tiny_model")
    model.ir_version = 8  # readable by every ONNX Runtime and TensorRT 8.6+
    onnx.checker.check_model(model)
    return model


def reference_logits(frame_bgr: np.ndarray) -> np.ndarray:
    """numpy reference of the tiny model: (1,H,W,3) uint8 BGR -> (1,4,H,W) float32 logits."""
    w, b = _weights()
    rgb = frame_bgr[..., ::-1].astype(np.float32)
    x = (rgb - np.float32(127.5)) / np.float32(127.5)
    logits = np.einsum("nhwc,kc->nkhw", x, w[:, :, 0, 0]) + b.reshape(1, 4, 1, 1)
    return logits.astype(np.float32)


def reference_mask(frame_bgr: np.ndarray) -> np.ndarray:
    return reference_logits(frame_bgr).argmax(axis=1).astype(np.uint8)


#: Two logits closer than this are a tie: a GPU may pick either class there (TensorRT's TopK
#: does not document its tie-break, and FP32 kernels differ from numpy in the last bits).
TIE_GAP = 1e-4


def mask_agreement_with_ties(mask: np.ndarray, frame_bgr: np.ndarray, gap: float = TIE_GAP) -> float:
    """Fraction of pixels equal to the reference, counting as equal a pixel where the
    backend chose a class whose logit is within ``gap`` of the best one (an exact tie)."""
    logits = reference_logits(frame_bgr)
    mask = np.asarray(mask).astype(np.int64)
    classes = logits.shape[1]
    chosen = np.take_along_axis(logits, np.minimum(mask, classes - 1)[:, None], axis=1)[:, 0]
    ok = (mask == logits.argmax(axis=1)) | ((mask < classes) & (logits.max(axis=1) - chosen <= gap))
    return float(ok.mean())


def tiny_manifest(height: int = 32, width: int = 48, *, fused: bool = True, name: str = "tiny") -> Manifest:
    if fused:
        inp = InputSpec(name="frame", height=height, width=width, layout="NHWC", dtype="uint8", fused=True)
        out = OutputSpec(kind="mask", names=("mask",), num_classes=len(TINY_CLASSES))
    else:
        inp = InputSpec(name="input", height=height, width=width, layout="NCHW", dtype="float32", fused=False)
        out = OutputSpec(kind="logits", names=("logits",), num_classes=len(TINY_CLASSES))
    return Manifest(
        name=name, classes=TINY_CLASSES, palette=default_palette(len(TINY_CLASSES)), input=inp,
        preprocess=PreprocessSpec(resize="stretch", mean=TINY_MEAN, std=TINY_STD, color_order="RGB"),
        output=out, source={"model": "segrt.tools.tiny_model", "note": "fixed weights, numpy reference"},
        export={"exporter": "onnx.helper", "opset": 17},
    )


def tiny_bundle(path: str | os.PathLike[str], height: int = 32, width: int = 48, *,
                fused: bool = True) -> Bundle:
    """Write the tiny model as a complete FP32 bundle at ``path``."""
    path = Path(path)
    bundle = Bundle.create(path, tiny_manifest(height, width, fused=fused))
    bundle.save_onnx("fp32", tiny_segmentation_onnx(height, width, fused=fused))
    return bundle
