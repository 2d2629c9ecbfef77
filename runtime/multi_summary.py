"""What a several-source run reports: each stream's state and timings, one RunSummary per stream, the totals."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segrt.runtime.preprocess import Preprocessor
from segrt.runtime.render import Renderer
from segrt.runtime.run_summary import STAGES, Ema, RunSummary, StageWindow, live_stats_from_ema
from segrt.runtime.sinks import Sink
from segrt.runtime.sources import Source


@dataclass
class StreamState:
    """One source with its own preprocessing, rendering, sink and timing windows."""

    source: Source
    pre: Preprocessor
    renderer: Renderer
    masks: list[np.ndarray]
    sink: Sink | None = None
    rendered: np.ndarray | None = None
    error: str = ""
    frames: int = 0
    last_done: float | None = None
    times: dict[str, StageWindow] = field(default_factory=lambda: {s: StageWindow() for s in STAGES})
    ema: dict[str, Ema] = field(default_factory=lambda: {k: Ema() for k in ("interval", "e2e", "infer", "pre", "post")})

    def record(self, timings: dict[str, float], t_done: float) -> None:
        """Add one written frame's stage timings (ms); ``t_done`` is when its sink write ended."""
        for k in STAGES:
            self.times[k].add(timings[k])
        self.frames += 1
        if self.last_done is not None:
            self.ema["interval"].add(t_done - self.last_done)
        self.last_done = t_done
        for k in ("e2e", "infer", "pre", "post"):
            self.ema[k].add(timings[k])

    def live_stats(self) -> dict:
        return live_stats_from_ema(self.ema, self.frames)


@dataclass(frozen=True)
class MultiRunSummary:
    """Per-stream FPS, drops, latency and reconnects; total throughput and the batches formed."""

    streams: tuple[RunSummary, ...]
    fps: float  # all streams' frames per second of wall time
    wall_s: float
    batches: int
    mean_batch: float
    max_batch: int  # the largest batch the backend takes (1: frames inferred one by one)
    backend: dict[str, Any]
    errors: tuple[str, ...] = ()  # one line per stream that failed ("" where none)
    interrupted: bool = False

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams)

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "fps": self.fps, "wall_s": self.wall_s, "batches": self.batches,
                "mean_batch": self.mean_batch, "max_batch": self.max_batch, "backend": dict(self.backend),
                "interrupted": self.interrupted, "errors": list(self.errors),
                "streams": [s.to_dict() for s in self.streams]}

    def table(self) -> str:
        """One row per stream (fps, drops, reconnects, e2e and infer p50/p99 in ms), then the totals."""
        rows = ["backend  " + " ".join(f"{k}={v}" for k, v in self.backend.items()), "",
                f"{'#':>2} {'frames':>7} {'fps':>7} {'dropped':>8} {'reconn':>6} {'e2e p50':>8} {'e2e p99':>8} "
                f"{'infer p50':>9}  source -> sink"]
        for i, s in enumerate(self.streams):
            e2e, inf = s.stages.get("e2e"), s.stages.get("infer")
            rows.append(f"{i:>2} {s.frames:>7} {s.fps:>7.2f} {s.dropped:>8} {s.reconnects:>6} "
                        f"{e2e.p50 if e2e else 0:>8.2f} {e2e.p99 if e2e else 0:>8.2f} {inf.p50 if inf else 0:>9.2f}"
                        f"  {s.source} -> {s.sink}")
            if i < len(self.errors) and self.errors[i]:
                rows.append(f"   failed: {self.errors[i]}")
        how = f"batches of up to {self.max_batch}" if self.max_batch > 1 else "one frame at a time (no batch axis)"
        rows += ["", f"total frames {self.frames}  fps {self.fps:.2f}  wall {self.wall_s:.2f} s  {self.batches} "
                     f"inferences, mean batch {self.mean_batch:.2f} ({how})"
                 + ("  (interrupted; outputs finalised)" if self.interrupted else "")]
        return "\n".join(rows)
