"""How far a lower-precision instance graph's detections drift from FP32's, on the same frames.

Per frame, each FP32 detection (highest score first) takes the unmatched candidate of the same
label with the highest box IoU, if that IoU is at least ``iou`` (0.5). Reported: the match
rate (matched pairs over the larger of the two detection counts, so both missed and extra
detections count against it), the score drift of matched pairs, and the IoU of their pasted
masks (each 28x28 probability resized into its own box at model resolution and thresholded,
as the runtime draws it). A gate is met when the match rate, the largest score drift and the
mean mask IoU are all within :class:`DetectionGate`'s thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from segrt.runtime.instances import INSTANCE_OUTPUTS, paste_mask


@dataclass(frozen=True)
class DetectionGate:
    min_match_rate: float = 0.95
    max_score_drift: float = 0.05
    min_mask_iou: float = 0.90


@dataclass(frozen=True)
class DetectionAgreement:
    frames: int
    reference_detections: int
    candidate_detections: int
    matched: int
    match_rate: float
    score_drift_max: float
    score_drift_mean: float
    mask_iou_mean: float
    mask_iou_min: float

    def passes(self, gate: DetectionGate = DetectionGate()) -> bool:
        return (self.match_rate >= gate.min_match_rate and self.score_drift_max <= gate.max_score_drift
                and self.mask_iou_mean >= gate.min_mask_iou)


def _detections(outputs: Mapping[str, np.ndarray], names: Sequence[str]) -> tuple[np.ndarray, ...]:
    boxes, labels, scores, masks = (np.asarray(outputs[n]) for n in names[:4])
    k = len(scores)
    if len(names) > 4 and names[4] in outputs:
        k = int(np.asarray(outputs[names[4]]).reshape(-1)[0])
    return boxes[:k].astype(np.float64), labels[:k], scores[:k].astype(np.float64), masks[:k]


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _full_mask(prob: np.ndarray, box: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    w, h = frame_size
    out = np.zeros((h, w), bool)
    pasted = paste_mask(prob, box, frame_size)
    if pasted is not None:
        (x, y), m = pasted
        out[y:y + m.shape[0], x:x + m.shape[1]] = m.astype(bool)
    return out


def detection_agreement(reference: Sequence[Mapping[str, np.ndarray]], candidate: Sequence[Mapping[str, np.ndarray]],
                        frame_size: tuple[int, int], *, iou: float = 0.5,
                        names: Sequence[str] = INSTANCE_OUTPUTS) -> DetectionAgreement:
    """Agreement of ``candidate`` detections with ``reference`` ones, frame by frame (``frame_size`` = (w, h))."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference frames but {len(candidate)} candidate frames")
    n_ref = n_got = 0
    denom = 0
    drifts: list[float] = []
    mask_ious: list[float] = []
    for ref_out, got_out in zip(reference, candidate):
        rb, rl, rs, rm = _detections(ref_out, names)
        gb, gl, gs, gm = _detections(got_out, names)
        n_ref, n_got = n_ref + len(rb), n_got + len(gb)
        denom += max(len(rb), len(gb))
        if not len(rb) or not len(gb):
            continue
        overlap = _box_iou(rb, gb)
        overlap[rl[:, None] != gl[None, :]] = -1.0
        taken = np.zeros(len(gb), bool)
        for i in np.argsort(-rs, kind="stable"):
            cand = np.flatnonzero(~taken & (overlap[i] >= iou))
            if not len(cand):
                continue
            j = cand[np.argmax(overlap[i, cand])]
            taken[j] = True
            drifts.append(abs(rs[i] - gs[j]))
            a, b = _full_mask(rm[i], rb[i], frame_size), _full_mask(gm[j], gb[j], frame_size)
            union = np.count_nonzero(a | b)
            mask_ious.append(np.count_nonzero(a & b) / union if union else 1.0)
    matched = len(drifts)
    return DetectionAgreement(
        frames=len(reference), reference_detections=n_ref, candidate_detections=n_got, matched=matched,
        match_rate=matched / denom if denom else 1.0,
        score_drift_max=float(max(drifts, default=0.0)), score_drift_mean=float(np.mean(drifts)) if drifts else 0.0,
        mask_iou_mean=float(np.mean(mask_ious)) if mask_ious else 1.0,
        mask_iou_min=float(min(mask_ious, default=1.0)))
