"""What one ``segrt bench`` run produces: rows per cell, its settings, and their JSON form."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping


from segrt.errors import ConfigError
from segrt.runtime.manifest import plain_json
from segrt.runtime.stats import LatencyStats
from segrt.tools.bench.stats import MIN_SAMPLES, StageResult

#: the stages of one frame, in order; ``infer`` is the host wall time of h2d + compute + d2h
STAGES = ("pre", "h2d", "compute", "d2h", "post")
ALL_STAGES = ("infer",) + STAGES
JSON_SCHEMA = "segrt.bench/1"  # bump when a field changes meaning; --compare checks it
FRAME_SIZE = (1080, 1920)  # (H, W) of the fixed synthetic camera frame


@dataclass(frozen=True)
class E2EResult:
    """One run of the real pipeline: frames, throughput and its per-stage latencies."""

    source: str
    frames: int
    fps: float
    wall_s: float
    stages: Mapping[str, LatencyStats]
    spread: float = 0.0  # robust CV of the intervals between completed frames: the FPS noise

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "frames": self.frames, "fps": self.fps, "wall_s": self.wall_s,
                "spread": self.spread, "stages": {k: v.to_dict() for k, v in self.stages.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "E2EResult":
        return cls(str(d["source"]), int(d["frames"]), float(d["fps"]), float(d["wall_s"]),
                   {k: LatencyStats(**v) for k, v in (d.get("stages") or {}).items()},
                   float(d.get("spread", 0.0)))


@dataclass(frozen=True)
class BenchRow:
    """One (bundle, precision, backend) cell; ``status`` is ``ok``, ``skipped`` or ``failed``.

    ``label`` names the bundle uniquely within a run (derived from its path: two bundles of
    one model stay two rows); ``model`` is the manifest's model name.
    """

    model: str
    bundle: str
    precision: str
    backend: str
    status: str
    reason: str = ""
    note: str = ""
    input_shape: tuple[int, ...] | None = None
    output_kind: str = ""
    stages: Mapping[str, StageResult] = field(default_factory=dict)
    throughput_fps: float | None = None
    e2e: E2EResult | None = None
    accuracy: Mapping[str, Any] | None = None
    backend_info: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def name(self) -> str:
        """The row's bundle label (the model name for rows written before labels existed)."""
        return self.label or self.model

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.precision, self.backend)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "label": self.name, "bundle": self.bundle, "precision": self.precision,
            "backend": self.backend, "status": self.status, "reason": self.reason, "note": self.note,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "output_kind": self.output_kind,
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "throughput_fps": self.throughput_fps,
            "e2e": self.e2e.to_dict() if self.e2e else None,
            "accuracy": plain_json(self.accuracy, nonfinite_as_none=True) if self.accuracy is not None else None,
            "backend_info": plain_json(self.backend_info, nonfinite_as_none=True),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchRow":
        return cls(
            model=str(d["model"]), bundle=str(d.get("bundle", "")), precision=str(d["precision"]),
            backend=str(d["backend"]), status=str(d["status"]), reason=str(d.get("reason", "")),
            note=str(d.get("note", "")),
            input_shape=tuple(d["input_shape"]) if d.get("input_shape") else None,
            output_kind=str(d.get("output_kind", "")),
            stages={k: StageResult.from_dict(v) for k, v in (d.get("stages") or {}).items()},
            throughput_fps=d.get("throughput_fps"),
            e2e=E2EResult.from_dict(d["e2e"]) if d.get("e2e") else None,
            accuracy=d.get("accuracy"), backend_info=d.get("backend_info") or {}, label=str(d.get("label", "")),
        )


@dataclass(frozen=True)
class BenchSettings:
    """How to measure. ``iters`` is a minimum; loops stop when stable or at ``max_time_s``."""

    iters: int = 50
    warmup: int = 5
    max_time_s: float = 10.0
    cv_target: float = 0.05
    window: int = 20
    threads: int | None = None
    size: tuple[int, int] | None = None
    e2e: bool = True
    e2e_frames: int = 60
    frame_size: tuple[int, int] = FRAME_SIZE

    def __post_init__(self) -> None:
        if self.iters < 1:
            raise ConfigError(f"--iters must be >= 1, got {self.iters}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if not self.max_time_s > 0:
            raise ConfigError(f"--max-time must be > 0 seconds, got {self.max_time_s}")
        if not 0 < self.cv_target < 1:
            raise ConfigError(f"--cv-target must be between 0 and 1, got {self.cv_target}")
        if self.window < 2:
            raise ConfigError(f"window must be >= 2, got {self.window}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.e2e_frames < 1:
            raise ConfigError(f"--e2e-frames must be >= 1, got {self.e2e_frames}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["size"] = list(self.size) if self.size else None
        d["frame_size"] = list(self.frame_size)
        d["min_samples"] = MIN_SAMPLES
        d["spread"] = "robust CV = (p75-p25)/(1.349*median)"
        return d


@dataclass(frozen=True)
class BenchResult:
    """All rows of one ``segrt bench`` run, the settings and the machine they ran on."""

    rows: tuple[BenchRow, ...]
    environment: Mapping[str, Any]
    settings: Mapping[str, Any]
    wall_s: float = 0.0

    @property
    def measured(self) -> tuple[BenchRow, ...]:
        """The cells that were measured (status ok)."""
        return tuple(r for r in self.rows if r.ok)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": JSON_SCHEMA, "wall_s": self.wall_s,
                "settings": plain_json(self.settings, nonfinite_as_none=True),
                "environment": plain_json(self.environment, nonfinite_as_none=True),
                "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchResult":
        return cls(tuple(BenchRow.from_dict(r) for r in d.get("rows", ())), d.get("environment") or {},
                   d.get("settings") or {}, float(d.get("wall_s", 0.0)))
