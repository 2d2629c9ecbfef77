"""Segmentation accuracy metrics and the accuracy gate.

Every number here comes from a confusion matrix accumulated over all evaluated pixels
(dataset-level IoU, as Cityscapes/VOC report it, not a mean of per-image IoUs):

* ``agreement``: the fraction of pixels whose class equals the reference's;
* ``per_class_iou``: TP / (TP + FP + FN) per class; None for a class that appears in
  neither the prediction nor the reference (it has no IoU, and it does not count);
* ``miou``: the mean of the defined per-class IoUs.

Reference pixels with a class id >= ``num_classes`` (e.g. 255, the usual "ignore" label)
are ignored. All values are fractions in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from segrt.calibration.evidence import MIN_CLASS_PIXELS, Evidence
from segrt.errors import AccuracyGateError, ConfigError

DEFAULT_GATES = {"fp16": 0.999, "int8": 0.99}


class ConfusionMatrix:
    """A (num_classes x num_classes) pixel count matrix: rows = reference, columns = prediction."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1 or num_classes > 65535:
            raise ValueError(f"num_classes must be 1..65535, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((num_classes, num_classes), np.int64)
        self.out_of_range = 0  # valid reference pixels predicted as an id >= num_classes
        self._fn_extra = np.zeros(num_classes, np.int64)  # those pixels, per reference class

    def update(self, pred: np.ndarray, ref: np.ndarray) -> None:
        pred = np.asarray(pred)
        ref = np.asarray(ref)
        if pred.shape != ref.shape:
            raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
        n = self.num_classes
        r = ref.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        valid = (r >= 0) & (r < n)
        if not valid.all():
            r, p = r[valid], p[valid]
        # A predicted id outside the classes is always wrong: it goes to a spare column that
        # counts in the total (and as a false negative of its reference class), never as a hit.
        p = np.where((p >= 0) & (p < n), p, n)
        counts = np.bincount(r * (n + 1) + p, minlength=n * (n + 1)).reshape(n, n + 1)
        self.matrix += counts[:, :n]
        self.out_of_range += int(counts[:, n].sum())
        self._fn_extra += counts[:, n]

    @property
    def total(self) -> int:
        return int(self.matrix.sum()) + self.out_of_range

    def metrics(self) -> dict:
        m = self.matrix
        total = self.total
        tp = np.diag(m).astype(np.float64)
        ref_count = (m.sum(axis=1) + self._fn_extra).astype(np.float64)
        pred_count = m.sum(axis=0).astype(np.float64)
        union = ref_count + pred_count - tp
        per_class = [float(tp[c] / union[c]) if union[c] > 0 else None for c in range(self.num_classes)]
        defined = [v for v in per_class if v is not None]
        return {
            "agreement": float(tp.sum() / total) if total else None,
            "miou": float(np.mean(defined)) if defined else None,
            "per_class_iou": per_class,
            "pixels": total,
        }


def segmentation_metrics(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> dict:
    """agreement, miou and per_class_iou of ``pred`` against ``ref`` (same-shape class-id arrays)."""
    cm = ConfusionMatrix(num_classes)
    cm.update(pred, ref)
    return cm.metrics()


def normalize_miou_gate(points: float | None) -> float | None:
    """``--gate-miou`` in mIoU points (1.0 = one point) -> a fraction (0.01); None passes through."""
    if points is None:
        return None
    try:
        g = float(points)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--gate-miou {points!r} is not a number", hint="e.g. --gate-miou 1.0 (points)") from exc
    if not np.isfinite(g) or g < 0 or g > 100:
        raise ConfigError(f"--gate-miou {points!r} is out of range", hint="give the largest mIoU drop in points, 0..100")
    return g / 100.0


def normalize_gate(gate: float | None, precision: str) -> float:
    """The agreement gate as a fraction. ``None`` -> the default for ``precision``; values in
    (0, 1] are fractions, values in (1, 100] percentages (``99.9`` == ``0.999``)."""
    if gate is None:
        if precision not in DEFAULT_GATES:
            raise ConfigError(f"no default accuracy gate for precision {precision!r}")
        return DEFAULT_GATES[precision]
    try:
        g = float(gate)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--gate {gate!r} is not a number", hint="e.g. --gate 99.5 (percent)") from exc
    if not np.isfinite(g) or g <= 0 or g > 100:
        raise ConfigError(f"--gate {gate!r} is out of range", hint="give a pixel agreement in percent, 0 < gate <= 100")
    return g / 100.0 if g > 1.0 else g


@dataclass
class PrecisionAccuracy:
    """One precision's numbers on the held-out frames."""

    precision: str
    vs_fp32: dict | None = None  # agreement / miou / per_class_iou against the FP32 masks
    vs_labels: dict | None = None  # the same against ground-truth labels, when the source has them
    ort_vs_fp32: dict | None = None  # the artifact as ONNX Runtime's CPU provider runs it

    @property
    def agreement(self) -> float | None:
        """The gated agreement: the lower of the FP16-faithful evaluation and ONNX Runtime's."""
        vals = [d["agreement"] for d in (self.vs_fp32, self.ort_vs_fp32) if d and d.get("agreement") is not None]
        return min(vals) if vals else None


@dataclass
class AccuracyReport:
    """FP32 and one lower precision compared on held-out frames, with the gate decision."""

    precision: str
    gate: float
    classes: Sequence[str]
    rows: list[PrecisionAccuracy]
    eval_info: Mapping = field(default_factory=dict)
    evidence: Evidence | None = None  # what the held-out frames hold (None: not assessed)
    allow_small_eval: bool = False  # pass on less evidence than the minimum (--allow-small-eval)
    gate_miou_drop: float | None = None  # max mIoU drop vs labels (fraction: 0.01 = 1 point); None: off

    @property
    def miou_drop(self) -> float | None:
        """FP32's mIoU against labels minus the lower precision's (None without labels)."""
        low, fp32 = self.row(self.precision), self.row("fp32")
        if not (low and fp32 and low.vs_labels and fp32.vs_labels):
            return None
        if low.vs_labels.get("miou") is None or fp32.vs_labels.get("miou") is None:
            return None
        return float(fp32.vs_labels["miou"]) - float(low.vs_labels["miou"])

    @property
    def miou_passed(self) -> bool:
        if self.gate_miou_drop is None:
            return True
        drop = self.miou_drop
        return drop is not None and drop <= self.gate_miou_drop + 1e-12

    def row(self, precision: str) -> PrecisionAccuracy | None:
        return next((r for r in self.rows if r.precision == precision), None)

    @property
    def agreement(self) -> float | None:
        r = self.row(self.precision)
        return r.agreement if r else None

    @property
    def agreement_passed(self) -> bool:
        a = self.agreement
        return a is not None and a >= self.gate

    @property
    def evidence_shortfalls(self) -> list[str]:
        """Why the held-out frames are too few for the gate; empty when enough (or accepted)."""
        if self.evidence is None or self.allow_small_eval:
            return []
        return self.evidence.shortfalls()

    @property
    def passed(self) -> bool:
        return self.agreement_passed and self.miou_passed and not self.evidence_shortfalls

    def to_manifest(self) -> dict:
        """The ``Artifact.accuracy`` record of the lower precision (plain JSON types)."""
        low = self.row(self.precision)
        fp32 = self.row("fp32")
        rec: dict = {
            "precision": self.precision,
            "agreement": self.agreement,
            "gate": self.gate,
            "passed": self.passed,
            "miou_vs_fp32": low.vs_fp32["miou"] if low and low.vs_fp32 else None,
            "per_class_iou_vs_fp32": _named(self.classes, low.vs_fp32) if low and low.vs_fp32 else None,
            "ort_agreement": low.ort_vs_fp32["agreement"] if low and low.ort_vs_fp32 else None,
            "miou_vs_labels": low.vs_labels["miou"] if low and low.vs_labels else None,
            "per_class_iou_vs_labels": _named(self.classes, low.vs_labels) if low and low.vs_labels else None,
            "fp32_miou_vs_labels": fp32.vs_labels["miou"] if fp32 and fp32.vs_labels else None,
            "eval": dict(self.eval_info),
            "evidence": self.evidence.to_dict() if self.evidence is not None else None,
            "allow_small_eval": self.allow_small_eval,
        }
        if rec["miou_vs_labels"] is not None and rec["fp32_miou_vs_labels"] is not None:
            rec["miou_drop_vs_labels"] = rec["fp32_miou_vs_labels"] - rec["miou_vs_labels"]
        if self.gate_miou_drop is not None:
            rec["gate_miou_drop"] = self.gate_miou_drop
        return rec

    def to_text(self) -> str:
        """The comparison table: one row per precision, then per-class IoU."""
        has_labels = any(r.vs_labels for r in self.rows)
        head = ["precision", "agree vs fp32", "mIoU vs fp32"] + (["mIoU vs labels"] if has_labels else [])
        rows = []
        for r in self.rows:
            line = [r.precision,
                    _pct(r.vs_fp32["agreement"]) if r.vs_fp32 else "(reference)",
                    _pct(r.vs_fp32["miou"]) if r.vs_fp32 else "-"]
            if r.ort_vs_fp32 and r.vs_fp32 and r.ort_vs_fp32["agreement"] != r.vs_fp32["agreement"]:
                line[1] += f" (ORT CPU {_pct(r.ort_vs_fp32['agreement'])})"
            if has_labels:
                line.append(_pct(r.vs_labels["miou"]) if r.vs_labels else "-")
            rows.append(line)
        out = _table(head, rows)
        # per-class IoU of the lower precision vs FP32 (and vs labels)
        low = self.row(self.precision)
        if low and low.vs_fp32:
            head2 = ["class", f"IoU {self.precision} vs fp32"]
            cols = [low.vs_fp32["per_class_iou"]]
            if has_labels:
                for r in self.rows:
                    if r.vs_labels:
                        head2.append(f"IoU {r.precision} vs labels")
                        cols.append(r.vs_labels["per_class_iou"])
            # classes absent from every reference and prediction have no IoU anywhere: no row
            rows2 = [[name] + [_pct(c[i]) for c in cols] for i, name in enumerate(self.classes)
                     if any(c[i] is not None for c in cols)]
            if self.evidence is not None:  # how many FP32 pixels each IoU rests on
                head2.append("fp32 pixels")
                px = dict(zip(self.evidence.classes, self.evidence.class_pixels))
                for r in rows2:
                    n = px.get(r[0], 0)
                    r.append(f"{n}" + (" (too few)" if n < MIN_CLASS_PIXELS else ""))
            out += "\n" + _table(head2, rows2)
        ev = self.evidence
        if ev is not None:
            out += (f"\nevidence: {ev.frames} distinct held-out frames, {ev.pixels} pixels, "
                    f"{len(ev.classes_with_evidence)} classes with >= {MIN_CLASS_PIXELS} FP32 pixels")
            if self.allow_small_eval and ev.shortfalls():
                out += " (below the minimum: " + "; ".join(ev.shortfalls()) + "; accepted by --allow-small-eval)"
            note = ev.meaningless_note()
            if note:
                out += f"\nnote: {note}"
        if self.gate_miou_drop is not None:
            out += f"\ngate: {self.miou_gate_text()} -> {'PASSED' if self.miou_passed else 'FAILED'}"
            if self.gate <= 0:
                if self.evidence_shortfalls:
                    out += "\ngate: too little evidence (" + "; ".join(self.evidence_shortfalls) + ") -> FAILED"
                return out
        verdict = "PASSED" if self.agreement_passed and not self.evidence_shortfalls else "FAILED"
        a = self.agreement
        out += (f"\ngate: {self.precision} pixel agreement with FP32 {_pct(a)} "
                f"{'>=' if self.agreement_passed else '<'} {_pct(self.gate)}")
        if self.evidence_shortfalls:
            out += " but too little evidence (" + "; ".join(self.evidence_shortfalls) + ")"
        return out + f" -> {verdict}"

    def miou_gate_text(self) -> str:
        drop = self.miou_drop
        said = "no labels to measure it" if drop is None else f"{100 * drop:.2f} points"
        sign = "<=" if self.miou_passed else ">"
        return (f"{self.precision} mIoU drop vs labels {said} {sign} {100 * (self.gate_miou_drop or 0):.2f} "
                "points")

    def check(self) -> None:
        """Raise AccuracyGateError when the gate fails."""
        if self.evidence_shortfalls:
            raise AccuracyGateError(evidence_message(self.evidence_shortfalls),
                                    hint="give more varied --eval frames, or accept it explicitly with "
                                         "--allow-small-eval")
        if not self.miou_passed:
            raise AccuracyGateError(self.miou_gate_text(), hint="try --method entropy or percentile, more/different "
                                    "--calib frames, or accept it explicitly with --no-gate")
        if not self.passed:
            raise AccuracyGateError(
                f"{self.precision} agrees with FP32 on {_pct(self.agreement)} of pixels, below the gate of "
                f"{_pct(self.gate)}",
                hint=("try a larger --max-fallback, your own --eval frames, or accept it explicitly with --no-gate"
                      if self.precision == "fp16" else
                      "try --method entropy or percentile, more/different --calib frames, a larger "
                      "--max-fallback, or accept it explicitly with --no-gate"),
            )


def evidence_message(shortfalls: Sequence[str]) -> str:
    return "too little evidence for an accuracy gate: " + "; ".join(shortfalls)


def _named(classes: Sequence[str], d: dict) -> dict:
    return {str(c): v for c, v in zip(classes, d["per_class_iou"])}


def _pct(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.3f}%" if v >= 0.99 else f"{100 * v:.2f}%"


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def refuse_to_replace(bundle_path, precision: str, target, registered: bool, report: object) -> None:
    """A result that failed its gate never replaces an artifact: raise when ``precision`` is
    registered or ``target`` exists (``--no-gate`` included). ``report`` rides on the error."""
    if not (registered or target.exists()):
        return
    err = AccuracyGateError(f"{precision} failed its gate and {target.name} already exists: a failing "
                            "result never replaces an artifact, so it was kept unchanged",
                            hint=f"to inspect the failing model, quantize a copy (cp -r {bundle_path} "
                                 f"{bundle_path}-try) with --no-gate")
    err.report = report  # type: ignore[attr-defined]
    raise err
