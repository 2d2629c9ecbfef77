"""``null://``: discards frames."""
from __future__ import annotations

import numpy as np

from segrt.runtime.sinks.base import Sink


class NullSink(Sink):
    """Discards frames (benchmarks, headless runs that only want the summary)."""

    def _write(self, image: np.ndarray, name: str | None) -> None:
        pass
