"""Import an existing ``.onnx`` file: validate it, learn its I/O, and fuse pre/post-processing into it.

A semantic ONNX comes in one of two I/O forms:

* unfused: one float input ``[N, 3, H, W]`` (normalised, model colour order) and one float
  output ``[N, C, H, W]`` (logits);
* fused: one uint8 input ``[N, H, W, 3]`` (BGR frame) and one integer output ``[N, H, W]``.

:func:`fuse_onnx` turns an unfused graph into a fused one with the same nodes the torch path
puts in (Cast, Transpose, Gather for BGR->RGB, Sub, Div; ArgMax, Cast to uint8), so both paths
give TensorRT the same graph shape. :func:`rename_io` renames the graph's input/output to the
contract names (``input``/``logits`` or ``frame``/``mask``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segrt.errors import ConfigError, ExportError, first_line

_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
_INTS = (TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT16,
         TensorProto.INT16)


@dataclass(frozen=True)
class OnnxIO:
    """What an imported graph takes and returns (``None`` for a symbolic dimension)."""

    input_name: str
    input_type: int
    input_shape: tuple[int | None, ...]
    output_name: str
    output_type: int
    output_shape: tuple[int | None, ...]

    @property
    def fused(self) -> bool:
        return self.input_type == TensorProto.UINT8

    @property
    def num_classes(self) -> int | None:
        return None if self.fused or len(self.output_shape) != 4 else self.output_shape[1]

    @property
    def size(self) -> tuple[int, int] | None:
        hw = self.input_shape[1:3] if self.fused else self.input_shape[2:4]
        return (hw[0], hw[1]) if len(hw) == 2 and all(isinstance(v, int) for v in hw) else None  # type: ignore[return-value]

    @property
    def dynamic(self) -> bool:
        return any(d is None for d in self.input_shape)


def _shape(vi: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and fully check an ONNX file; a corrupt or truncated file raises :class:`ExportError`."""
    p = Path(path)
    if not p.is_file():
        from segrt.errors import ModelNotFoundError

        raise ModelNotFoundError(f"ONNX file {p} does not exist", hint="check the path")
    try:
        header = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError, ...
        raise ExportError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc, 120)})",
                          hint="the file is corrupt or truncated; export it again") from exc
    check_external_data(header, p)
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError, ...
        raise ExportError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc, 120)})",
                          hint="the file is corrupt or truncated; export it again") from exc
    if not model.graph.node:
        raise ExportError(f"{p} holds no graph (empty or truncated ONNX file)",
                          hint="the file is corrupt or truncated; export it again")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{p} is not a valid ONNX model ({first_line(exc)})",
                          hint="the file is corrupt or truncated; export it again") from exc
    return model


def _tensors(graph: onnx.GraphProto):
    """Every TensorProto of a graph and its subgraphs (initializers and node attributes)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse external tensor data outside the model's folder, or missing, naming the tensor and the file."""
    folder = path.resolve().parent
    for tensor in _tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ExportError(f"{path} refused: tensor {tensor.name!r} keeps its data in {location!r}, which "
                              f"resolves to {target}, outside the model's folder {folder}",
                              hint="external data must lie inside the folder of the .onnx file (a location "
                                   "that escapes it could read any file); move the data file beside the model "
                                   "and re-save it")
        if not target.is_file():
            raise ExportError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, and {target} "
                              "does not exist", hint="copy the model's external data file beside the .onnx file")


def onnx_io(model: onnx.ModelProto, path: str | Path = "model.onnx") -> OnnxIO:
    """The single input and single output of a semantic graph; anything else is refused."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outs = list(model.graph.output)
    if len(inputs) != 1 or len(outs) != 1:
        raise ConfigError(f"{path}: has {len(inputs)} inputs and {len(outs)} outputs; "
                          "segrt imports semantic models with one image input and one output",
                          hint="export Mask R-CNN from PyTorch (segrt export maskrcnn_resnet50_fpn)")
    i, o = inputs[0], outs[0]
    io = OnnxIO(i.name, i.type.tensor_type.elem_type, _shape(i), o.name, o.type.tensor_type.elem_type, _shape(o))
    ok_unfused = (io.input_type in _FLOATS and len(io.input_shape) == 4 and io.input_shape[1] in (3, None)
                  and io.output_type in _FLOATS and len(io.output_shape) == 4)
    ok_fused = (io.input_type == TensorProto.UINT8 and len(io.input_shape) == 4 and io.input_shape[3] in (3, None)
                and io.output_type in _INTS and len(io.output_shape) == 3)
    if not (ok_unfused or ok_fused):
        raise ConfigError(
            f"{path}: input {i.name} {TensorProto.DataType.Name(io.input_type)} {list(io.input_shape)} -> "
            f"output {o.name} {TensorProto.DataType.Name(io.output_type)} {list(io.output_shape)} is neither "
            "float [N,3,H,W] -> logits [N,C,H,W] nor uint8 [N,H,W,3] -> mask [N,H,W]",
            hint="export the model with float NCHW input and logits output")
    return io


def _rename_tensor(model: onnx.ModelProto, old: str, new: str) -> None:
    if old == new:
        return
    g = model.graph
    for node in g.node:
        for seq in (node.input, node.output):
            for k, name in enumerate(seq):
                if name == old:
                    seq[k] = new
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name == old:
            vi.name = new


def rename_io(model: onnx.ModelProto, io: OnnxIO, input_name: str, output_name: str) -> None:
    """Rename the graph's input and output in place (every node reference follows)."""
    names = {n for node in model.graph.node for n in list(node.input) + list(node.output)}
    for want in (input_name, output_name):
        if want in names and want not in (io.input_name, io.output_name):
            raise ConfigError(f"the ONNX graph already has an inner tensor named {want!r}",
                              hint="rename it in the source model")
    _rename_tensor(model, io.input_name, input_name)
    _rename_tensor(model, io.output_name, output_name)


def fuse_onnx(model: onnx.ModelProto, io: OnnxIO, *, mean: Sequence[float], std: Sequence[float],
              color_order: str, num_classes: int) -> onnx.ModelProto:
    """Wrap an unfused semantic graph: uint8 NHWC BGR ``frame`` in, uint8 ``mask`` out."""
    if io.fused:
        return model
    if num_classes > 256:
        raise ConfigError(f"{num_classes} classes do not fit a fused uint8 mask", hint="import with --no-fuse")
    g = model.graph
    n, _, h, w = io.input_shape
    frame = helper.make_tensor_value_info("frame", TensorProto.UINT8,
                                          [n if n else "N", h if h else "H", w if w else "W", 3])
    mask = helper.make_tensor_value_info("mask", TensorProto.UINT8, [n if n else "N", h if h else "H", w if w else "W"])
    pre_in = "segrt_pre_gather" if color_order == "RGB" else "segrt_pre_nchw"
    g.initializer.extend([
        numpy_helper.from_array(np.asarray(mean, np.float32).reshape(1, 3, 1, 1), "segrt_mean"),
        numpy_helper.from_array(np.asarray(std, np.float32).reshape(1, 3, 1, 1), "segrt_std"),
    ])
    pre = [helper.make_node("Cast", ["frame"], ["segrt_pre_f32"], to=TensorProto.FLOAT, name="segrt_cast_in"),
           helper.make_node("Transpose", ["segrt_pre_f32"], ["segrt_pre_nchw"], perm=[0, 3, 1, 2],
                            name="segrt_nhwc_to_nchw")]
    if color_order == "RGB":
        g.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "segrt_bgr_to_rgb"))
        pre.append(helper.make_node("Gather", ["segrt_pre_nchw", "segrt_bgr_to_rgb"], [pre_in], axis=1,
                                    name="segrt_bgr_to_rgb"))
    pre.append(helper.make_node("Sub", [pre_in, "segrt_mean"], ["segrt_pre_centred"], name="segrt_sub_mean"))
    x = io.input_name
    if io.input_type != TensorProto.FLOAT:
        pre.append(helper.make_node("Div", ["segrt_pre_centred", "segrt_std"], ["segrt_pre_norm"], name="segrt_div_std"))
        pre.append(helper.make_node("Cast", ["segrt_pre_norm"], [x], to=io.input_type, name="segrt_cast_model"))
    else:
        pre.append(helper.make_node("Div", ["segrt_pre_centred", "segrt_std"], [x], name="segrt_div_std"))
    logits = io.output_name
    post = [helper.make_node("ArgMax", [logits], ["segrt_argmax"], axis=1, keepdims=0, name="segrt_argmax"),
            # via FLOAT: TensorRT 10.3 documents UINT8 casts only to/from FLOAT/HALF (graph_passes)
            helper.make_node("Cast", ["segrt_argmax"], ["segrt_argmax_f32"], to=TensorProto.FLOAT,
                             name="segrt_cast_ids"),
            helper.make_node("Cast", ["segrt_argmax_f32"], ["mask"], to=TensorProto.UINT8,
                             name="segrt_cast_mask")]
    nodes = pre + list(g.node) + post
    old_in = [i for i in g.input if i.name == io.input_name]
    for vi in old_in:
        g.input.remove(vi)
        g.value_info.append(vi)  # keeps the inner shape known
    old_out = list(g.output)
    del g.output[:]
    g.value_info.extend(old_out)
    g.input.insert(0, frame)
    g.output.append(mask)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    return model
