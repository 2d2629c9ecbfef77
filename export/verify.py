"""Check an exported ONNX against PyTorch with ONNX Runtime, on random and structured frames.

Semantic models: the max abs difference of the logits and the share of mask pixels that
agree. For a fused graph (uint8 frame in, uint8 mask out) the logits are read from the same
graph by exposing the ArgMax input as an extra output of an in-memory copy, so the shipped
graph itself is checked, not a twin. A mask pixel may legitimately differ where PyTorch's two
best logits are closer than the logits tolerance (a tie broken by rounding): those are counted
as ``tie_mismatches``; any other disagreement fails.

Instances (Mask R-CNN): detections are matched by label and IoU (greedy, in score order);
we report counts, the matched share, box/score/mask-probability differences. A randomly
initialised Mask R-CNN emits no detection above its 0.05 score threshold, so the caller may
verify an extra *probe* export with the threshold at 0 (see :func:`segrt.export.api`), where
all 100 detections are compared.

Beyond tolerance :class:`VerificationError` is raised with the numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from segrt.errors import VerificationError


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria. Logits: ``max_abs_diff <= atol + rtol * max|torch logits|``."""

    atol: float = 1e-3
    rtol: float = 1e-3
    min_mask_agreement_pct: float = 99.0
    box_atol_px: float = 1.0
    score_atol: float = 1e-3
    mask_prob_atol: float = 2e-2
    min_matched_pct: float = 90.0


# -- test frames -------------------------------------------------------------------------------
def sample_frames(height: int, width: int, *, batch: int = 1, seed: int = 0,
                kinds: Sequence[str] = ("random", "gradient", "shapes")) -> list[tuple[str, np.ndarray]]:
    """Deterministic uint8 BGR frames ``[batch, H, W, 3]``: noise, smooth gradients, flat shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for kind in kinds:
        frames = []
        for _ in range(batch):
            if kind == "random":
                f = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            elif kind == "gradient":
                a, b = rng.uniform(0.2, 1.0, 2)
                f = np.stack([255 * xx / max(width - 1, 1) * a,
                              255 * yy / max(height - 1, 1) * b,
                              255 * (0.5 + 0.5 * np.sin((xx + yy) / max(height, width) * 2 * math.pi))],
                             axis=-1).clip(0, 255).astype(np.uint8)
            elif kind == "shapes":
                f = np.empty((height, width, 3), np.uint8)
                f[:] = rng.integers(0, 256, 3, dtype=np.uint8)
                for _ in range(4):
                    colour = rng.integers(0, 256, 3, dtype=np.uint8)
                    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
                    r = rng.uniform(0.1, 0.35) * min(height, width)
                    if rng.random() < 0.5:
                        f[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = colour
                    else:
                        f[(abs(yy - cy) < r) & (abs(xx - cx) < 1.5 * r)] = colour
            else:
                raise ValueError(f"unknown test frame kind {kind!r}")
            frames.append(f)
        out.append((kind, np.stack(frames)))
    return out


def normalise_frames(frames: np.ndarray, mean: Sequence[float], std: Sequence[float],
                     color_order: str) -> np.ndarray:
    """uint8 NHWC BGR -> float32 NCHW ``(x - mean) / std`` in ``color_order``: what the runtime does unfused."""
    x = frames.astype(np.float32)
    if color_order == "RGB":
        x = x[..., ::-1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# -- ONNX Runtime helpers ----------------------------------------------------------------------
def ort_session(model: onnx.ModelProto | str | Path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def expose_argmax_input(model: onnx.ModelProto) -> str:
    """Add the tensor feeding the final ArgMax as a graph output; return its name."""
    argmax = [n for n in model.graph.node if n.op_type == "ArgMax"]
    if not argmax:
        raise VerificationError("the fused graph has no ArgMax node to read logits from",
                                hint="export with --no-fuse to inspect the logits")
    name = argmax[-1].input[0]
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return name


def _fail(what: str, report: dict[str, Any], onnx_path: Path | None) -> None:
    where = f"{onnx_path.name}: " if onnx_path else ""
    raise VerificationError(f"{where}ONNX Runtime disagrees with PyTorch: {what}",
                            hint="try --exporter torchscript/dynamo or another --opset; report the model")


# -- semantic --------------------------------------------------------------------------------
def _compare_semantic(ref_logits: np.ndarray, onnx_logits: np.ndarray, onnx_mask: np.ndarray,
                      tol: Tolerance) -> dict[str, Any]:
    ref_logits = ref_logits.astype(np.float32)
    diff = float(np.max(np.abs(ref_logits - onnx_logits))) if ref_logits.size else 0.0
    scale = float(np.max(np.abs(ref_logits))) if ref_logits.size else 0.0
    limit = tol.atol + tol.rtol * scale
    ref_mask = ref_logits.argmax(axis=1)
    bad = ref_mask != onnx_mask.astype(np.int64)
    n_bad = int(bad.sum())
    ties = 0
    if n_bad:
        # Margin in PyTorch's logits between its class and ONNX's class at each disagreeing pixel.
        n, h, w = np.nonzero(bad)
        a = ref_logits[n, ref_mask[n, h, w], h, w]
        b = ref_logits[n, onnx_mask[n, h, w].astype(np.int64), h, w]
        ties = int(np.sum(np.abs(a - b) <= 2 * limit))
    return {"max_abs_diff": diff, "logit_scale": scale, "limit": limit,
            "mask_agreement_pct": 100.0 * (1.0 - n_bad / max(bad.size, 1)),
            "mismatches": n_bad, "tie_mismatches": ties}


def verify_semantic(onnx_path: str | Path, reference: Callable[[np.ndarray], np.ndarray],
                    frames: list[tuple[str, np.ndarray]], *, fused: bool, mean: Sequence[float],
                    std: Sequence[float], color_order: str, tol: Tolerance = Tolerance(),
                    method: str = "ONNX Runtime (CPU) vs PyTorch eager, logits and argmax mask") -> dict[str, Any]:
    """Semantic check. ``reference(frame)`` maps a uint8 BGR NHWC frame to reference logits NCHW."""
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path))
    input_name = model.graph.input[0].name
    if fused:
        logits_name = expose_argmax_input(model)
        out_names = [model.graph.output[0].name, logits_name]
    else:
        out_names = [model.graph.output[0].name]
    sess = ort_session(model)
    per_input = []
    for kind, frame in frames:
        x_np = frame if fused else normalise_frames(frame, mean, std, color_order)
        ref = np.asarray(reference(frame))
        outs = sess.run(out_names, {input_name: x_np})
        if fused:
            mask, logits = outs
            if mask.dtype != np.uint8:
                _fail(f"mask output is {mask.dtype}, expected uint8", {}, onnx_path)
        else:
            logits = outs[0]
            mask = logits.argmax(axis=1)
        if logits.shape != ref.shape:
            _fail(f"logits shape {logits.shape} != reference {ref.shape} on input {kind}", {}, onnx_path)
        r = _compare_semantic(ref, logits, mask, tol)
        per_input.append({"input": kind, "shape": list(frame.shape), **r})
    report = {
        "method": method,
        "inputs": [p["input"] for p in per_input],
        "max_abs_diff": max(p["max_abs_diff"] for p in per_input),
        "mask_agreement_pct": min(p["mask_agreement_pct"] for p in per_input),
        "tie_mismatches": sum(p["tie_mismatches"] for p in per_input),
        "tolerance": asdict(tol),
        "per_input": per_input,
    }
    for p in per_input:
        if p["max_abs_diff"] > p["limit"]:
            _fail(f"max abs logits diff {p['max_abs_diff']:.3g} > {p['limit']:.3g} on input {p['input']} "
                  f"(mask agreement {p['mask_agreement_pct']:.3f}%)", report, onnx_path)
        if p["mismatches"] - p["tie_mismatches"] > 0 or p["mask_agreement_pct"] < tol.min_mask_agreement_pct:
            _fail(f"mask agreement {p['mask_agreement_pct']:.3f}% on input {p['input']} "
                  f"({p['mismatches'] - p['tie_mismatches']} pixels differ beyond a logit tie)", report, onnx_path)
    report["passed"] = True
    return report


# -- instances --------------------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between xyxy boxes a [A,4] and b [B,4]."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def detections_from_outputs(outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """boxes, labels, scores, masks: the first ``num_detections`` rows when the outputs are padded."""
    arrays = [np.asarray(v) for v in outputs]
    if len(arrays) == 5:
        k = int(arrays[4].reshape(-1)[0])
        return [a[:k] for a in arrays[:4]]
    return arrays[:4]


def compare_instances(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], *,
                      iou_thresh: float = 0.9) -> dict[str, Any]:
    """Match ONNX detections to PyTorch ones (same label, best IoU, greedy in score order).

    Padded outputs (a fifth ``num_detections``) are cut to their detections first.
    """
    rb, rl, rs, rm = detections_from_outputs(ref)
    gb, gl, gs, gm = detections_from_outputs(got)
    out: dict[str, Any] = {"torch_detections": int(len(rb)), "onnx_detections": int(len(gb))}
    pairs: list[tuple[int, int]] = []
    if len(rb) and len(gb):
        iou = _iou(rb.astype(np.float64), gb.astype(np.float64))
        iou[rl[:, None] != gl[None, :]] = -1.0
        taken = np.zeros(len(gb), bool)
        for i in np.argsort(-rs, kind="stable"):
            cand = np.where(~taken & (iou[i] >= iou_thresh))[0]
            if len(cand):
                j = cand[np.argmax(iou[i, cand])]
                taken[j] = True
                pairs.append((int(i), int(j)))
    denom = max(len(rb), len(gb))
    out["matched"] = len(pairs)
    out["matched_pct"] = 100.0 * len(pairs) / denom if denom else 100.0
    if pairs:
        ri, gi = (np.array(v) for v in zip(*pairs))
        out["box_max_abs_diff_px"] = float(np.max(np.abs(rb[ri] - gb[gi])))
        out["score_max_abs_diff"] = float(np.max(np.abs(rs[ri] - gs[gi])))
        out["mask_prob_max_abs_diff"] = float(np.max(np.abs(rm[ri] - gm[gi])))
    else:
        out["box_max_abs_diff_px"] = out["score_max_abs_diff"] = out["mask_prob_max_abs_diff"] = 0.0
    return out


def verify_instances(onnx_path: str | Path, torch_module, frames: list[tuple[str, np.ndarray]], *,
                     fused: bool, tol: Tolerance = Tolerance(), label: str = "shipped") -> dict[str, Any]:
    """Mask R-CNN check; ``torch_module`` is a ``MaskRCNNExport``."""
    import torch

    onnx_path = Path(onnx_path)
    sess = ort_session(onnx_path)
    input_name = sess.get_inputs()[0].name
    per_input = []
    for kind, frame in frames:
        x = frame if fused else np.ascontiguousarray(frame[..., ::-1].transpose(0, 3, 1, 2)).astype(np.float32) / 255.0
        with torch.no_grad():
            ref = [t.numpy() for t in torch_module(torch.from_numpy(x))]
        got = sess.run(None, {input_name: x})
        per_input.append({"input": kind, "shape": list(frame.shape), **compare_instances(ref, got)})
    report = {
        "graph": label,
        "method": "ONNX Runtime (CPU) vs PyTorch eager; detections matched by label and IoU>=0.9",
        "inputs": [p["input"] for p in per_input],
        "detections": sum(p["torch_detections"] for p in per_input),
        "matched_pct": min(p["matched_pct"] for p in per_input),
        "box_max_abs_diff_px": max(p["box_max_abs_diff_px"] for p in per_input),
        "score_max_abs_diff": max(p["score_max_abs_diff"] for p in per_input),
        "mask_prob_max_abs_diff": max(p["mask_prob_max_abs_diff"] for p in per_input),
        "tolerance": asdict(tol),
        "per_input": per_input,
    }
    for p in per_input:
        if p["matched_pct"] < tol.min_matched_pct:
            _fail(f"{label} graph: only {p['matched']} of {p['torch_detections']} PyTorch / "
                  f"{p['onnx_detections']} ONNX detections match on input {p['input']}", report, onnx_path)
        if p["box_max_abs_diff_px"] > tol.box_atol_px or p["score_max_abs_diff"] > tol.score_atol \
                or p["mask_prob_max_abs_diff"] > tol.mask_prob_atol:
            _fail(f"{label} graph on input {p['input']}: box diff {p['box_max_abs_diff_px']:.3g} px, "
                  f"score diff {p['score_max_abs_diff']:.3g}, mask prob diff {p['mask_prob_max_abs_diff']:.3g}",
                  report, onnx_path)
    report["passed"] = True
    return report


def verify_onnx_against_torch(onnx_path: str | Path, torch_module, *, family: str, fused: bool,
                              height: int, width: int, batch: int = 1, mean: Sequence[float] = (0, 0, 0),
                              std: Sequence[float] = (1, 1, 1), color_order: str = "RGB",
                              frames: list[tuple[str, np.ndarray]] | None = None,
                              tol: Tolerance = Tolerance()) -> dict[str, Any]:
    """Run the ONNX with ONNX Runtime and PyTorch on the same frames; return the numbers.

    Raises :class:`VerificationError` when they differ beyond ``tol``.
    """
    if frames is None:
        kinds = ("shapes", "random") if family == "instances" else ("random", "gradient", "shapes")
        frames = sample_frames(height, width, batch=batch, kinds=kinds)
    if family == "instances":
        return verify_instances(onnx_path, torch_module, frames, fused=fused, tol=tol)
    return verify_semantic(onnx_path, torch_reference(torch_module, fused=fused, mean=mean, std=std,
                                                      color_order=color_order),
                           frames, fused=fused, mean=mean, std=std, color_order=color_order, tol=tol)


def torch_reference(torch_module, *, fused: bool, mean: Sequence[float], std: Sequence[float],
                    color_order: str) -> Callable[[np.ndarray], np.ndarray]:
    """frame -> PyTorch logits, for a ``FusedSegmentation`` (its own preprocessing) or a logits model."""
    import torch

    def run(frame: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            if fused:
                return torch_module.core(torch_module.normalise(torch.from_numpy(frame))).numpy()
            x = normalise_frames(frame, mean, std, color_order)
            return torch_module(torch.from_numpy(x)).numpy()
    return run
