"""Latency statistics shared by the pipeline summary and the benchmark."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Summary of a latency sample in milliseconds (percentiles by linear interpolation)."""

    count: int
    min: float
    mean: float
    std: float
    p50: float
    p90: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean): the run's relative spread."""
        return self.std / self.mean if self.mean > 0 else 0.0


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Percentiles of a sample; an empty sample gives zeros with count 0."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return LatencyStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return LatencyStats(
        count=int(a.size), min=float(a.min()), mean=float(a.mean()), std=float(a.std(ddof=0)),
        p50=float(p50), p90=float(p90), p99=float(p99), max=float(a.max()),
    )
