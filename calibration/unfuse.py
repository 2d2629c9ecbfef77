"""The unfused twin of a fused graph, for CPUs where the runtime's own pre/post is cheaper.

A fused graph takes the uint8 frame and returns the uint8 mask; on a GPU that saves host<->device
traffic and the CPU argmax. On a CPU the same work runs either way, and ONNX Runtime's in-graph
Cast/Transpose/normalisation and ArgMax can cost more than the runtime's in-place normalisation
and running-max argmax. So ``segrt quantize --target cpu|both`` also writes ``fp32-unfused``
(and ``int8-cpu-unfused``): the same network cut out between the fused preprocessing and the
fused ArgMax (float NCHW ``input`` in, ``logits`` out), registered with its own I/O spec
(``details.io``), checked against the fused graph on the held-out frames through the runtime's
pre/post. ``--precision auto`` times both forms for the pipeline as a whole and keeps the faster.
"""
from __future__ import annotations

import numpy as np
import onnx

from segrt.calibration.graph import FLOAT_TYPES, index_graph, preprocess_nodes
from segrt.calibration.qdq import prepare_fp32
from segrt.errors import CalibrationError
from segrt.runtime.bundle import Bundle, onnx_filename
from segrt.runtime.fsutil import atomic_path, sha256_file
from segrt.runtime.manifest import Artifact, InputSpec, Manifest, OutputSpec

UNFUSED_SUFFIX = "-unfused"
INPUT_NAME, OUTPUT_NAME = "input", "logits"


MASK_TAIL_OPS = ("Cast", "Reshape", "Squeeze", "Unsqueeze", "Identity")


def _argmax_tail(index) -> tuple[set[str], str]:
    """The nodes from the ArgMax to the mask output (casts and reshapes), and the ArgMax's input."""
    if len(index.graph_outputs) != 1:
        raise CalibrationError("the graph has several outputs; only a single mask output has an unfused twin")
    node = index.producer.get(index.graph_outputs[0])
    tail: set[str] = set()
    while node is not None and node.op_type in MASK_TAIL_OPS:
        tail.add(node.name)
        node = index.producer.get(node.input[0])
    if node is None or node.op_type != "ArgMax":
        raise CalibrationError("the graph has no fused pre/post-processing to cut away (no ArgMax before the mask)",
                               hint="only fused bundles (uint8 frame in, mask out) have an unfused twin")
    tail.add(node.name)
    return tail, node.input[0]


def boundary_tensors(model: onnx.ModelProto) -> tuple[str, str]:
    """(network input, logits): where the fused pre-processing ends and the fused argmax begins."""
    index = index_graph(model)
    pre = preprocess_nodes(index)
    if not pre:
        raise CalibrationError("the graph has no fused pre/post-processing to cut away (float input)",
                               hint="only fused bundles (uint8 frame in, mask out) have an unfused twin")
    _, logits = _argmax_tail(index)
    pre_out = {o for n in index.nodes if n.name in pre for o in n.output}
    starts = {i for n in index.nodes if n.name not in pre for i in n.input if i in pre_out}
    if len(starts) != 1 or index.elem_type.get(logits) not in FLOAT_TYPES:
        raise CalibrationError(f"cannot cut the fused graph cleanly (network inputs {sorted(starts)[:3]})",
                               hint="export the model with --no-fuse instead")
    return next(iter(starts)), logits


def unfused_from_fused(model: onnx.ModelProto, manifest: Manifest) -> onnx.ModelProto:
    """The network between the fused pre- and post-processing: ``input`` (float NCHW) -> ``logits``."""
    m, _ = prepare_fp32(model)
    index = index_graph(m)
    cut = preprocess_nodes(index) | _argmax_tail(index)[0]
    start, end = boundary_tensors(m)
    rename = {start: INPUT_NAME, end: OUTPUT_NAME}
    # An inner tensor may already carry one of the twin's I/O names (a Q/DQ graph quantizes the
    # fused graph's own ``logits`` before its ArgMax): give it a fresh name so the twin stays SSA.
    taken = {x for n in m.graph.node for x in (*n.input, *n.output)} | {t.name for t in m.graph.initializer}
    for name in (INPUT_NAME, OUTPUT_NAME):
        if name in taken and name not in rename:
            fresh, k = f"{name}_inner", 0
            while fresh in taken:
                k += 1
                fresh = f"{name}_inner{k}"
            rename[name] = fresh
    nodes = []
    for node in m.graph.node:
        if node.name in cut:
            continue
        n = onnx.NodeProto()
        n.CopyFrom(node)
        n.input[:] = [rename.get(x, x) for x in n.input]
        n.output[:] = [rename.get(x, x) for x in n.output]
        nodes.append(n)
    used = {x for n in nodes for x in n.input}
    inits = []
    for t in m.graph.initializer:
        if rename.get(t.name, t.name) in used:
            init = onnx.TensorProto()
            init.CopyFrom(t)
            init.name = rename.get(t.name, t.name)
            inits.append(init)
    inp = manifest.input
    batch = "N" if inp.dynamic else inp.batch
    h, w = ("H", "W") if inp.dynamic else (inp.height, inp.width)
    graph = onnx.helper.make_graph(
        nodes, m.graph.name + "_unfused",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, [batch, inp.channels, h, w])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT,
                                            [batch, manifest.output.num_classes, h, w])],
        initializer=inits)
    out = onnx.helper.make_model(graph, opset_imports=list(m.opset_import), producer_name="segrt-unfuse")
    out.ir_version = m.ir_version
    onnx.checker.check_model(out)
    return out


def unfused_io(manifest: Manifest) -> dict:
    """The ``details.io`` record of an unfused twin: float NCHW in, logits out."""
    inp = manifest.input
    spec = InputSpec(name=INPUT_NAME, height=inp.height, width=inp.width, layout="NCHW", dtype="float32",
                     channels=inp.channels, fused=False, batch=inp.batch, dynamic=inp.dynamic)
    out = OutputSpec(kind="logits", names=(OUTPUT_NAME,), num_classes=manifest.output.num_classes)
    return {"input": spec.to_dict(), "output": out.to_dict()}


def agreement_of_twin(bundle: Bundle, fused_precision: str, twin: onnx.ModelProto, frames) -> float:
    """Pixel agreement of the twin run through the runtime's pre/post with the fused graph, on
    ``frames`` (uint8 NHWC at model size, as the evaluator holds them)."""
    import onnxruntime as ort

    from segrt.runtime.postprocess import MaskDecoder
    from segrt.runtime.preprocess import Preprocessor

    view = bundle.manifest.replace(input=InputSpec.from_dict(unfused_io(bundle.manifest)["input"]),
                                   output=OutputSpec.from_dict(unfused_io(bundle.manifest)["output"]))
    fused = ort.InferenceSession(str(bundle.onnx_path(fused_precision)), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"])
    pre, dec = Preprocessor(view), MaskDecoder(view)
    same = total = 0
    for x in frames:
        ref = fused.run(None, {bundle.manifest.input.name: x})[0][0]
        tensor, _ = pre.pre(np.ascontiguousarray(x[0]))
        mask = dec.decode({OUTPUT_NAME: plain.run(None, {INPUT_NAME: tensor})[0]})
        same += int(np.count_nonzero(mask == ref))
        total += ref.size
    return same / total if total else 0.0


def register_unfused_twin(bundle: Bundle, fused_precision: str, frames, min_agreement: float) -> Artifact | None:
    """Write ``model.<precision>-unfused.onnx`` when the twin agrees with the fused graph; None if not."""
    fused_art = bundle.artifact(fused_precision)
    twin = unfused_from_fused(onnx.load(str(bundle.onnx_path(fused_precision, verify=True))), bundle.manifest)
    agreement = agreement_of_twin(bundle, fused_precision, twin, frames)
    if agreement < min_agreement:
        return None
    precision = fused_precision + UNFUSED_SUFFIX
    target = bundle.path / onnx_filename(precision)
    with atomic_path(target) as tmp:
        onnx.save(twin, str(tmp))
    accuracy = dict(fused_art.accuracy or {"passed": True})
    accuracy.update({"precision": precision, "twin_agreement": agreement})
    art = Artifact(precision=precision, path=onnx_filename(precision), sha256=sha256_file(target), accuracy=accuracy,
                   details={"target": "cpu", "unfused_of": fused_precision, "fused_sha256": fused_art.sha256,
                            "io": unfused_io(bundle.manifest)})
    bundle.update(bundle.manifest.with_artifact(art))
    return art


__all__ = ["UNFUSED_SUFFIX", "boundary_tensors", "unfused_from_fused", "unfused_io", "agreement_of_twin",
           "register_unfused_twin"]
