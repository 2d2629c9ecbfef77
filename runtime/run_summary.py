"""What a pipeline run reports: each frame's result, per-stage timing windows, the run summary, the on-frame text."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segrt.runtime.instances import Instance
from segrt.runtime.preprocess import Letterbox
from segrt.runtime.stats import LatencyStats, summarize

STAGES = ("capture", "pre", "infer", "post", "sink", "e2e")
HISTORY = 1 << 16  # timing samples kept per stage (a sliding window: flat memory on long runs)
# What "e2e" means depends on the source; the summary and the on-frame text say which.
E2E_LIVE_NOTE = "e2e = capture -> written; live source: inference takes the newest frame, so this is the latency"
E2E_FILE_NOTE = ("e2e includes time queued behind the model: a file source is read ahead, so it is not the "
                 "model's latency (pre+infer+post+sink is; a live source shows a camera's)")


@dataclass
class FrameResult:
    """One processed frame. Arrays are owned by the pipeline and valid until the next
    iteration step: copy what you keep (``np.copy(result.rendered)``)."""

    index: int
    frame: np.ndarray
    mask: np.ndarray | None  # model-resolution class ids (semantic models)
    instances: list[Instance] | None  # instance models
    rendered: np.ndarray
    label: np.ndarray | None
    letterbox: Letterbox
    timings: dict[str, float]  # ms per stage and "e2e"
    stats_text: str | None = None  # the FPS/latency text drawn on this frame (None with overlay_stats=False)


@dataclass(frozen=True)
class RunSummary:
    """What a run did: throughput, per-stage latency percentiles, and what was lost."""

    frames: int
    fps: float
    wall_s: float
    dropped: int
    corrupt: int
    stages: dict[str, LatencyStats]
    backend: dict[str, Any]
    source: str = ""
    sink: str = ""
    interrupted: bool = False
    reconnects: int = 0
    damage: str = ""  # what the corrupt count covers and what it cannot (the source's damage_note)
    live: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "fps": self.fps, "wall_s": self.wall_s, "dropped": self.dropped,
            "corrupt": self.corrupt, "damage": self.damage, "interrupted": self.interrupted,
            "reconnects": self.reconnects, "live": self.live, "source": self.source, "sink": self.sink, "backend": dict(self.backend),
            "stages": {k: v.to_dict() for k, v in self.stages.items()}, **self.extra,
        }

    def table(self) -> str:
        """A plain-text table: one row per stage with p50/p90/p99/mean/max in ms, then totals."""
        be = self.backend
        head = [f"source   {self.source}", f"sink     {self.sink}",
                "backend  " + " ".join(f"{k}={v}" for k, v in be.items())]
        rows = [f"{'stage':<8} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8} {'max':>8}   (ms)"]
        for name in STAGES:
            s = self.stages.get(name)
            if s is None or s.count == 0:
                continue
            label = name if name != "e2e" or self.live else "e2e*"
            rows.append(f"{label:<8} {s.p50:8.2f} {s.p90:8.2f} {s.p99:8.2f} {s.mean:8.2f} {s.max:8.2f}")
        e2e = self.stages.get("e2e")
        if e2e is not None and e2e.count:
            rows.append(E2E_LIVE_NOTE if self.live else "* " + E2E_FILE_NOTE)
        tail = (f"frames {self.frames}  fps {self.fps:.2f}  wall {self.wall_s:.2f} s  dropped {self.dropped}"
                f"  corrupt {self.corrupt}" + (f"  reconnects {self.reconnects}" if self.reconnects else "")
                + ("  (interrupted; output finalised)" if self.interrupted else ""))
        return "\n".join(head + [""] + rows + ["", tail] + ([f"damage   {self.damage}"] if self.damage else []))


class StageWindow:
    """The last HISTORY samples of one stage, preallocated."""

    def __init__(self) -> None:
        self.buf = np.zeros(HISTORY, np.float64)
        self.n = 0

    def add(self, v: float) -> None:
        self.buf[self.n % HISTORY] = v
        self.n += 1

    def stats(self) -> LatencyStats:
        return summarize(self.buf[: min(self.n, HISTORY)])


class Ema:
    """An exponential moving average (None until the first sample)."""

    def __init__(self, k: float = 0.1) -> None:
        self.k, self.v = k, None

    def add(self, x: float) -> float:
        self.v = x if self.v is None else self.v + self.k * (x - self.v)
        return self.v


def live_stats_from_ema(ema: dict[str, Ema], frames: int) -> dict:
    """Frames done, FPS and per-stage running averages (ms): the http sink's ``/stats`` JSON."""
    interval = ema["interval"].v
    return {"frames": frames, "fps": 1.0 / interval if interval else 0.0,
            "stages_ms": {k: ema[k].v for k in ("pre", "infer", "post", "e2e")}}


def stats_text(label: str, ema: dict[str, Ema], live: bool, timings: dict[str, float]) -> str:
    """The on-frame text: FPS, latency and stage times from the running averages.

    Before any frame has finished (the first frame, or a single image) the averages are empty:
    the text then shows this frame's own pre and infer times, which are known when it is drawn.
    A file source's end-to-end time is labelled as queued (it waits behind the model).
    """
    if ema["e2e"].v is None:
        return f"{label}\npre {timings['pre']:.1f}  infer {timings['infer']:.1f} ms"
    fps = 1.0 / ema["interval"].v if ema["interval"].v else 0.0
    e2e_label = "latency" if live else "queued "
    return (f"{label}  {fps:5.1f} FPS\n"
            f"{e2e_label} {ema['e2e'].v:6.1f} ms\n"
            f"pre {ema['pre'].v:.1f}  infer {ema['infer'].v:.1f}  post {ema['post'].v:.1f} ms")
