"""FP32 -> FP16 ONNX with the graph's I/O types and numerically sensitive ops kept in FP32.

Written on the ONNX graph directly because ``onnxconverter_common``'s converter breaks on
the fused graph (uint8 in, uint8 out; see DESIGN.md). The pass decides, per node, whether
it computes in FP16 ("low") or FP32 ("kept"), then inserts one ``Cast`` per tensor and
target type wherever a producer and a consumer disagree. Correctness never depends on the
assignment: every boundary gets a cast, so the assignment only decides speed and accuracy.

Kept in FP32 (each kept node is reported with its reason):

* the fused preprocessing: ``Cast`` from the uint8 frame, channel reorder, ``Transpose``
  and the ``Sub``/``Div`` normalisation. FP16 cannot hold ``x - 123.675`` exactly, and the
  region is a few element-wise ops that TensorRT fuses anyway; the cast to FP16 sits right
  before the first convolution;
* shape arithmetic: every node whose inputs are only constants and tensor shapes
  (``Shape`` -> ``Cast`` -> ``Mul`` -> ``Floor`` -> ``Cast`` chains feeding ``Resize``);
* inputs whose ONNX type is not the node's data type: ``Resize``'s ``roi``/``scales``
  (``scales`` must be float32 by the spec), ``Pad``'s pads, ``Clip`` bounds follow the data;
* the ops in :data:`DEFAULT_KEEP_FP32_OPS`: exponentials, powers, roots, logarithms,
  softmax, reductions and normalisations, whose intermediate values leave FP16's range
  (max 65504) or lose too many bits in long sums;
* nodes with subgraphs (If/Loop/Scan) and non-standard domains.

``ArgMax`` runs on the FP16 logits: casting FP16 values to FP32 first changes no value and
so no index (ties included), it would only add a full-resolution cast. TensorRT imports
ArgMax as TopK, which runs in FP16; ONNX Runtime's CPU kernel accepts float16.

FP32 initializers consumed by FP16 nodes are converted: values beyond +-65504 are clamped
(counted, with a warning), non-zero values below FP16's smallest subnormal (6e-8) become 0
(counted). An initializer also read by an FP32 node keeps its FP32 copy.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from segrt.calibration.graph import (
    GraphIndex,
    ensure_node_names,
    has_subgraph,
    hoist_constants,
    index_graph,
    make_cast,
    preprocess_nodes,
    shape_nodes,
)

log = logging.getLogger("segrt.calibration.fp16")

FP16_MAX = 65504.0
FP16_MIN_SUBNORMAL = 2.0 ** -24

# Ops kept in FP32 because their intermediate values overflow FP16 (exp, pow, sums of
# squares) or because long reductions lose precision in FP16 accumulation.
DEFAULT_KEEP_FP32_OPS: frozenset[str] = frozenset({
    # exponentials, powers, roots, logs
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Softplus", "Softsign",
    # softmax family
    "Softmax", "LogSoftmax", "Hardmax",
    # reductions
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "CumSum",
    # normalisations (mean/variance over many elements)
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "LpNormalization",
    "MeanVarianceNormalization", "RMSNormalization",
    # detection / indexing ops whose coordinates need FP32
    "RoiAlign", "NonMaxSuppression", "Range",
})

# Nodes that accept any input type without changing numerics: no cast is ever put before them.
_NEUTRAL_INPUT_OPS = frozenset({"Cast", "Shape", "Size"})
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class Fp16Conversion:
    """The converted model and what the pass did."""

    model: onnx.ModelProto
    fp16_nodes: int
    fp32_nodes: dict[str, str]  # kept float node -> reason
    casts_inserted: int
    initializers_converted: int
    clamped_values: int  # |x| > 65504, clamped
    flushed_values: int  # 0 < |x| < 6e-8, became 0
    fp32_ops: dict[str, int] = field(default_factory=dict)  # op type -> kept count

    def weights_note(self) -> str:
        """One line on weights FP16 cannot hold (empty when every weight fits)."""
        return weights_note(self.clamped_values, self.flushed_values)

    def summary(self) -> dict:
        return {
            "fp16_nodes": self.fp16_nodes,
            "fp32_float_nodes": len(self.fp32_nodes),
            "fp32_ops": dict(self.fp32_ops),
            "casts_inserted": self.casts_inserted,
            "initializers_converted": self.initializers_converted,
            "clamped_values": self.clamped_values,
            "flushed_values": self.flushed_values,
        }


def weights_note(clamped: int, flushed: int) -> str:
    """``N weight values beyond ±65504 were clamped; M ... became 0``, naming only non-zero counts."""
    parts = []
    if clamped:
        parts.append(f"{clamped} weight values beyond ±65504 were clamped")
    if flushed:
        parts.append(f"{flushed} weight values below FP16's smallest subnormal became 0")
    return "; ".join(parts)


def _schema(node: onnx.NodeProto, opset: int):
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return None


def _formal_type(params, i: int) -> str | None:
    """Type string of actual position ``i`` given the formal parameters (handles variadics)."""
    if not params:
        return None
    if i < len(params):
        return params[i].type_str
    last = params[-1]
    if last.option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        return last.type_str
    return None


def primary_group(node: onnx.NodeProto, index: GraphIndex) -> tuple[set[int], set[int]] | None:
    """(input positions, output positions) that share the node's float data type.

    The data type is that of the first float32 input (or, for DequantizeLinear-like ops
    with no float input, the first float32 output). None when the schema does not let
    that type be float16, so the node must stay in FP32.
    """
    schema = _schema(node, index.opset)
    if schema is None:
        return None
    elem = index.elem_type
    type_str = None
    for i, x in enumerate(node.input):
        if x and elem.get(x) == TensorProto.FLOAT:
            type_str = _formal_type(schema.inputs, i)
            break
    if type_str is None:
        for i, y in enumerate(node.output):
            if y and elem.get(y) == TensorProto.FLOAT:
                type_str = _formal_type(schema.outputs, i)
                break
    if type_str is None or type_str.startswith("tensor("):
        return None
    allowed = next((c.allowed_type_strs for c in schema.type_constraints if c.type_param_str == type_str), ())
    if "tensor(float16)" not in allowed:
        return None
    ins = {i for i, x in enumerate(node.input) if x and _formal_type(schema.inputs, i) == type_str}
    outs = {i for i, y in enumerate(node.output) if y and _formal_type(schema.outputs, i) == type_str}
    return ins, outs


def _to_fp16(arr: np.ndarray) -> tuple[np.ndarray, int, int]:
    a = arr.astype(np.float32, copy=False)
    over = np.abs(a) > FP16_MAX
    clamped = int(np.count_nonzero(over))
    if clamped:
        a = np.clip(a, -FP16_MAX, FP16_MAX)
    flushed = int(np.count_nonzero((a != 0) & (np.abs(a) < FP16_MIN_SUBNORMAL / 2)))
    return a.astype(np.float16), clamped, flushed


def _qdq_scale_to_fp16(arr: np.ndarray) -> np.ndarray:
    """Q/DQ scales must stay positive: a scale below FP16's smallest subnormal is raised to it
    (the channel's values are then below 4e-6 and quantize to ~0 either way)."""
    a = np.clip(arr.astype(np.float32), FP16_MIN_SUBNORMAL, FP16_MAX)
    return a.astype(np.float16)


def fp16_conversion(model: onnx.ModelProto, *, keep_fp32_ops: Iterable[str] = DEFAULT_KEEP_FP32_OPS,
                    keep_fp32_nodes: Iterable[str] = (), keep_preprocess_fp32: bool = True) -> Fp16Conversion:
    """Convert ``model`` (FP32, or an FP32-remainder Q/DQ model) to FP16 compute.

    The graph inputs and outputs keep their names and types. Raises ValueError if the
    result fails ONNX type checking (a bug in this pass, never a user error).
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    hoist_constants(m)
    ensure_node_names(m)
    index = index_graph(m)
    keep_ops = set(keep_fp32_ops)
    keep_nodes = set(keep_fp32_nodes)
    pre = preprocess_nodes(index) if keep_preprocess_fp32 else set()
    shapes = shape_nodes(index)
    elem = index.elem_type
    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16

    # ---- 1. decide each node's precision ---------------------------------------------------
    low: dict[str, tuple[set[int], set[int]]] = {}
    kept: dict[str, str] = {}
    for node in m.graph.node:
        has_float = any(elem.get(x) == F32 for x in list(node.input) + list(node.output) if x)
        if not has_float or node.op_type in _NEUTRAL_INPUT_OPS:
            continue
        reason = None
        if node.domain not in ("", "ai.onnx"):
            reason = f"custom domain {node.domain}"
        elif has_subgraph(node):
            reason = "holds a subgraph"
        elif node.op_type in keep_ops:
            reason = f"{node.op_type} kept in FP32 (overflow/accumulation-prone)"
        elif node.name in keep_nodes:
            reason = "requested"
        elif node.name in pre:
            reason = "fused preprocessing"
        elif node.name in shapes and node.op_type not in _QDQ_OPS:
            # (a weight's DequantizeLinear is constant too, but it must feed its op directly)
            reason = "shape/constant computation"
        elif any(o in index.implicit_inputs for o in node.output):
            reason = "read by a subgraph"
        group = None
        if reason is None:
            group = primary_group(node, index)
            if group is None:
                reason = f"{node.op_type}-{index.opset} has no float16 type in the ONNX schema"
        if reason is not None:
            kept[node.name] = reason
        else:
            low[node.name] = group  # type: ignore[assignment]

    # ---- 2. types each tensor is produced with, and required by each consumer --------------
    produced: dict[str, int] = {}
    for node in m.graph.node:
        if node.name in low:
            for j in low[node.name][1]:
                if elem.get(node.output[j]) == F32:
                    produced[node.output[j]] = F16

    def required(node: onnx.NodeProto, i: int, name: str) -> int | None:
        if node.op_type in _NEUTRAL_INPUT_OPS:
            return None
        t = elem.get(name)
        if t != F32:
            return None
        if node.name in low and i in low[node.name][0]:
            return F16
        return F32

    # Retarget Cast(to=FLOAT) whose every reader wants FP16 (saves a Cast->Cast chain).
    graph_outs = set(index.graph_outputs)
    for node in m.graph.node:
        if node.op_type != "Cast" or not node.output or node.output[0] in graph_outs:
            continue
        to = next((a for a in node.attribute if a.name == "to"), None)
        out = node.output[0]
        if to is None or to.i != F32 or out in index.implicit_inputs:
            continue
        readers = index.consumers.get(out, [])
        if readers and all(required(n, i, out) == F16 for n, i in readers):
            to.i = F16
            produced[out] = F16

    # ---- 3. initializers -------------------------------------------------------------------
    stats = {"clamped": 0, "flushed": 0, "converted": 0}
    init_rename: dict[tuple[str, int], str] = {}  # (consumer node name, input pos) -> FP16 copy
    new_inits: list[TensorProto] = []
    pinned = {i.name for i in m.graph.input} | graph_outs  # names whose type is part of the I/O
    for init in list(m.graph.initializer):
        if init.data_type != F32:
            continue
        readers = index.consumers.get(init.name, [])
        need = {(n.name, i): required(n, i, init.name) for n, i in readers}
        if F16 not in need.values():
            continue
        arr = numpy_helper.to_array(init)
        if all(n.op_type in _QDQ_OPS for n, _ in readers):
            half = _qdq_scale_to_fp16(arr)
        else:
            half, c, f = _to_fp16(arr)
            stats["clamped"] += c
            stats["flushed"] += f
        stats["converted"] += 1
        if F32 in need.values() or init.name in pinned:
            # Also read in FP32: keep it, and give the FP16 readers their own copy.
            copy_name = f"{init.name}__fp16"
            new_inits.append(numpy_helper.from_array(half, copy_name))
            init_rename.update({key: copy_name for key, r in need.items() if r == F16})
        else:
            init.CopyFrom(numpy_helper.from_array(half, init.name))
            produced[init.name] = F16
    m.graph.initializer.extend(new_inits)

    # ---- 4. graph outputs produced in FP16 get renamed; a Cast restores the declared name ---
    renamed: dict[str, str] = {}
    for o in index.graph_outputs:
        if produced.get(o) == F16:
            renamed[o] = f"{o}__fp16"
            produced[renamed[o]] = F16
            elem[renamed[o]] = F32  # its readers require what they required of the original
    if renamed:
        for node in m.graph.node:
            for k, y in enumerate(node.output):
                if y in renamed:
                    node.output[k] = renamed[y]
            for k, x in enumerate(node.input):
                if x in renamed:
                    node.input[k] = renamed[x]

    # ---- 5. insert casts -------------------------------------------------------------------
    cast_cache: dict[tuple[str, int], str] = {}
    pending: dict[str, list[onnx.NodeProto]] = {}  # tensor -> casts to emit right after it
    for orig, new in renamed.items():
        cast_cache[(new, F32)] = orig
        pending.setdefault(new, []).append(make_cast(new, orig, F32, f"{orig}__cast_fp32"))

    def cast_to(name: str, to: int) -> str:
        key = (name, to)
        if key not in cast_cache:
            dst = f"{name}__{'fp16' if to == F16 else 'fp32'}"
            if dst in elem or dst in produced:
                dst = f"{dst}_{len(cast_cache)}"
            cast_cache[key] = dst
            pending.setdefault(name, []).append(make_cast(name, dst, to, f"{dst}__cast"))
        return cast_cache[key]

    for node in m.graph.node:
        for i, x in enumerate(node.input):
            if not x:
                continue
            if (node.name, i) in init_rename:
                node.input[i] = init_rename[(node.name, i)]
                continue
            want = required(node, i, x)
            have = produced.get(x, elem.get(x))
            if want is not None and have in (F32, F16) and have != want:
                node.input[i] = cast_to(x, want)
    casts = sum(len(v) for v in pending.values())

    # Emit nodes in order, each producer followed by the casts of its outputs.
    ordered: list[onnx.NodeProto] = []
    for name in index.graph_inputs + list(index.initializers):
        ordered.extend(pending.pop(name, []))
    for node in m.graph.node:
        ordered.append(node)
        for y in node.output:
            ordered.extend(pending.pop(y, []))
    if pending:  # cannot happen: every tensor is a graph input, an initializer or a node output
        raise ValueError(f"FP16 pass: casts of unknown tensors {sorted(pending)}")
    del m.graph.node[:]
    m.graph.node.extend(ordered)

    # ---- 6. types: drop stale value_info, re-infer strictly --------------------------------
    del m.graph.value_info[:]
    try:
        checked = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ValueError(f"FP16 pass produced an ill-typed graph: {exc}") from exc
    # counted, not printed: a sensitivity fallback converts the graph once per candidate layer;
    # the caller reports the final model's counts once (see Fp16Conversion.weights_note)
    log.debug("fp16: %d weight values clamped, %d became 0", stats["clamped"], stats["flushed"])
    fp32_ops: dict[str, int] = {}
    nodes_by_name = {n.name: n for n in m.graph.node}
    for name in kept:
        op = nodes_by_name[name].op_type
        fp32_ops[op] = fp32_ops.get(op, 0) + 1
    return Fp16Conversion(
        model=checked, fp16_nodes=len(low), fp32_nodes=kept, casts_inserted=casts,
        initializers_converted=stats["converted"], clamped_values=stats["clamped"],
        flushed_values=stats["flushed"], fp32_ops=dict(sorted(fp32_ops.items())),
    )


def fp16_onnx_from_fp32(model: onnx.ModelProto, keep_fp32_ops: Iterable[str] = DEFAULT_KEEP_FP32_OPS,
                        keep_fp32_nodes: Iterable[str] = ()) -> onnx.ModelProto:
    """The FP16 version of ``model`` (I/O names and types unchanged). See the module docstring."""
    return fp16_conversion(model, keep_fp32_ops=keep_fp32_ops, keep_fp32_nodes=keep_fp32_nodes).model


def fp32_emulation_from_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An FP32 model that computes what an FP16 engine computes, for accuracy checks on a CPU.

    ONNX Runtime's CPU provider has FP16 kernels for only some ops; for the others it
    inserts casts to FP32 and then removes the FP32->FP16->FP32 round trips as redundant,
    so running an FP16 graph there skips most FP16 rounding and overstates its accuracy.
    This graph makes the rounding explicit instead: every FP16 tensor of ``model`` becomes
    an FP32 tensor holding FP16-rounded values (FP16 weights are exact in FP32; each op's
    output goes through Cast->FP16->FP32), so every op computes in FP32 on FP16 values and
    rounds its result to FP16, like a TensorRT FP16 kernel (FP16 storage, FP32 accumulation).
    Q/DQ nodes keep their integer types; their FP16 scales become exact FP32 values.
    """
    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    m = onnx.ModelProto()
    m.CopyFrom(model)
    hoist_constants(m)
    ensure_node_names(m)
    index = index_graph(m)
    elem = index.elem_type
    for init in m.graph.initializer:
        if init.data_type == F16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    for inp in m.graph.input:
        if inp.type.tensor_type.elem_type == F16 and inp.name in index.initializers:
            inp.type.tensor_type.elem_type = F32
    graph_outs = set(index.graph_outputs)
    new_nodes: list[onnx.NodeProto] = []
    rename_inputs: dict[str, str] = {}
    for name in index.graph_inputs:  # FP16 graph inputs: widen once at the top
        if elem.get(name) == F16:
            rename_inputs[name] = f"{name}__emu32"
            new_nodes.append(make_cast(name, rename_inputs[name], F32, f"{name}__emu_in"))
    for node in m.graph.node:
        for k, x in enumerate(node.input):
            if x in rename_inputs:
                node.input[k] = rename_inputs[x]
        if node.op_type == "ConstantOfShape":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == F16:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32)))
        new_nodes.append(node)
        for k, y in enumerate(node.output):
            if not y or elem.get(y) != F16:
                continue
            raw = f"{y}__emu_raw"
            node.output[k] = raw
            if node.op_type == "Cast":  # the Cast itself rounds to FP16; widen its result
                new_nodes.append(make_cast(raw, y if y not in graph_outs else f"{y}__emu32", F32, f"{y}__emu_w"))
            else:  # the op now computes in FP32; round its result through FP16
                mid = f"{y}__emu16"
                new_nodes.append(make_cast(raw, mid, F16, f"{y}__emu_r"))
                new_nodes.append(make_cast(mid, y if y not in graph_outs else f"{y}__emu32", F32, f"{y}__emu_w"))
            if y in graph_outs:  # an FP16 graph output keeps its declared type
                rename_inputs[y] = f"{y}__emu32"
                new_nodes.append(make_cast(f"{y}__emu32", y, F16, f"{y}__emu_out"))
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    del m.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ValueError(f"FP16 emulation produced an ill-typed graph: {exc}") from exc
