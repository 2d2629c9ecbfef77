"""One benchmark cell: a (bundle, precision, backend) timed stage by stage, then run end to end."""
from __future__ import annotations

import logging
import time
from typing import Mapping, Sequence

import numpy as np

from segrt.errors import BackendUnavailableError, BundleError, ConfigError, EngineError, SegrtError
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import Manifest
from segrt.tools.bench.inputs import SCENE_URI, accuracy_of, manifest_at_size, replay_source
from segrt.tools.bench.results import BenchRow, BenchSettings, E2EResult
from segrt.tools.bench.stats import StageResult, robust_cv
from segrt.tools.bench.timing import Progress, time_loop

log = logging.getLogger("segrt.bench")
MIN_E2E_FRAMES = 5


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

    return backend_for_bundle(bundle, backend=backend_name, precision=precision, threads=threads, prefer_cpu_int8=False,
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
        manifest, note = manifest_at_size(bundle.manifest.for_precision(precision), settings.size)
    except ConfigError as exc:
        return _skip(bundle, precision, backend_name, str(exc))
    sized = Bundle(bundle.path, manifest)  # in memory only: the bundle on disk is untouched
    try:
        backend = backend_for_bench(sized, precision, backend_name, settings.threads)
    except (BackendUnavailableError, EngineError) as exc:
        return _skip(bundle, precision, backend_name, str(exc), note=note)
    if backend.name != backend_name and not (backend.name == "triton" and backend_name.startswith("triton://")):
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
        return _skip(bundle, precision, backend_name, str(exc), note=note, status="failed")

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
