"""Timing statistics: the robust spread, when a timing loop may stop, and one stage's result."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from segrt.runtime.stats import LatencyStats, summarize

MIN_SAMPLES = 3
#: the interquartile range of a normal sample is 1.349 σ, so the robust CV reads like a CV
IQR_TO_SIGMA = 1.349


def robust_cv(samples: Sequence[float] | np.ndarray) -> float:
    """``(p75 - p25) / (1.349 × median)``; 0 for fewer than 2 samples or a zero median.

    For a normal sample this equals σ/μ. Unlike the plain CV, an isolated hiccup
    (under a quarter of the samples) does not move it, and unlike a MAD-based one it
    does not read an alternating fast/slow (bimodal) series as stable.
    """
    a = np.asarray(samples, dtype=np.float64)
    if a.size < 2:
        return 0.0
    q25, med, q75 = np.percentile(a, [25, 50, 75])
    if med <= 0:
        return 0.0
    return float(q75 - q25) / (IQR_TO_SIGMA * float(med))


def stop_reason(samples: Sequence[float], elapsed_s: float, *, iters: int, max_time_s: float,
                cv_target: float, window: int) -> str | None:
    """Why a timing loop should stop now, or None to keep going.

    ``"time"`` once ``max_time_s`` has passed (after at least :data:`MIN_SAMPLES`);
    ``"stable"`` once at least ``iters`` samples were taken and the robust CV of the
    last ``window`` of them is at most ``cv_target``.
    """
    n = len(samples)
    if n < MIN_SAMPLES:
        return None
    if n >= iters and robust_cv(samples[-window:]) <= cv_target:
        return "stable"
    if elapsed_s >= max_time_s:
        return "time"
    return None


@dataclass(frozen=True)
class StageResult:
    """The latency sample of one stage: percentiles, robust spread, and why the loop stopped."""

    stats: LatencyStats
    spread: float
    stop: str  # "stable", "time", or "derived" (timed inside another stage's loop)

    def to_dict(self) -> dict[str, Any]:
        d = self.stats.to_dict()
        d.update(spread=self.spread, stop=self.stop)
        return d

    @classmethod
    def from_samples(cls, samples: Sequence[float], stop: str) -> "StageResult":
        return cls(summarize(samples), robust_cv(samples), stop)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StageResult":
        fields = {f.name for f in dataclasses.fields(LatencyStats)}
        return cls(LatencyStats(**{k: d[k] for k in fields}), float(d.get("spread", 0.0)),
                   str(d.get("stop", "")))
