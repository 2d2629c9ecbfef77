"""Latency per model × precision × backend × stage: the measurement behind ``segrt bench``.

Method (what makes the numbers comparable over time and with trtexec):

* Fixed inputs. One deterministic 1080p BGR frame is preprocessed once; the compute
  loop feeds that same tensor every iteration. The pre- and postprocess loops run on
  the same 1080p frame and on one stored inference output.
* Warm-up first, then timed iterations. ``Backend.infer`` returns host arrays, so the
  device is synchronised before every stop of the clock. The ``infer`` stage is the
  host wall time of one call (trtexec's "Latency"); ``h2d``/``compute``/``d2h`` are
  what the backend reports (CUDA events on TensorRT; ONNX Runtime reports compute only).
* Until stable or until a time bound. Each loop runs at least ``iters`` iterations and
  stops as soon as the robust spread of the last ``window`` samples is below
  ``cv_target``; if it never settles it stops at ``max_time_s``. At least
  :data:`MIN_SAMPLES` are always taken, so a 5 s Mask R-CNN call still gets a spread.
* Spread is the robust coefficient of variation ``IQR / (1.349 × median)`` (a normal
  sample's CV, insensitive to the odd scheduler hiccup on a shared machine). It is
  the noise estimate the regression check in :mod:`segrt.tools.report` uses.
* End-to-end FPS runs the real threaded pipeline (capture, pre + infer, post + sink
  threads) on 1080p frames of the ``synthetic://`` scene, pre-rendered and replayed the
  way a camera hands over finished buffers, so the table shows whether the app keeps
  up with the engine (rendering the scene live would measure the scene generator).

Combinations the machine cannot run are kept as rows with status ``skipped`` and
the reason (no TensorRT here, a precision the bundle lacks, a size outside the
exported range), so a table never silently drops a requested cell.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from segrt.errors import BackendUnavailableError, BundleError, ConfigError, EngineError, SegrtError
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import PRECISIONS, Manifest
from segrt.runtime.stats import LatencyStats, summarize

log = logging.getLogger("segrt.bench")

BENCH_BACKENDS = ("onnxruntime", "tensorrt")
#: the stages of one frame, in order; ``infer`` is the host wall time of h2d + compute + d2h
STAGES = ("pre", "h2d", "compute", "d2h", "post")
ALL_STAGES = ("infer",) + STAGES
MIN_SAMPLES = 3
JSON_SCHEMA = "segrt.bench/1"  # bump when a field changes meaning; --compare checks it
MIN_E2E_FRAMES = 5
SCENE_FRAMES = 8  # distinct pre-rendered frames the end-to-end run cycles through
FRAME_SIZE = (1080, 1920)  # (H, W) of the fixed synthetic camera frame
SCENE_URI = "synthetic://?size={w}x{h}&frames={n}&seed={seed}"
#: the interquartile range of a normal sample is 1.349 σ, so the robust CV reads like a CV
IQR_TO_SIGMA = 1.349


# --------------------------------------------------------------------------------------------
# statistics helpers
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------
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
    """One (model, precision, backend) cell; ``status`` is ``ok``, ``skipped`` or ``failed``."""

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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.precision, self.backend)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "bundle": self.bundle, "precision": self.precision,
            "backend": self.backend, "status": self.status, "reason": self.reason, "note": self.note,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "output_kind": self.output_kind,
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "throughput_fps": self.throughput_fps,
            "e2e": self.e2e.to_dict() if self.e2e else None,
            "accuracy": _jsonable(self.accuracy) if self.accuracy is not None else None,
            "backend_info": _jsonable(self.backend_info),
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
            accuracy=d.get("accuracy"), backend_info=d.get("backend_info") or {},
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

    def to_dict(self) -> dict[str, Any]:
        return {"schema": JSON_SCHEMA, "wall_s": self.wall_s, "settings": _jsonable(self.settings),
                "environment": _jsonable(self.environment), "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchResult":
        return cls(tuple(BenchRow.from_dict(r) for r in d.get("rows", ())), d.get("environment") or {},
                   d.get("settings") or {}, float(d.get("wall_s", 0.0)))


def _jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy scalars, tuples and Mappings (manifest accuracy reports hold all three)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------
class Progress:
    """A progress bar over timed iterations: tqdm when installed, else a line every few seconds."""

    def __init__(self, enabled: bool, stream=None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._bar = None
        self._label = ""
        self._n = 0
        self._last = 0.0

    def start(self, label: str, total_s: float) -> None:
        if not self.enabled:
            return
        self._label, self._n, self._last = label, 0, time.perf_counter()
        try:
            from tqdm import tqdm
        except ImportError:
            print(f"  {label} ...", file=self.stream, flush=True)
            return
        self._bar = tqdm(desc=f"  {label}", unit="it", leave=False, file=self.stream,
                         bar_format="{desc}: {n_fmt} it [{elapsed}<~{postfix}] {rate_fmt}",
                         postfix=f"{total_s:.0f}s max", mininterval=0.5)

    def update(self) -> None:
        if not self.enabled:
            return
        self._n += 1
        if self._bar is not None:
            self._bar.update(1)
        elif time.perf_counter() - self._last > 3.0:
            self._last = time.perf_counter()
            print(f"  {self._label}: {self._n} iterations", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)


# --------------------------------------------------------------------------------------------
# the timing loop
# --------------------------------------------------------------------------------------------
def time_loop(fn: Callable[[], Sequence[float]], settings: BenchSettings, *, label: str = "",
              progress: Progress | None = None, series: int = 1) -> tuple[list[list[float]], str]:
    """Warm up, then call ``fn`` until :func:`stop_reason` says stop.

    ``fn`` runs one iteration and returns ``series`` millisecond figures (the first
    one decides when the loop is stable). Warm-up runs ``settings.warmup`` untimed
    calls (at least one: the first call allocates), bounded by ``max_time_s`` as well.
    The garbage collector is paused while timing, as :mod:`timeit` does, so a
    collection triggered by unrelated objects does not land in one sample.
    """
    progress = progress or Progress(False)
    t0 = time.perf_counter()
    for _ in range(max(1, settings.warmup)):
        fn()
        if time.perf_counter() - t0 >= settings.max_time_s:
            break
    samples: list[list[float]] = [[] for _ in range(series)]
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    progress.start(label, settings.max_time_s)
    try:
        t0 = time.perf_counter()
        while True:
            values = fn()
            for s, v in zip(samples, values):
                s.append(float(v))
            progress.update()
            reason = stop_reason(samples[0], time.perf_counter() - t0, iters=settings.iters,
                                 max_time_s=settings.max_time_s, cv_target=settings.cv_target,
                                 window=settings.window)
            if reason:
                return samples, reason
    finally:
        progress.close()
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------
# fixed inputs
# --------------------------------------------------------------------------------------------
def synthetic_frames(count: int, height: int = FRAME_SIZE[0], width: int = FRAME_SIZE[1],
                     seed: int = 7) -> list[np.ndarray]:
    """The first ``count`` frames of the project's ``synthetic://`` scene (deterministic BGR images)."""
    from segrt.runtime.sources import open_source

    uri = SCENE_URI.format(w=width, h=height, n=count, seed=seed)
    with open_source(uri) as src:
        frames = [np.ascontiguousarray(f.image) for f in src]
    if len(frames) != count:
        raise SegrtError(f"synthetic source {uri} gave {len(frames)} of {count} frames")
    return frames


def replay_source(frames: Sequence[np.ndarray], count: int, uri: str):
    """A file-like :class:`~segrt.runtime.sources.Source` playing ``count`` frames cycled from ``frames``.

    Rendering the synthetic scene costs ~20-35 ms per 1080p frame on a 2-core CPU: run
    live, the generator, not the app, would set the end-to-end FPS, and it would steal a
    core from the pipeline. A camera delivers a finished buffer; so does this source:
    each read copies a pre-rendered frame into a fresh array (sources never recycle a
    frame buffer), costing what a capture hand-off costs.
    """
    from segrt.runtime.sources import Frame, Source

    class ReplaySource(Source):
        def _open(self) -> None:
            h, w = frames[0].shape[:2]
            self._size, self._fps, self._frame_count, self._pos = (w, h), 30.0, count, 0

        def _close(self) -> None:
            pass

        def _read(self):
            if self._pos >= count:
                return None
            image = frames[self._pos % len(frames)].copy()
            frame = Frame(image, self._pos, time.perf_counter())
            self._pos += 1
            return frame

        def describe(self) -> str:
            w, h = self._size
            return f"{self.uri} (replayed, {w}x{h}, {count} frames)"

    return ReplaySource(uri)


def parse_size(text: str) -> tuple[int, int]:
    """``"256x512"`` -> ``(256, 512)`` (height × width, like ``segrt export --size``)."""
    h, sep, w = text.lower().partition("x")
    try:
        size = (int(h), int(w))
    except ValueError:
        size = (0, 0)
    if not sep or size[0] <= 0 or size[1] <= 0:
        raise ConfigError(f"--size {text!r} is not HxW", hint="e.g. --size 256x512 (height x width)")
    return size


def manifest_at_size(manifest: Manifest, size: tuple[int, int] | None) -> tuple[Manifest, str]:
    """The manifest to benchmark at ``size``, and a note for the table.

    A static export keeps its size (the note says so); a dynamic one must contain
    ``size`` in its exported range, else :class:`ConfigError` (the row is skipped).
    """
    spec = manifest.input
    if size is None or size == (spec.height, spec.width):
        return manifest, ""
    if spec.dynamic is None:
        return manifest, (f"static export: fixed at {spec.height}x{spec.width} "
                          f"(--size {size[0]}x{size[1]} needs a dynamic export)")
    lo, hi = spec.dynamic.min, spec.dynamic.max
    if not (lo[1] <= size[0] <= hi[1] and lo[2] <= size[1] <= hi[2]):
        raise ConfigError(f"--size {size[0]}x{size[1]} is outside the exported range "
                          f"{lo[1]}x{lo[2]}..{hi[1]}x{hi[2]}")
    return manifest.replace(input=dataclasses.replace(spec, height=size[0], width=size[1])), \
        f"dynamic export run at {size[0]}x{size[1]}"


def accuracy_of(manifest: Manifest, precision: str) -> Mapping[str, Any] | None:
    """The accuracy report the manifest holds for ``precision`` (written by ``segrt quantize``).

    FP32 is the reference, so it has no report of its own; its mIoU against labels is
    taken from the first lower-precision report that measured it on its evaluation set.
    """
    art = manifest.artifacts.get(precision)
    if art is not None and art.accuracy is not None:
        return dict(art.accuracy)
    if precision != "fp32":
        return None
    reports = [(other, manifest.artifacts[other].accuracy) for other in PRECISIONS[1:]
               if other in manifest.artifacts and manifest.artifacts[other].accuracy]
    if not reports:
        return None
    # Prefer a report whose evaluation had labels the model's classes can be scored against.
    other, rep = next(((o, r) for o, r in reports if r.get("fp32_miou_vs_labels") is not None), reports[0])
    return {"agreement": 1.0, "miou_vs_fp32": 1.0, "miou_vs_labels": rep.get("fp32_miou_vs_labels"),
            "reference": True, "from_report": other}


# --------------------------------------------------------------------------------------------
# one cell
# --------------------------------------------------------------------------------------------
def _skip(bundle: Bundle, precision: str, backend: str, reason: str, *, note: str = "",
          status: str = "skipped") -> BenchRow:
    m = bundle.manifest
    return BenchRow(model=m.name, bundle=str(bundle.path), precision=precision, backend=backend,
                    status=status, reason=reason, note=note, output_kind=m.output.kind,
                    accuracy=accuracy_of(m, precision))


def _batched(tensor: np.ndarray, batch: int) -> np.ndarray:
    """A private copy of the input with every image slot holding the fixed frame.

    The preprocessor fills slot 0 of a batch-N tensor; a static batch > 1 gets the same
    frame in every slot, and throughput counts every image.
    """
    out = np.array(tensor, copy=True)
    if out.shape[0] == batch:
        out[1:] = out[:1]
        return out
    return np.ascontiguousarray(np.repeat(out[:1], batch, axis=0))


def _e2e_frames(settings: BenchSettings, frame_ms: float) -> int:
    """Frames for the pipeline run: the requested count, cut to what fits in ``max_time_s``."""
    if frame_ms <= 0:
        return settings.e2e_frames
    fits = int(settings.max_time_s * 1e3 / frame_ms)
    return max(MIN_E2E_FRAMES, min(settings.e2e_frames, fits))


def backend_for_bench(bundle: Bundle, precision: str, backend_name: str, threads: int | None):
    """An unopened backend, never building an engine mid-benchmark (that is ``segrt build``'s job)."""
    from segrt.runtime.backends.select import backend_for_bundle

    return backend_for_bundle(bundle, backend=backend_name, precision=precision, threads=threads,
                              rebuild=False, echo=log.debug)


class PostStage:
    """The pipeline's postprocess stage on one stored output: decode (or paste instances), then render.

    Mirrors ``Pipeline._post_loop`` and its decode step so the bench's ``post`` column is
    what the app spends per frame: buffers are preallocated once, like the pipeline's rings.
    """

    def __init__(self, manifest: Manifest, frame: np.ndarray, outputs: Mapping[str, np.ndarray], letterbox) -> None:
        from segrt.runtime.postprocess import MaskDecoder
        from segrt.runtime.render import Renderer

        self.manifest, self.frame, self.outputs, self.letterbox = manifest, frame, outputs, letterbox
        self.instances = manifest.output.kind == "instances"
        self.decoder = None if self.instances else MaskDecoder(manifest)
        self.mask = np.zeros((manifest.input.height, manifest.input.width), np.uint8)
        self.renderer = Renderer(manifest, view="overlay", alpha=0.5)
        h, w = frame.shape[:2]
        self.out = self.renderer.new_output((w, h))
        # the pipeline draws its live stats on every frame; draw text of the same shape
        self.text = "onnxruntime fp32   25.0 FPS\nlatency   80.0 ms\npre 5.0  infer 40.0  post 9.0 ms"

    def __call__(self) -> tuple[float]:
        from segrt.runtime.instances import instances_from_outputs

        t = time.perf_counter()
        if self.instances:
            drawn = instances_from_outputs(self.outputs, self.letterbox, 0.5, names=self.manifest.output.names)
        else:
            drawn = self.decoder.decode(self.outputs, out=self.mask)
        self.renderer.render(self.frame, drawn, self.letterbox, self.text, out=self.out)
        return ((time.perf_counter() - t) * 1e3,)


def bench_cell(bundle: Bundle, precision: str, backend_name: str, settings: BenchSettings, *,
               scene: Sequence[np.ndarray], progress: Progress | None = None) -> BenchRow:
    """Measure one (bundle, precision, backend): pre, infer (h2d/compute/d2h), post, e2e.

    ``scene`` holds pre-rendered camera frames: the first is the fixed frame of the
    pre/compute/post loops, all of them feed the end-to-end pipeline run.
    """
    frame = scene[0]
    from segrt.runtime.preprocess import Preprocessor

    progress = progress or Progress(False)
    try:
        bundle.artifact(precision)
    except BundleError as exc:
        return _skip(bundle, precision, backend_name, str(exc))
    try:
        manifest, note = manifest_at_size(bundle.manifest, settings.size)
    except ConfigError as exc:
        return _skip(bundle, precision, backend_name, str(exc))
    sized = Bundle(bundle.path, manifest)  # in memory only: the bundle on disk is untouched
    try:
        backend = backend_for_bench(sized, precision, backend_name, settings.threads)
    except (BackendUnavailableError, EngineError) as exc:
        return _skip(bundle, precision, backend_name, str(exc), note=note)
    if backend.name != backend_name:
        return _skip(bundle, precision, backend_name,
                     f"no {backend_name} engine for {precision}: would run on {backend.name}", note=note)

    label = f"{manifest.name} {precision} {backend_name}"
    stages: dict[str, StageResult] = {}
    try:
        pre = Preprocessor(manifest)
        tensor, letterbox = pre.pre(frame)
        # the compute loop feeds a copy: the preprocessor reuses its tensor on every call
        tensor = _batched(tensor, manifest.input.batch)
        with backend:
            info = dict(backend.describe())

            def infer_once() -> tuple[float, float, float, float]:
                t = time.perf_counter()
                backend.infer(tensor)  # returns host arrays: the device is synchronised
                wall = (time.perf_counter() - t) * 1e3
                lt = backend.last_times
                return wall, lt.h2d_ms, lt.compute_ms, lt.d2h_ms

            (wall, h2d, compute, d2h), stop = time_loop(infer_once, settings, label=f"{label}: infer",
                                                        progress=progress, series=4)
            stages["infer"] = StageResult.from_samples(wall, stop)
            for name, s in (("h2d", h2d), ("compute", compute), ("d2h", d2h)):
                if any(s):  # CPU backends move no data: an absent column, not "0 ms"
                    stages[name] = StageResult.from_samples(s, "derived")
            # outputs may live in backend-owned buffers: keep a copy for the post loop
            outputs = {k: np.array(v, copy=True) for k, v in backend.infer(tensor).items()}

        def pre_once() -> tuple[float]:
            t = time.perf_counter()
            pre.pre(frame)
            return ((time.perf_counter() - t) * 1e3,)

        (pre_ms,), stop = time_loop(pre_once, settings, label=f"{label}: pre", progress=progress)
        stages["pre"] = StageResult.from_samples(pre_ms, stop)
        (post_ms,), stop = time_loop(PostStage(manifest, frame, outputs, letterbox), settings,
                                     label=f"{label}: post", progress=progress)
        stages["post"] = StageResult.from_samples(post_ms, stop)
    except SegrtError as exc:
        return _skip(bundle, precision, backend_name, f"failed: {exc}", note=note, status="failed")

    infer = stages["infer"].stats
    throughput = manifest.input.batch * 1e3 / infer.mean if infer.mean > 0 else None
    e2e = None
    if settings.e2e:
        frame_ms = sum(stages[s].stats.p50 for s in ("pre", "infer", "post"))
        try:
            e2e = run_e2e(sized, precision, backend_name, settings, _e2e_frames(settings, frame_ms), scene,
                          progress)
        except SegrtError as exc:
            note = "; ".join(filter(None, [note, f"e2e failed: {exc}"]))
    return BenchRow(
        model=manifest.name, bundle=str(bundle.path), precision=precision, backend=backend_name,
        status="ok", note=note, input_shape=tuple(int(d) for d in tensor.shape),
        output_kind=manifest.output.kind, stages=stages, throughput_fps=throughput, e2e=e2e,
        accuracy=accuracy_of(manifest, precision), backend_info=info,
    )


def run_e2e(bundle: Bundle, precision: str, backend_name: str, settings: BenchSettings, frames: int,
            scene: Sequence[np.ndarray], progress: Progress | None = None) -> E2EResult:
    """Run the real pipeline (threads, bounded queues, decode, render, null sink) on 1080p frames.

    The frames are the synthetic scene's, pre-rendered and replayed (:func:`replay_source`).
    FPS is the steady state: frames after the first over the time between the first and
    the last completed frame, so the pipeline fill and the backend's first (allocating)
    call do not count, as they would not on a camera stream that runs for minutes.
    """
    from segrt.runtime.pipeline import Pipeline

    h, w = scene[0].shape[:2]
    uri = SCENE_URI.format(w=w, h=h, n=len(scene), seed=7) + f" replayed x{frames}"
    if progress is not None:
        progress.message(f"  {bundle.manifest.name} {precision} {backend_name}: pipeline, {frames} frames")
    pipe = Pipeline(bundle, replay_source(scene, frames, uri), "null://",
                    backend=backend_for_bench(bundle, precision, backend_name, settings.threads),
                    precision=precision, max_frames=frames, threads=settings.threads)
    done = []
    for _ in pipe:
        done.append(time.perf_counter())
    summary = pipe.summary
    if len(done) >= 2 and done[-1] > done[0]:
        fps = (len(done) - 1) / (done[-1] - done[0])
    else:
        fps = float(summary.fps)
    return E2EResult(source=uri, frames=int(summary.frames), fps=fps, wall_s=float(summary.wall_s),
                     stages=dict(summary.stages), spread=robust_cv(np.diff(done)) if len(done) > 2 else 0.0)


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------
def _csv_list(values: Iterable[str] | str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = [v.strip() for v in (values.split(",") if isinstance(values, str) else values) if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise ConfigError(f"unknown {what}: {', '.join(bad) or '(none given)'}",
                          hint=f"choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


def bench_bundles(paths: Sequence[str | os.PathLike[str]], *, precisions: Iterable[str] | str = ("fp32",),
                  backends: Iterable[str] | str = ("onnxruntime",), iters: int = 50, warmup: int = 5,
                  threads: int | None = None, size: tuple[int, int] | None = None, e2e: bool = True,
                  e2e_frames: int = 60, max_time_s: float = 10.0, cv_target: float = 0.05,
                  progress: bool = True) -> BenchResult:
    """Benchmark every bundle × precision × backend; unrunnable cells become skipped rows.

    Bundles are opened (and validated) before anything is timed, so a typo fails
    in a second, not after minutes of measuring the other models.
    """
    from segrt.tools.envinfo import environment

    t_start = time.perf_counter()
    precisions = _csv_list(precisions, PRECISIONS, "precision")
    backends = _csv_list(backends, BENCH_BACKENDS, "backend")
    settings = BenchSettings(iters=iters, warmup=warmup, max_time_s=max_time_s, cv_target=cv_target,
                             threads=threads, size=size, e2e=e2e, e2e_frames=e2e_frames)
    if not paths:
        raise ConfigError("no bundle given", hint="segrt bench BUNDLE [BUNDLE...]")
    bundles = [Bundle.open(p) for p in paths]
    env = environment(threads)
    bar = Progress(progress)
    scene = synthetic_frames(SCENE_FRAMES if e2e else 1, *settings.frame_size)
    rows = []
    for bundle in bundles:
        for precision in precisions:
            for backend in backends:
                bar.message(f"segrt bench: {bundle.manifest.name} {precision} {backend}")
                row = bench_cell(bundle, precision, backend, settings, scene=scene, progress=bar)
                if not row.ok:
                    bar.message(f"  {row.status}: {row.reason}")
                rows.append(row)
    try:  # the load at the end too: a busy machine explains a wide spread
        env["cpu"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, KeyError, TypeError):
        pass
    return BenchResult(rows=tuple(rows), environment=env, settings=settings.to_dict(),
                       wall_s=time.perf_counter() - t_start)
