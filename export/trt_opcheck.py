"""Check an ONNX graph against the TensorRT ONNX parser's documented operator support, per release.

No GPU and no TensorRT are needed: the check reads a support table (one entry per TensorRT
release; see ``tests/data/trt_onnx_operators.json`` for its sources) and walks every node,
including the bodies of Loop/If/Scan. It reports, for each release, every node whose op type is
not supported, whose input type is not in the op's types column, or that breaks a documented
restriction (Resize modes, TopK ``sorted``/K, constant ``axes`` inputs, Q/DQ zero points,
NonMaxSuppression/RoiAlign attributes and ranks, UINT8 only as network I/O and only cast
to/from FLOAT/HALF). A graph that passes is not proven buildable; one that fails would not parse.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from segrt.errors import ConfigError

DEFAULT_TABLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "trt_onnx_operators.json"

TYPE_NAMES = {
    TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
    TensorProto.INT32: "INT32", TensorProto.INT64: "INT64", TensorProto.INT8: "INT8",
    TensorProto.UINT8: "UINT8", TensorProto.BOOL: "BOOL", TensorProto.DOUBLE: "DOUBLE",
    TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.INT4: "INT4", TensorProto.INT16: "INT16",
    TensorProto.UINT16: "UINT16", TensorProto.UINT32: "UINT32", TensorProto.UINT64: "UINT64",
    TensorProto.STRING: "STRING",
}
# Ops whose types column describes their output (they have no data input), and ops whose
# data input is not input 0.
_TYPED_BY_OUTPUT = {"Constant", "ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike", "Range"}
_DATA_INPUT = {"Where": 1}
_SUBGRAPH_OPS = {"Loop", "If", "Scan"}  # their types column covers carried values; bodies are checked
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class OpMiss:
    """One node that the TensorRT ``release`` parser would reject, and why."""

    release: str
    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"TensorRT {self.release}: node {self.node!r} ({self.op_type}): {self.reason}"


def load_support_table(path: str | os.PathLike[str] | None = None) -> dict[str, Mapping[str, Any]]:
    """The per-release support table (release name -> its entry) from ``path`` (JSON)."""
    p = Path(path) if path is not None else DEFAULT_TABLE
    try:
        data = json.loads(p.read_text())
        return dict(data["releases"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read the TensorRT operator table {p}: {exc}",
                          hint="pass the path of a trt_onnx_operators.json") from None


class _Graphs:
    """Tensor types, ranks and constant values of a model and all its subgraphs."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, ValueError):
            pass  # types then come from what the graph already records
        self.model = model
        self.types: dict[str, int] = {}
        self.shapes: dict[str, tuple[int | None, ...]] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.producers: dict[str, onnx.NodeProto] = {}
        self.io = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
        self._collect(model.graph)

    def _record(self, vi: onnx.ValueInfoProto) -> None:
        tt = vi.type.tensor_type
        if tt.elem_type:
            self.types.setdefault(vi.name, tt.elem_type)
        if tt.HasField("shape"):
            self.shapes.setdefault(vi.name, tuple(d.dim_value if d.HasField("dim_value") else None
                                                  for d in tt.shape.dim))

    def _collect(self, graph: onnx.GraphProto) -> None:
        for vi in (*graph.input, *graph.output, *graph.value_info):
            self._record(vi)
        for init in graph.initializer:
            arr = numpy_helper.to_array(init)
            self.consts[init.name] = arr
            self.types[init.name] = init.data_type
            self.shapes[init.name] = tuple(arr.shape)
        for node in graph.node:
            for out in node.output:
                self.producers[out] = node
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value":
                        arr = numpy_helper.to_array(a.t)
                        self.consts[node.output[0]] = arr
                        self.types[node.output[0]] = a.t.data_type
                        self.shapes[node.output[0]] = tuple(arr.shape)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    self._collect(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        self._collect(g)

    def upper_bound(self, name: str, depth: int = 0) -> float | None:
        """An upper bound on every element of ``name`` from constants through Min/Cast/reshapes."""
        if name in self.consts:
            arr = self.consts[name]
            return float(arr.max()) if arr.size else None
        node = self.producers.get(name)
        if node is None or depth > 16:
            return None
        if node.op_type == "Min":
            bounds = [b for b in (self.upper_bound(i, depth + 1) for i in node.input if i) if b is not None]
            return min(bounds) if bounds else None
        if node.op_type in ("Cast", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Concat"):
            bounds = [self.upper_bound(i, depth + 1) for i in (node.input if node.op_type == "Concat"
                                                              else node.input[:1])]
            return None if any(b is None for b in bounds) or not bounds else max(bounds)  # type: ignore[type-var]
        return None


def _attr(node: onnx.NodeProto, name: str) -> Any:
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return None


def _type_name(g: _Graphs, tensor: str) -> str | None:
    t = g.types.get(tensor)
    return None if t is None else TYPE_NAMES.get(t, TensorProto.DataType.Name(t))


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"#{index}:{node.output[0] if node.output else node.op_type}"


def _walk(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sub in subs:
                yield from _walk(sub)


def _check_types(node: onnx.NodeProto, g: _Graphs, spec: Mapping[str, Any]) -> list[str]:
    allowed = spec.get("importer_types", {}).get(node.op_type) or spec["ops"][node.op_type]
    if node.op_type in _SUBGRAPH_OPS or not allowed:
        return []
    if node.op_type == "Cast":
        src, dst = _type_name(g, node.input[0]), TYPE_NAMES.get(_attr(node, "to"), str(_attr(node, "to")))
        reasons = [f"casts {which} {t}, not in the Cast types {', '.join(allowed)}"
                   for which, t in (("from", src), ("to", dst)) if t is not None and t not in allowed]
        peers = spec.get("uint8", {}).get("cast_peers")
        if peers and "UINT8" in (src, dst) and src is not None:
            other = dst if src == "UINT8" else src
            if other not in (*peers, "UINT8"):
                reasons.append(f"casts {src} -> {dst}; ICastLayer converts UINT8 only to/from {'/'.join(peers)}")
        return reasons
    tensor = (node.output[0] if node.op_type in _TYPED_BY_OUTPUT else
              node.input[_DATA_INPUT.get(node.op_type, 0)] if len(node.input) > _DATA_INPUT.get(node.op_type, 0)
              else "")
    t = _type_name(g, tensor) if tensor else None
    if t is not None and t not in allowed:
        return [f"{tensor!r} is {t}; the {node.op_type} types are {', '.join(allowed)}"]
    return []


def _check_uint8(node: onnx.NodeProto, g: _Graphs, spec: Mapping[str, Any]) -> list[str]:
    if not spec.get("uint8", {}).get("io_only"):
        return []
    return [f"UINT8 tensor {name!r} is internal; UINT8 is only supported as a network input or output"
            for name in (*node.input, *node.output)
            if name and g.types.get(name) == TensorProto.UINT8 and name not in g.io]


def _check_restrictions(node: onnx.NodeProto, g: _Graphs, spec: Mapping[str, Any]) -> list[str]:
    op, reasons = node.op_type, []
    for idx in spec.get("const_inputs", {}).get(op, []):
        if len(node.input) > idx and node.input[idx] and node.input[idx] not in g.consts:
            reasons.append(f"input {idx} ({node.input[idx]!r}) must be a build-time constant")
    for name, allowed in spec.get("attr_values", {}).get(op, {}).items():
        value = _attr(node, name)
        if value is not None and value not in allowed:
            reasons.append(f"{name}={value!r} is unsupported (allowed: {', '.join(map(str, allowed))})")
    for name in spec.get("attr_all_ones", {}).get(op, []):
        value = _attr(node, name)
        if value and any(v != 1 for v in value):
            reasons.append(f"{name}={list(value)} must be empty or all ones")
    for idx_text, ranks in spec.get("input_ranks", {}).get(op, {}).items():
        idx = int(idx_text)
        shape = g.shapes.get(node.input[idx]) if len(node.input) > idx and node.input[idx] else None
        if shape is not None and len(shape) not in ranks:
            reasons.append(f"input {idx} has rank {len(shape)}; the parser takes rank {'/'.join(map(str, ranks))}")
    if op in spec.get("single_output", []) and len([o for o in node.output if o]) > 1:
        reasons.append("the second (Indices) output is unsupported")
    zero_idx = spec.get("zero_inputs", {}).get(op)
    if zero_idx is not None and len(node.input) > zero_idx and node.input[zero_idx]:
        zp = g.consts.get(node.input[zero_idx])
        if zp is None or np.any(zp != 0):
            reasons.append(f"zero point {node.input[zero_idx]!r} must be a constant zero")
    for idx_text, limit in spec.get("input_limits", {}).get(op, {}).items():
        reasons += _check_limit(node, g, int(idx_text), limit)
    false_idx = spec.get("false_inputs", {}).get(op)
    if false_idx is not None and len(node.input) > false_idx and node.input[false_idx]:
        flag = g.consts.get(node.input[false_idx])
        if flag is None or bool(np.any(flag)):
            reasons.append(f"input {false_idx} must be a constant False")
    if op == "RoiAlign" and len(node.input) > 1:
        shape = g.shapes.get(node.input[1])
        if shape is not None and len(shape) == 2 and shape[1] not in (None, 4):
            reasons.append(f"rois must be [num_rois, 4], got {list(shape)}")
    return reasons


def _check_limit(node: onnx.NodeProto, g: _Graphs, idx: int, limit: int) -> list[str]:
    """Input ``idx`` (TopK's K) must be below ``limit``: proven from a constant, a bound, or the axis size."""
    if len(node.input) <= idx or not node.input[idx]:
        return []
    bound = g.upper_bound(node.input[idx])
    if bound is None and node.op_type == "TopK":
        shape = g.shapes.get(node.input[0])
        axis = _attr(node, "axis")
        axis = -1 if axis is None else axis
        if shape and -len(shape) <= axis < len(shape) and shape[axis] is not None:
            bound = float(shape[axis])  # K never exceeds the axis it selects from
    if bound is None:
        return [f"input {idx} ({node.input[idx]!r}) has no provable bound below {limit}"]
    if bound >= limit:
        return [f"input {idx} ({node.input[idx]!r}) can reach {bound:g}; it must be less than {limit}"]
    return []


def check_model(model: onnx.ModelProto, spec: Mapping[str, Any], release: str) -> list[OpMiss]:
    """Every node of ``model`` (subgraphs included) that the ``release`` parser would reject."""
    return _check(_Graphs(model), spec, release)


def _check(g: _Graphs, spec: Mapping[str, Any], release: str) -> list[OpMiss]:
    model = g.model
    misses: list[OpMiss] = []
    lo, hi = spec["opset"]
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is not None and not lo <= opset <= hi:
        misses.append(OpMiss(release, "<model>", "opset", f"opset {opset} is outside the supported {lo}..{hi}"))
    for index, node in enumerate(_walk(model.graph)):
        label = _node_label(node, index)
        if node.domain not in _DEFAULT_DOMAINS:
            misses.append(OpMiss(release, label, node.op_type,
                                 f"domain {node.domain!r} is not a built-in parser op (needs a plugin)"))
            continue
        if node.op_type not in spec["ops"]:
            misses.append(OpMiss(release, label, node.op_type, "not in the supported-operator table"))
            continue
        for reason in (*_check_types(node, g, spec), *_check_uint8(node, g, spec),
                       *_check_restrictions(node, g, spec)):
            misses.append(OpMiss(release, label, node.op_type, reason))
    return misses


def check_releases(model: onnx.ModelProto | str | os.PathLike[str],
                   table: Mapping[str, Mapping[str, Any]] | None = None,
                   releases: Iterable[str] | None = None) -> dict[str, list[OpMiss]]:
    """``{release: misses}`` for each release of ``table`` (default: all in the shipped table)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    table = table if table is not None else load_support_table()
    names = list(releases) if releases is not None else list(table)
    unknown = [r for r in names if r not in table]
    if unknown:
        raise ConfigError(f"no operator table for TensorRT {', '.join(unknown)}",
                          hint=f"known releases: {', '.join(table)}")
    graphs = _Graphs(model)
    return {r: _check(graphs, table[r], r) for r in names}
