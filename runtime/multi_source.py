"""Several sources on one backend: ``segrt run BUNDLE --source A --source B ...``.

::

    capture thread per stream ──FrameGather──▶ infer thread (one backend) ──q_out──▶ post thread ──▶ sinks / mosaic
    (on demand: newest frame, pre)             (batch or one by one, decode)         (render, write)

One backend instance serves every stream. When the bundle's graph has a batch axis (``segrt export
--max-batch N``; the manifest's ``input.dynamic`` profile), the newest frame of each stream is
batched: :class:`~segrt.runtime.batching.FrameGather` asks every stream for a frame and waits for
all of them, but at most ``batch_wait_ms`` after the first one arrived, so a slow or stalled camera
only misses batches. Without a batch axis the gathered frames are inferred one by one, in stream
order, on the same backend. Each stream has its own sink (``sinks`` given once per source, in order),
or all are tiled into one mosaic (``tile=True``) written to one sink.

A stream whose source fails for good (a camera that could not be reopened) stops with its error in
the summary; the other streams go on. Any other error stops the run and is re-raised.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from segrt.errors import ConfigError, SourceError
from segrt.runtime.backends.base import Backend
from segrt.runtime.batching import FrameGather
from segrt.runtime.bundle import Bundle
from segrt.runtime.interrupts import signals_as_interrupt
from segrt.runtime.mosaic import Mosaic
from segrt.runtime.multi_summary import MultiRunSummary, StreamState
from segrt.runtime.postprocess import MaskDecoder
from segrt.runtime.preprocess import Letterbox, Preprocessor
from segrt.runtime.render import Renderer
from segrt.runtime.run_summary import FrameResult, RunSummary, stats_text
from segrt.runtime.sinks import NullSink, Sink, open_sink
from segrt.runtime.sources import Frame, Source, open_source

log = logging.getLogger("segrt.run")

_END = object()
_POLL_S = 0.1
_MASKS_PER_STREAM = 4  # decoded, queued, being rendered, +1 spare


@dataclass
class _Captured:
    frame: Frame
    tensor: np.ndarray
    letterbox: Letterbox
    capture_ms: float
    pre_ms: float


class MultiSourceRunner:
    """Run one bundle on several sources through one backend (see the module docstring).

    ``sinks``: None (render, write nowhere), one spec per source, or with ``tile=True`` the one
    spec (a URI or a list of URIs) the mosaic goes to. ``max_frames`` counts per stream.
    ``max_batch`` caps the batch (default: the bundle's batch axis; 1 infers frame by frame).
    ``on_frame(stream, FrameResult)`` is called in the post thread for every frame; its arrays are
    valid during the call only (copy what you keep); the streams of a batch call it from
    parallel worker threads.
    """

    stop_timeout_s: float = 10.0

    def __init__(self, bundle: Bundle | str | os.PathLike[str], sources: Sequence[Source | str | int],
                 sinks: Sequence[Any] | str | None = None, *, tile: bool = False, backend: str | Backend = "auto",
                 precision: str = "fp32", view: str = "overlay", alpha: float = 0.5, max_frames: int | None = None,
                 threads: int | None = None, legend: bool = True, shares: bool = False, overlay_stats: bool = True,
                 batch_wait_ms: float = 15.0, max_batch: int | None = None, overwrite: bool = False,
                 listen: str | None = None, on_frame: Callable[[int, FrameResult], None] | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        if not sources:
            raise ConfigError("no source given", hint="pass --source URI once per stream")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames <= 0):
            raise ConfigError(f"max_frames must be a positive integer, got {max_frames!r}")
        if batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {batch_wait_ms}")
        if self.bundle.manifest.output.kind == "instances":
            raise ConfigError("several sources run semantic-segmentation bundles only",
                              hint="run an instance bundle with one --source")
        n = len(sources)
        if tile:
            sink_specs: list[Any] = [None] * n
            self._tile_spec = sinks if sinks is not None else "null://"
        else:
            if sinks is None:
                sinks = [None] * n
            if isinstance(sinks, str) or len(sinks) != n:
                count = 1 if isinstance(sinks, str) else len(sinks)
                raise ConfigError(f"{n} sources but {count} sinks",
                                  hint="give --sink once per --source, in order, or --tile to show them in one")
            sink_specs, self._tile_spec = list(sinks), None
        self._sink_specs = sink_specs
        self._overwrite, self._listen = overwrite, listen
        self.precision = precision
        if precision == "auto" and not isinstance(backend, Backend):
            from segrt.runtime.auto_precision import resolve_auto
            choice = resolve_auto(self.bundle, backend=backend, threads=threads, echo=print)
            self.precision, backend = choice.precision, choice.backend
        self.manifest = self.bundle.manifest.for_precision(self.precision)
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            from segrt.runtime.backends.select import backend_for_bundle
            self.backend = backend_for_bundle(self.bundle, backend=backend, precision=self.precision, threads=threads)
        graph_batch = self.bundle.manifest.input.max_batch
        if max_batch is not None and not 1 <= max_batch <= graph_batch:
            raise ConfigError(f"max_batch {max_batch} is outside the bundle's batch axis (1..{graph_batch})",
                              hint=f"re-export with: segrt export MODEL --max-batch {n}")
        self.max_batch = min(max_batch or graph_batch, n)
        inp = self.manifest.input
        self.streams = [
            StreamState(open_source(s), Preprocessor(self.manifest),
                    Renderer(self.manifest, view=view, alpha=alpha, legend=legend, shares=shares),
                    [np.zeros((inp.height, inp.width), np.uint8) for _ in range(_MASKS_PER_STREAM)])
            for s in sources]
        self._batch = np.zeros((self.max_batch,) + tuple(inp.shape[1:]), np.dtype(inp.dtype)) \
            if self.max_batch > 1 else None
        self._decoder = MaskDecoder(self.manifest)
        self.max_frames, self.overlay_stats = max_frames, overlay_stats
        self.on_frame = on_frame
        self._gather = FrameGather(n, batch_wait_ms / 1e3)
        self._label = f"{self.backend.name} {self.precision}"
        self.mosaic: Mosaic | None = None
        self.tile_sink: Sink | None = None
        self._q_out: queue.Queue = queue.Queue(1)
        self._stop = threading.Event()
        self._stop_capture = threading.Event()
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._finished: list[threading.Event] = []
        self._batches = 0
        self._batched_frames = 0
        self._t_start = self._t_end = 0.0
        self._closing = False
        self._used = False

    # ------------------------------------------------------------------ public API
    def run(self) -> MultiRunSummary:
        """Run every stream to its end (or ``max_frames``); Ctrl-C/SIGTERM stop gracefully."""
        interrupted = False
        with signals_as_interrupt(lambda: not self._closing):
            try:
                self._start()
                try:
                    self._wait(self._finished[-1])
                except KeyboardInterrupt:
                    interrupted = True
                    self.stop()
                    with contextlib.suppress(KeyboardInterrupt):
                        self._wait(self._finished[-1], timeout=30.0)
            finally:
                self._closing = True
                self._shutdown()
        if self._errors:
            raise self._errors[0]
        return self._summary(interrupted)

    def stop(self) -> None:
        """Stop reading; the frames in flight drain to the sinks (thread-safe)."""
        self._stop_capture.set()
        self._gather.close()

    # ------------------------------------------------------------------ life cycle
    def _start(self) -> None:
        if self._used:
            raise ConfigError("a MultiSourceRunner runs once; create a new one")
        self._used = True
        try:
            for st in self.streams:
                st.source.open()
            self.backend.open()
            self._backend_info = dict(self.backend.describe())
            for st, spec in zip(self.streams, self._sink_specs):
                size = st.renderer.output_size(st.source.size)
                st.sink = NullSink("none") if spec is None else open_sink(
                    spec, fps=st.source.fps or 30.0, size=size, overwrite=self._overwrite, listen=self._listen)
                st.sink.open()
                st.sink.attach(self._legend(st.renderer), st.live_stats)
            if self._tile_spec is not None:
                first = self.streams[0]
                self.mosaic = Mosaic(len(self.streams), first.renderer.output_size(first.source.size))
                fps = max(st.source.fps or 30.0 for st in self.streams)
                self.tile_sink = open_sink(self._tile_spec, fps=fps, size=self.mosaic.size,
                                           overwrite=self._overwrite, listen=self._listen)
                self.tile_sink.open()
                self.tile_sink.attach(self._legend(first.renderer), first.live_stats)
        except BaseException:
            self._close_resources()
            raise
        self._t_start = time.perf_counter()
        loops = [(lambda i=i: self._capture_loop(i), f"capture{i}") for i in range(len(self.streams))]
        loops += [(self._infer_loop, "infer"), (self._post_loop, "post")]
        self._finished = [threading.Event() for _ in loops]
        self._threads = [threading.Thread(target=self._guard, args=(loop, done), name=f"segrt-{name}", daemon=True)
                         for (loop, name), done in zip(loops, self._finished)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _legend(renderer: Renderer) -> list:
        return [(name, tuple(int(v) for v in renderer.palette[i])) for i, name in enumerate(renderer.classes)]

    def _sinks(self) -> list[Sink]:
        return [s for s in [st.sink for st in self.streams] + [self.tile_sink] if s is not None]

    def _wait(self, done: threading.Event, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(_POLL_S):
            if any(s.stop_requested for s in self._sinks()):
                self.stop()
            if self._errors:
                self._stop.set()
                self._gather.close()
            if deadline is not None and time.monotonic() > deadline:
                log.warning("drain timed out; closing with frames still in flight")
                return

    def _guard(self, loop: Callable[[], None], done: threading.Event) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - re-raised to the caller by run()
            self._errors.append(exc)
            self._stop.set()
            self._gather.close()
        finally:
            done.set()

    def _shutdown(self) -> None:
        self._stop.set()
        self.stop()
        for st in self.streams:
            if st.source.is_live:  # unblocks a capture thread waiting for the next camera frame
                with contextlib.suppress(Exception):
                    st.source.close()
        for t, done in zip(self._threads, self._finished):
            if not done.wait(timeout=self.stop_timeout_s):
                log.warning("thread %s did not stop within %.0f s", t.name, self.stop_timeout_s)
            t.join(timeout=1.0)
        self._t_end = time.perf_counter()
        infer_running = len(self._finished) > 1 and not self._finished[-2].is_set()
        if infer_running:
            log.warning("the infer thread is still running: the %s backend is left open", self.backend.name)
        self._close_resources(close_backend=not infer_running)

    def _close_resources(self, close_backend: bool = True) -> None:
        closers = [st.source.close for st in self.streams] + [s.close for s in self._sinks()]
        if close_backend:
            closers.append(self.backend.close)
        for closer in closers:
            try:
                closer()
            except Exception as exc:  # close everything, report the first failure
                if not self._errors:
                    self._errors.append(exc)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q_out.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    # ------------------------------------------------------------------ stages
    def _capture_loop(self, i: int) -> None:
        st = self.streams[i]
        n = 0
        try:
            while not self._stop_capture.is_set():
                if self.max_frames is not None and n >= self.max_frames:
                    break
                if not self._gather.wait_demand(i):
                    break
                t0 = time.perf_counter()
                frame = st.source.read()
                t1 = time.perf_counter()
                if frame is None:
                    break
                tensor, lb = st.pre.pre(frame.image)
                n += 1
                self._gather.offer(i, _Captured(frame, tensor, lb, (t1 - t0) * 1e3,
                                                (time.perf_counter() - t1) * 1e3))
        except SourceError as exc:  # this camera is gone for good: the other streams go on
            st.error = str(exc)
            log.warning("stream %d (%s) stopped: %s", i, st.source.describe(), exc)
        finally:
            self._gather.finish(i)

    def _infer_loop(self) -> None:
        slots = [0] * len(self.streams)
        try:
            while True:
                items = self._gather.take(self._stop)
                if items is None:
                    return
                done = []
                for k in range(0, len(items), self.max_batch):
                    chunk = items[k:k + self.max_batch]
                    t1 = time.perf_counter()
                    if self._batch is None:
                        outputs = self.backend.infer(chunk[0][1].tensor)
                    else:
                        for j, (_, cap) in enumerate(chunk):
                            np.copyto(self._batch[j], cap.tensor[0])
                        outputs = self.backend.infer(self._batch[:len(chunk)])
                    t2 = time.perf_counter()
                    self._batches += 1
                    self._batched_frames += len(chunk)
                    for j, (i, cap) in enumerate(chunk):
                        # Each stream's own item of the batch, decoded into that stream's ring now
                        # (a backend may reuse its output buffers on the next call).
                        st = self.streams[i]
                        out = st.masks[slots[i] % len(st.masks)]
                        slots[i] += 1
                        mask = self._decoder.decode({name: v[j:j + 1] for name, v in outputs.items()}, out=out)
                        timings = {"capture": cap.capture_ms, "pre": cap.pre_ms, "infer": (t2 - t1) * 1e3,
                                   "decode": (time.perf_counter() - t2) * 1e3}
                        done.append((i, cap.frame, mask, cap.letterbox, timings))
                if not self._put(done):
                    return
        finally:
            self._put(_END)

    def _post_loop(self) -> None:
        # The streams of a batch are rendered and written side by side (OpenCV drops the GIL):
        # each has its own renderer, buffer, sink and mosaic tile.
        with ThreadPoolExecutor(max_workers=len(self.streams), thread_name_prefix="segrt-post") as pool:
            while True:
                try:
                    batch = self._q_out.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if batch is _END:
                    return
                written = list(pool.map(self._post_one, batch))
                if self.tile_sink is not None:
                    t0 = time.perf_counter()
                    self.tile_sink.write(self.mosaic.image, None)
                    shared = (time.perf_counter() - t0) * 1e3
                    written = [(st, f, {**tm, "sink": tm["sink"] + shared}, t + shared / 1e3)
                               for st, f, tm, t in written]
                for st, frame, timings, t_done in written:
                    timings["e2e"] = (t_done - frame.timestamp) * 1e3
                    st.record(timings, t_done)

    def _post_one(self, item: tuple) -> tuple:
        """Render one stream's frame and write it to its sink (or its mosaic tile)."""
        i, frame, mask, lb, timings = item
        st = self.streams[i]
        t0 = time.perf_counter()
        size = (frame.image.shape[1], frame.image.shape[0])
        if st.rendered is None or st.rendered.shape[1::-1] != st.renderer.output_size(size):
            st.rendered = st.renderer.new_output(size)
        text = stats_text(self._label, st.ema, st.source.is_live, timings) if self.overlay_stats else None
        rendered = st.renderer.render(frame.image, mask, lb, text, out=st.rendered)
        t1 = time.perf_counter()
        if self.mosaic is not None:
            self.mosaic.put(i, rendered)
        else:
            st.sink.write(rendered, frame.name)
        t2 = time.perf_counter()
        timings["post"] = timings.pop("decode") + (t1 - t0) * 1e3
        timings["sink"] = (t2 - t1) * 1e3
        if self.on_frame is not None:
            self.on_frame(i, FrameResult(frame.index, frame.image, mask, None, rendered, frame.label, lb, timings,
                                         text))
        return st, frame, timings, t2

    # ------------------------------------------------------------------ summary
    def _summary(self, interrupted: bool) -> MultiRunSummary:
        info = dict(getattr(self, "_backend_info", None) or self.backend.describe())
        info["precision"] = self.precision
        ends = [st.last_done for st in self.streams if st.last_done is not None]
        wall = max((max(ends) if ends else self._t_end) - self._t_start, 1e-9)
        per = []
        for st in self.streams:
            own = max((st.last_done if st.last_done is not None else self._t_end) - self._t_start, 1e-9)
            per.append(RunSummary(
                frames=st.frames, fps=st.frames / own, wall_s=own, dropped=int(st.source.dropped_frames),
                corrupt=int(st.source.corrupt_frames), stages={k: w.stats() for k, w in st.times.items()},
                backend=info, source=st.source.describe(),
                sink=(self.tile_sink.describe() + " (tiled)") if self.tile_sink else st.sink.describe() if st.sink else "",
                interrupted=interrupted, reconnects=int(getattr(st.source, "reconnects", 0)),
                damage=st.source.damage_note(), live=st.source.is_live, extra={"error": st.error}))
        return MultiRunSummary(
            streams=tuple(per), fps=sum(s.frames for s in per) / wall, wall_s=wall, batches=self._batches,
            mean_batch=self._batched_frames / max(self._batches, 1), max_batch=self.max_batch, backend=info,
            errors=tuple(st.error for st in self.streams), interrupted=interrupted)
