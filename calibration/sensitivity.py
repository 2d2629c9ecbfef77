"""Sensitivity fallback: keep the layers that hurt most out of low precision until the gate passes.

1. **Rank.** On a small subset of the held-out frames, build the model with each candidate
   layer (Conv/ConvTranspose/Gemm/MatMul) excluded on its own and measure the pixel
   agreement with FP32; a layer's sensitivity is the agreement it gains back.
   "All but one" measures each layer in the context of the others, which is how it will
   run (quantizing a single layer alone underestimates interactions).
2. **Exclude greedily.** Add layers in rank order, re-checking on the full evaluation set
   after each, until the gate passes or ``max_fallback`` layers are excluded. Layers that
   gained nothing on the subset are never excluded (they would only cost speed).

The builder and scorer are passed in, so the same loop serves INT8 (exclude from
quantization; the layer then runs in the remainder precision) and FP16 (keep in FP32).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from segrt.calibration.progress import progress_bar

log = logging.getLogger("segrt.calibration")


@dataclass
class FallbackResult:
    """What the fallback tried, excluded and achieved."""

    candidates: int
    ranking: list[tuple[str, float]]  # (layer, agreement gained on the subset when excluded)
    excluded: list[str] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)  # (layer added, full-set agreement)
    baseline: float | None = None  # full-set agreement before any exclusion
    subset_baseline: float | None = None
    final: float | None = None
    passed: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "candidates": self.candidates,
            "excluded": list(self.excluded),
            "agreement_before": self.baseline,
            "agreement_after": self.final,
            "passed": self.passed,
            "steps": [{"excluded": n, "agreement": a} for n, a in self.steps],
            "top_ranked": [{"layer": n, "subset_gain": g} for n, g in self.ranking[:10]],
            "subset_baseline": self.subset_baseline,
            "seconds": round(self.seconds, 1),
        }

    def to_text(self) -> str:
        if not self.excluded:
            return f"sensitivity fallback: no layer excluded ({self.candidates} ranked; none helped)"
        lines = [f"sensitivity fallback: excluded {len(self.excluded)} of {self.candidates} layers "
                 f"(agreement {_pct(self.baseline)} -> {_pct(self.final)}):"]
        gains = dict(self.ranking)
        for name, agree in self.steps:
            lines.append(f"  - {name}  (+{100 * gains.get(name, 0.0):.3f} pts on the subset; full set now {_pct(agree)})")
        return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.3f}%"


def sensitivity_fallback(candidates: Sequence[str], subset_score: Callable[[tuple[str, ...]], float],
                         full_score: Callable[[tuple[str, ...]], float], gate: float, *, max_fallback: int = 8,
                         baseline: float | None = None, progress: bool = True) -> FallbackResult:
    """Rank ``candidates`` with ``subset_score(excluded)`` and exclude the worst until
    ``full_score(excluded) >= gate`` or ``max_fallback`` layers are out.

    ``baseline`` is ``full_score(())`` when the caller already knows it.
    """
    t0 = time.perf_counter()
    result = FallbackResult(candidates=len(candidates), ranking=[])
    result.baseline = full_score(()) if baseline is None else baseline
    result.final = result.baseline
    if result.baseline >= gate:
        result.passed = True
        return result
    if max_fallback <= 0 or not candidates:
        result.seconds = time.perf_counter() - t0
        return result
    bar = progress_bar(len(candidates) + 1, "sensitivity (layers ranked)", progress)
    base = subset_score(())
    bar.update()
    result.subset_baseline = base
    gains = []
    for name in candidates:
        gains.append((name, subset_score((name,)) - base))
        bar.update()
    bar.close()
    gains.sort(key=lambda kv: kv[1], reverse=True)
    result.ranking = gains
    excluded: list[str] = []
    for name, gain in gains[:max_fallback]:
        if gain <= 0:
            break
        excluded.append(name)
        agree = full_score(tuple(excluded))
        result.steps.append((name, agree))
        log.info("fallback: excluded %s (subset +%.3f pts) -> agreement %.3f%%", name, 100 * gain, 100 * agree)
        result.final = agree
        if agree >= gate:
            result.passed = True
            break
    result.excluded = excluded
    result.seconds = time.perf_counter() - t0
    return result
