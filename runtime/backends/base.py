"""The one interface every inference backend implements.

Life cycle (as Polygraphy's runners): construct cheaply, ``open()`` allocates
(session, engine, buffers), ``infer()`` runs, ``close()`` frees. Backends are
context managers. A backend is used from one thread at a time; the pipeline
gives the inference stage its own backend.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from segrt.errors import BackendError
from segrt.runtime.lifecycle import Resource


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``-1`` for a dynamic axis) and numpy dtype of one graph I/O tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class StageTimes:
    """Milliseconds spent in the last ``infer()``: host→device, compute, device→host.

    CPU backends report everything as compute (their h2d/d2h are 0), so the
    benchmark's columns line up with trtexec's H2D / GPU compute / D2H.
    """

    h2d_ms: float = 0.0
    compute_ms: float = 0.0
    d2h_ms: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return self.h2d_ms + self.compute_ms + self.d2h_ms


class Backend(Resource):
    """Run one ONNX model or engine on numpy arrays."""

    #: short name used by the CLI and in reports ("onnxruntime", "tensorrt")
    name: str = "abstract"

    def __init__(self) -> None:
        self._opened = False
        self.last_times = StageTimes()
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    # -- inference -----------------------------------------------------------------
    def infer(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run once. A bare array feeds the single input. Outputs may be reused
        buffers owned by the backend: copy them if you keep them past the next call."""
        if not self._opened:
            raise BackendError(f"{self.name} backend used before open()",
                               hint="use it as a context manager or call open()")
        if isinstance(inputs, np.ndarray):
            specs = self.input_specs
            if len(specs) != 1:
                raise BackendError(f"model has {len(specs)} inputs; pass a dict of name -> array")
            inputs = {specs[0].name: inputs}
        return self._infer(inputs)

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The graph's inputs; ``_open`` fills ``self._inputs``."""
        return self._inputs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """The graph's outputs; ``_open`` fills ``self._outputs``."""
        return self._outputs

    @abc.abstractmethod
    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def describe(self) -> dict[str, object]:
        """Settings worth recording beside a benchmark figure (providers, threads, device)."""
        return {"backend": self.name}
