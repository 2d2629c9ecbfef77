"""The DeepStream variant of a fused graph: nvinfer's float NCHW input in, a class map out.

nvinfer preprocesses with one formula for every channel, ``y = net-scale-factor * (x - offsets[c])``
(NVIDIA DeepStream, Gst-nvinfer: https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html),
so a model whose std differs per channel cannot be fed exactly by nvinfer's formula alone. This
variant takes nvinfer's ``y`` (BGR planar, ``model-color-format=1``), rebuilds the integer pixel
``x = round(y / s + offsets[c])`` (exact: nvinfer's ``x`` is an 8-bit integer, and the rounding
error of float32 is far below 0.5), and feeds it to the bundle's verified fused graph, which
applies the per-channel mean and std itself. The masks are therefore the bundle's own, bit for bit.

The output is nvinfer's semantic-segmentation class map: ``segrt_class_map`` int32 ``[N, H, W, 1]``
(``segmentation-output-order=1``, as NVIDIA's TAO UNet config does with its in-graph argmax).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segrt.errors import ExportError

INPUT_NAME = "segrt_nvinfer_input"
OUTPUT_NAME = "segrt_class_map"
_P = "segrt_ds_"


@dataclass(frozen=True)
class NvinferNormalisation:
    """What nvinfer's [property] group must say so the graph sees what it expects."""

    net_scale_factor: float
    offsets: tuple[float, float, float]  # B, G, R (model-color-format=1)
    model_color_format: int = 1


def nvinfer_normalisation(mean, std, color_order: str) -> NvinferNormalisation:
    """One scale (1 / mean std) and per-channel offsets (the mean), in nvinfer's BGR order."""
    mean_bgr = tuple(float(v) for v in (mean[::-1] if color_order == "RGB" else mean))
    scale = float(np.float32(1.0 / np.mean(np.asarray(std, np.float64))))
    return NvinferNormalisation(scale, mean_bgr)  # type: ignore[arg-type]


def deepstream_onnx_from_fused(fused: onnx.ModelProto, norm: NvinferNormalisation, *, batch: int | None
                               ) -> onnx.ModelProto:
    """The variant graph. ``batch=None`` keeps a symbolic batch axis; an int fixes it."""
    graph_in = fused.graph.input[0]
    dims = graph_in.type.tensor_type.shape.dim
    if graph_in.type.tensor_type.elem_type != TensorProto.UINT8 or len(dims) != 4 or dims[3].dim_value != 3:
        raise ExportError("the DeepStream variant needs a fused graph (uint8 [N,H,W,3] frame in)",
                          hint="export the bundle without --no-fuse")
    h, w = dims[1].dim_value, dims[2].dim_value
    if not h or not w:
        raise ExportError("the DeepStream variant needs a fixed input size", hint="export with --size HxW")
    frame = graph_in.name
    taken = {o for n in fused.graph.node for o in n.output} | {i.name for i in fused.graph.initializer}
    clash = sorted(n for n in taken if n == INPUT_NAME or n == OUTPUT_NAME or n.startswith(_P))
    if clash:
        raise ExportError(f"the graph already has tensors named {', '.join(clash)}",
                          hint="rename them in the model before exporting")
    model = onnx.ModelProto()
    model.CopyFrom(fused)
    g = model.graph
    n_dim: int | str = batch if batch is not None else "N"
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [n_dim, 3, h, w]))
    g.initializer.extend([
        numpy_helper.from_array(np.array(norm.net_scale_factor, np.float32), _P + "scale"),
        numpy_helper.from_array(np.array(norm.offsets, np.float32).reshape(1, 3, 1, 1), _P + "offsets"),
        numpy_helper.from_array(np.array(0.0, np.float32), _P + "lo"),
        numpy_helper.from_array(np.array(255.0, np.float32), _P + "hi"),
        numpy_helper.from_array(np.array([3], np.int64), _P + "axis3"),
    ])
    pre = [helper.make_node("Div", [INPUT_NAME, _P + "scale"], [_P + "unscaled"]),
           helper.make_node("Add", [_P + "unscaled", _P + "offsets"], [_P + "pixels"]),
           helper.make_node("Round", [_P + "pixels"], [_P + "rounded"]),
           helper.make_node("Clip", [_P + "rounded", _P + "lo", _P + "hi"], [_P + "clipped"]),
           helper.make_node("Cast", [_P + "clipped"], [_P + "u8"], to=TensorProto.UINT8),
           helper.make_node("Transpose", [_P + "u8"], [frame], perm=[0, 2, 3, 1])]
    mask = g.output[0].name
    post = [helper.make_node("Cast", [mask], [_P + "ids"], to=TensorProto.INT32),
            helper.make_node("Unsqueeze", [_P + "ids", _P + "axis3"], [OUTPUT_NAME])]
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(pre + nodes + post)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.INT32, [n_dim, h, w, 1]))
    onnx.checker.check_model(model)
    return model


def nvinfer_input_from_frames(frames_bgr: np.ndarray, norm: NvinferNormalisation) -> np.ndarray:
    """What nvinfer feeds the engine for uint8 BGR NHWC frames: ``s * (x - offsets[c])``, float NCHW."""
    x = frames_bgr.astype(np.float32).transpose(0, 3, 1, 2)
    return (np.float32(norm.net_scale_factor) * (x - np.asarray(norm.offsets, np.float32).reshape(1, 3, 1, 1)))
