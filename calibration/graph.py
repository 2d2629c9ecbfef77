"""Read-only analysis of an ONNX graph shared by the FP16 and INT8 passes.

The passes need the same few facts about a segmentation graph: the element type of
every tensor, who produces and who consumes it, which nodes form the fused
preprocessing (uint8 ``frame`` -> Cast -> transpose/normalise) and postprocessing
(ArgMax -> Cast to uint8) regions, and which nodes only compute shapes. Everything
here works on the main graph; nodes holding subgraphs (If/Loop/Scan) are reported so
the passes can leave them alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)

# Ops the fused preprocessing is made of (uint8 frame -> float normalised NCHW). A node
# joins the region only if every input is region data or a constant.
PREPROCESS_OPS = frozenset({
    "Cast", "Transpose", "Sub", "Div", "Mul", "Add", "Gather", "Slice", "Concat", "Split",
    "Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten",
})
# Ops the fused postprocessing is made of (logits -> class ids as the graph output).
POSTPROCESS_OPS = frozenset({
    "ArgMax", "ArgMin", "Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Transpose", "TopK",
})
# Ops whose output depends only on the *shape* of their input, never its values.
SHAPE_OF_OPS = frozenset({"Shape", "Size"})


def ai_onnx_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset version the model imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ValueError("model imports no ai.onnx opset")


def ensure_node_names(model: onnx.ModelProto) -> int:
    """Give every main-graph node a unique name (the quantizer excludes nodes by name).

    Returns the number of nodes renamed. Names that are already unique are kept, so names
    stay stable between the FP32 model and everything derived from it.
    """
    seen: set[str] = set()
    renamed = 0
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            base = f"{node.op_type}_{i}"
            name, k = base, 0
            while name in seen:
                k += 1
                name = f"{base}_{k}"
            node.name = name
            renamed += 1
        seen.add(node.name)
    return renamed


def hoist_constants(model: onnx.ModelProto) -> int:
    """Turn main-graph ``Constant`` nodes holding a tensor into initializers.

    The passes treat constants uniformly as initializers (converted to FP16 or quantized
    in place). Constants that are graph outputs are left as nodes. Returns the count.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    keep, hoisted = [], 0
    for node in graph.node:
        if (node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1
                and node.attribute[0].name == "value" and node.output[0] not in outputs):
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            graph.initializer.append(t)
            hoisted += 1
        else:
            keep.append(node)
    if hoisted:
        del graph.node[:]
        graph.node.extend(keep)
    return hoisted


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a node's subgraphs read implicitly."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else [])
        for g in graphs:
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                local.update(n.output)
            for n in g.node:
                names.update(x for x in n.input if x and x not in local)
                names.update(_subgraph_inputs(n) - local)
    return names


def has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


@dataclass
class GraphIndex:
    """Producers, consumers and element types of a model's main graph."""

    model: onnx.ModelProto
    opset: int
    elem_type: dict[str, int]
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]]
    initializers: dict[str, onnx.TensorProto]
    graph_inputs: list[str]
    graph_outputs: list[str]
    implicit_inputs: set[str] = field(default_factory=set)  # read by subgraphs

    @property
    def nodes(self):
        return self.model.graph.node

    def is_static(self, name: str) -> bool:
        return name in self.initializers

    def float_names(self, names) -> list[str]:
        return [n for n in names if n and self.elem_type.get(n) == TensorProto.FLOAT]


def index_graph(model: onnx.ModelProto, *, infer: bool = True) -> GraphIndex:
    """Index ``model`` (shape inference fills in intermediate element types)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False) if infer else model
    g = inferred.graph
    elem: dict[str, int] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            elem[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name: t for t in model.graph.initializer}
    for name, t in inits.items():
        elem[name] = t.data_type
    producer: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    implicit: set[str] = set()
    for node in model.graph.node:
        for o in node.output:
            if o:
                producer[o] = node
        for i, x in enumerate(node.input):
            if x:
                consumers.setdefault(x, []).append((node, i))
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and node.output:
                    elem[node.output[0]] = a.t.data_type
        if has_subgraph(node):
            implicit |= _subgraph_inputs(node)
    init_names = set(inits)
    return GraphIndex(
        model=model, opset=ai_onnx_opset(model), elem_type=elem, producer=producer, consumers=consumers,
        initializers=inits,
        graph_inputs=[i.name for i in model.graph.input if i.name not in init_names],
        graph_outputs=[o.name for o in model.graph.output], implicit_inputs=implicit,
    )


def static_tensors(index: GraphIndex) -> set[str]:
    """Tensors computable without the graph input's *values*: initializers, constants,
    shapes of tensors, and anything computed only from those (shape arithmetic)."""
    static = set(index.initializers)
    for node in index.nodes:  # nodes are topologically sorted in a valid ONNX graph
        ins = [x for x in node.input if x]
        if node.op_type in SHAPE_OF_OPS or node.op_type == "Constant" or (ins and all(x in static for x in ins)):
            static.update(o for o in node.output if o)
    return static


def shape_nodes(index: GraphIndex) -> set[str]:
    """Names of nodes that only compute shapes or constants (every input is static)."""
    static = static_tensors(index)
    out = set()
    for node in index.nodes:
        ins = [x for x in node.input if x]
        if node.op_type in SHAPE_OF_OPS or node.op_type == "Constant" or (ins and all(x in static for x in ins)):
            out.add(node.name)
    return out


def preprocess_nodes(index: GraphIndex) -> set[str]:
    """The fused preprocessing region: from an integer graph input (the uint8 frame) forward
    through casts, layout changes, channel reordering and normalisation, up to (not
    including) the first compute op. Empty for unfused graphs (float input)."""
    static = static_tensors(index)
    region = {n for n in index.graph_inputs
              if index.elem_type.get(n) not in FLOAT_TYPES and index.elem_type.get(n) is not None}
    if not region:
        return set()
    names = set()
    for node in index.nodes:
        if node.op_type not in PREPROCESS_OPS:
            continue
        ins = [x for x in node.input if x]
        if any(x in region for x in ins) and all(x in region or x in static for x in ins):
            names.add(node.name)
            region.update(o for o in node.output if o)
    return names


def postprocess_nodes(index: GraphIndex) -> set[str]:
    """The fused postprocessing region: walking back from the graph outputs through
    argmax and integer casts/reshapes (the class-id mask), stopping at the first op that
    produces the logits. Empty for graphs that output logits."""
    names: set[str] = set()
    frontier = list(index.graph_outputs)
    seen: set[str] = set()
    while frontier:
        t = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        node = index.producer.get(t)
        if node is None or node.op_type not in POSTPROCESS_OPS:
            continue
        # Only integer results belong to postprocessing; a float Reshape/Transpose at the end
        # of an unfused graph is part of the network.
        if any(index.elem_type.get(o) in FLOAT_TYPES for o in node.output if o):
            continue
        names.add(node.name)
        frontier.extend(x for x in node.input if x)
    return names


def node_by_name(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {n.name: n for n in model.graph.node}


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def make_cast(src: str, dst: str, to: int, name: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], to=to, name=name)
