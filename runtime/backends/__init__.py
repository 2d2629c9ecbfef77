"""Inference backends. ``open_backend`` picks one for a bundle."""
from __future__ import annotations

from segrt.runtime.backends.base import Backend, StageTimes, TensorSpec

__all__ = ["Backend", "StageTimes", "TensorSpec"]
