"""The stream pipeline: capture -> preprocess + infer -> postprocess + sink, in three threads.

::

    capture thread                 infer thread                  post thread
    source.read(), pre  ──q_in──▶  backend.infer, decode  ──q_out──▶  render, sink.write ──▶ (iterator)

Queues are bounded (``queue_size``), so a file source is paced by the slowest stage and
never drops a frame: the capture thread reads and preprocesses ahead, and the inference
thread goes from one ``infer`` to the next with nothing in between (on a CPU backend every
millisecond spent there is a millisecond the inference threads sit idle). A file frame's
end-to-end time therefore includes its wait in the queues, and is labelled as queued.

A live source drops stale frames inside its grabber (the newest frame wins), and the
pipeline takes a frame only on demand: the inference thread asks for one when it is ready,
and only then does the capture thread take the newest captured frame and preprocess it. No
frame waits ahead of inference, so a live frame's latency is about one processing time
(pre + infer + post + sink) plus at most one frame interval, whatever the camera's rate.

Every frame is timed per stage (capture, pre, infer, post, sink) and end to end (capture
timestamp -> written by the sink).

Buffers: input tensors, class masks and rendered images live in small rings sized so that
a slot is never rewritten while a frame still in the pipeline (or the one the caller holds
while iterating) refers to it. Nothing grows with the run: the timing history is a fixed-size
window, so memory stays flat on a long run.

Errors raised in any thread stop the pipeline and are re-raised to the caller. ``run()``
turns SIGINT and SIGTERM into a graceful stop on the main thread: capture stops, the frames
in flight drain to the sink, the sink is closed (an output video is finalised and playable).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from typing import Any, Iterator

import numpy as np

from segrt.errors import ConfigError
from segrt.runtime.backends.base import Backend
from segrt.runtime.bundle import Bundle
from segrt.runtime.instances import instances_from_outputs
from segrt.runtime.postprocess import MaskDecoder
from segrt.runtime.preprocess import Preprocessor
from segrt.runtime.render import Renderer
from segrt.runtime.interrupts import signals_as_interrupt
from segrt.runtime.run_summary import (STAGES, Ema, FrameResult, RunSummary, StageWindow, live_stats_from_ema,
                                       stats_text)
from segrt.runtime.sinks import NullSink, Sink, open_sink
from segrt.runtime.sources import Frame, Source, open_source

log = logging.getLogger("segrt.run")

_END = object()
_POLL_S = 0.1
_STATS_EVERY = 8  # frames between updates of the on-frame FPS/latency text


class Pipeline:
    """Run a bundle on a source, writing rendered frames to a sink.

    ``bundle``, ``source`` and ``sink`` take a path/URI or an object (Bundle, Source, Sink);
    ``backend`` a name ("auto", "onnxruntime", "openvino", "tensorrt") or an unopened/opened Backend.
    ``precision="auto"`` picks the fastest gated artifact measured on this machine (cached in the
    manifest; see :mod:`segrt.runtime.auto_precision`).
    ``sink=None`` renders without writing anywhere. ``run()`` returns a :class:`RunSummary`;
    iterating yields a :class:`FrameResult` per frame (then ``.summary`` is set). A Pipeline
    runs once.
    """

    #: How long shutdown waits for each stage thread. An infer thread still running after it keeps
    #: the backend open (closing it would free buffers the GPU may still be using).
    stop_timeout_s: float = 10.0

    def __init__(self, bundle: Bundle | str | os.PathLike[str], source: Source | str | int,
                 sink: Sink | str | list | None = None, *, backend: str | Backend = "auto", precision: str = "fp32",
                 view: str = "overlay", alpha: float = 0.5, max_frames: int | None = None,
                 threads: int | None = None, legend: bool = True, shares: bool = False,
                 overlay_stats: bool = True, queue_size: int = 2, score_threshold: float = 0.5,
                 overwrite: bool = False, listen: str | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        self.manifest = self.bundle.manifest
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames <= 0):
            raise ConfigError(f"max_frames must be a positive integer, got {max_frames!r}")
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
        self.source = open_source(source)
        self._sink_spec = sink
        self._overwrite = overwrite  # an existing output video is refused unless True
        self._listen = listen  # the host an http:// sink without one binds to (127.0.0.1 when None)
        self.sink: Sink | None = None
        self.precision = precision
        self.auto_choice = None
        if precision == "auto" and not isinstance(backend, Backend):
            from segrt.runtime.auto_precision import resolve_auto
            self.auto_choice = resolve_auto(self.bundle, backend=backend, threads=threads, echo=print)
            self.precision, backend = self.auto_choice.precision, self.auto_choice.backend
        self.manifest = self.manifest.for_precision(self.precision)  # an unfused twin brings its own I/O
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            from segrt.runtime.backends.select import backend_for_bundle
            self.backend = backend_for_bundle(self.bundle, backend=backend, precision=self.precision, threads=threads)
        self.renderer = Renderer(self.manifest, view=view, alpha=alpha, legend=legend, shares=shares)
        self.max_frames = max_frames
        self.overlay_stats = overlay_stats
        self.queue_size = queue_size
        self.score_threshold = score_threshold
        self.kind = self.manifest.output.kind
        self.summary: RunSummary | None = None
        self._used = False
        self._closing = False
        self.signals_received = 0
        self._iterating = False
        self._threads: list[threading.Thread] = []
        self._finished: list[threading.Event] = []  # set by each thread's loop on its way out
        self._errors: list[BaseException] = []
        self._stop = threading.Event()  # abort: every thread leaves now
        self._stop_capture = threading.Event()  # graceful: no new frames, drain the rest
        self._times = {s: StageWindow() for s in STAGES}
        self._frames_done = 0
        self._t_start = self._t_end = 0.0
        self._ema = {k: Ema() for k in ("interval", "e2e", "infer", "pre", "post")}
        self._last_done: float | None = None

    # ------------------------------------------------------------------ public API
    def run(self) -> RunSummary:
        """Process the whole source (or ``max_frames``); Ctrl-C/SIGTERM stop gracefully."""
        interrupted = False
        with signals_as_interrupt(self._on_signal):
            try:
                self._start(iterating=False)
                try:
                    self._wait(self._finished[-1])
                except KeyboardInterrupt:
                    interrupted = True
                    log.info("interrupted: stopping capture, draining, finalising %s",
                             self.sink.describe() if self.sink else "output")
                    self._stop_capture.set()
                    try:
                        self._wait(self._finished[-1], timeout=30.0)
                    except KeyboardInterrupt:
                        log.warning("second interrupt: dropping the frames still in flight")
            finally:
                self._closing = True  # from here on signals are only counted
                self._shutdown()
        self._raise_errors()
        self.summary = self._summary(interrupted)
        return self.summary

    def __iter__(self) -> Iterator[FrameResult]:
        self._start(iterating=True)
        try:
            while True:
                item = self._get(self._q_res, consumer=True)
                if item is _END:
                    break
                yield item
        finally:
            self._shutdown()
        self._raise_errors()
        self.summary = self._summary(False)

    def _on_signal(self) -> bool:
        """Count a SIGINT/SIGTERM; interrupt the run unless the sink is being closed (finalising a video)."""
        self.signals_received += 1
        return not self._closing

    def stop(self) -> None:
        """Ask a running pipeline to stop reading and drain (thread-safe)."""
        self._stop_capture.set()

    # ------------------------------------------------------------------ life cycle
    def _start(self, iterating: bool) -> None:
        if self._used:
            raise ConfigError("a Pipeline runs once; create a new one")
        self._used = True
        self._iterating = iterating
        try:
            self.source.open()
            self.backend.open()
            self._backend_info = dict(self.backend.describe())
            self._check_io()
            fw, fh = self.source.size
            if self._sink_spec is None:
                self.sink = NullSink("none")
            else:
                self.sink = open_sink(self._sink_spec, fps=self.source.fps or 30.0,
                                      size=self.renderer.output_size((fw, fh)), overwrite=self._overwrite,
                                      listen=self._listen)
            self.sink.open()
            legend = [(name, tuple(int(v) for v in self.renderer.palette[i]))
                      for i, name in enumerate(self.renderer.classes)]
            self.sink.attach(legend, self.live_stats)
        except BaseException:
            self._close_resources()
            raise
        q = self.queue_size
        # Live: q_in holds at most the one frame taken on demand (below); the grabber drops the rest.
        self._q_in: queue.Queue = queue.Queue(1 if self.source.is_live else q)
        # Live: the inference thread sets this when it is ready for a frame; only then is one taken.
        self._demand = threading.Event()
        # Live: a frame waits behind at most one render+write (the post stage may be the slowest).
        self._q_out: queue.Queue = queue.Queue(1 if self.source.is_live else q)
        self._q_res: queue.Queue = queue.Queue(q)
        inp = self.manifest.input
        # Ring sizes: see the module docstring; each covers every reference that can be alive.
        n_masks = 2 * q + 4
        self._mask_ring = [np.zeros((inp.height, inp.width), np.uint8) for _ in range(n_masks)] \
            if self.kind != "instances" else []
        self._render_ring: list[np.ndarray] = []  # allocated on the first frame (frame size known then)
        # One input tensor per frame that can be in flight between capture and the end of infer:
        # the capture thread's own, q_in's, and the one being inferred.
        self._pres = [Preprocessor(self.manifest) for _ in range(self._q_in.maxsize + 2)]
        self._decoder = MaskDecoder(self.manifest) if self.kind != "instances" else None
        self._label = f"{self.backend.name} {self.precision}"
        self._t_start = time.perf_counter()
        # Each loop sets its event on the way out. The main thread waits on these rather than on
        # Thread.join/is_alive: a signal raised inside Thread.join (3.11) can mark a running
        # thread as stopped, and the sink would then be closed under the post thread's feet.
        self._finished = [threading.Event() for _ in range(3)]
        loops = (self._capture_loop, self._infer_loop, self._post_loop)
        self._threads = [
            threading.Thread(target=self._guard, args=(loop, done), name=f"segrt-{name}", daemon=True)
            for loop, done, name in zip(loops, self._finished, ("capture", "infer", "post"))
        ]
        for t in self._threads:
            t.start()
        log.debug("pipeline started: %s -> %s on %s", self.source.describe(), self.sink.describe(), self._label)

    def _check_io(self) -> None:
        specs = self.backend.input_specs
        inp = self.manifest.input
        if specs and specs[0].name != inp.name:
            raise ConfigError(f"the model's input is {specs[0].name!r} but the manifest says {inp.name!r}",
                              hint="re-export the bundle")

    def _shutdown(self) -> None:
        self._stop.set()
        self._stop_capture.set()
        if self.source.is_live:
            # Unblocks a capture thread waiting for the next camera frame.
            with contextlib.suppress(Exception):
                self.source.close()
        for t, done in zip(self._threads, self._finished):
            if not done.wait(timeout=self.stop_timeout_s):
                log.warning("thread %s did not stop within %.0f s", t.name, self.stop_timeout_s)
            t.join(timeout=1.0)
        self._t_end = time.perf_counter()
        # Closing a backend while infer() runs on it frees memory under the GPU's feet: leave it open.
        # (No threads yet when _start failed: nothing is running.)
        infer_running = len(self._finished) > 1 and not self._finished[1].is_set()
        if infer_running:
            log.warning("the infer thread is still running: the %s backend is left open (not closed under it)",
                        self.backend.name)
        self._close_resources(close_backend=not infer_running)

    def _close_resources(self, close_backend: bool = True) -> None:
        errors = []
        for closer in (self.source.close, self.backend.close if close_backend else None,
                       self.sink.close if self.sink else None):
            if closer is None:
                continue
            try:
                closer()
            except Exception as exc:  # close everything, report the first failure
                errors.append(exc)
        if errors and not self._errors:
            self._errors.append(errors[0])

    def _raise_errors(self) -> None:
        if self._errors:
            raise self._errors[0]

    def _wait(self, done: threading.Event, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        last_log = time.monotonic()
        while not done.wait(_POLL_S):  # short waits keep the main thread responsive to signals
            if self.sink is not None and self.sink.stop_requested:
                self._stop_capture.set()
            if self._errors:
                self._stop.set()
            now = time.monotonic()
            if now - last_log >= 5.0 and self._frames_done:
                last_log = now
                el = time.perf_counter() - self._t_start
                log.info("%d frames, %.1f fps", self._frames_done, self._frames_done / el)
            if deadline is not None and now > deadline:
                log.warning("drain timed out; closing with frames still in flight")
                return

    def _guard(self, loop, done: threading.Event) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - re-raised to the caller by run()/__iter__
            self._errors.append(exc)
            self._stop.set()
        finally:
            done.set()

    # ------------------------------------------------------------------ queues
    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, consumer: bool = False) -> Any:
        """Next item, or _END once the pipeline is aborted. The consumer (the iterator)
        re-raises a worker's error; workers just leave."""
        while True:
            if consumer and self._errors:
                self._stop.set()
                self._raise_errors()
            if self._stop.is_set():
                return _END
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    # ------------------------------------------------------------------ stages
    def _capture_loop(self) -> None:
        n = 0
        live = self.source.is_live
        try:
            while not self._stop_capture.is_set():
                if self.max_frames is not None and n >= self.max_frames:
                    break
                if live and not self._await_demand():
                    break
                t0 = time.perf_counter()
                frame = self.source.read()
                t1 = time.perf_counter()
                if frame is None:
                    break
                tensor, lb = self._pres[n % len(self._pres)].pre(frame.image)
                t2 = time.perf_counter()
                n += 1
                if not self._put(self._q_in, (frame, tensor, lb, (t1 - t0) * 1e3, (t2 - t1) * 1e3)):
                    return
        finally:
            self._put(self._q_in, _END)

    def _await_demand(self) -> bool:
        """Live sources: wait until inference is ready for a frame (False once capture must stop)."""
        while not self._demand.wait(_POLL_S):
            if self._stop_capture.is_set() or self._stop.is_set():
                return False
        self._demand.clear()
        return not self._stop_capture.is_set()

    def _infer_loop(self) -> None:
        slot = 0
        live = self.source.is_live
        while True:
            if live:
                self._demand.set()  # the capture thread now takes the newest frame for us
            item = self._get(self._q_in)
            if item is _END:
                self._put(self._q_out, _END)
                return
            frame, tensor, lb, capture_ms, pre_ms = item
            t1 = time.perf_counter()
            outputs = self.backend.infer(tensor)
            t2 = time.perf_counter()
            # Take the result out of the backend's buffers now: a backend may reuse them.
            if self._decoder is not None:
                result = self._decoder.decode(outputs, out=self._mask_ring[slot % len(self._mask_ring)])
                slot += 1
            else:
                result = {k: np.array(v, copy=True) for k, v in outputs.items()}
            t3 = time.perf_counter()
            timings = {"capture": capture_ms, "pre": pre_ms, "infer": (t2 - t1) * 1e3,
                       "decode": (t3 - t2) * 1e3}
            if not self._put(self._q_out, (frame, result, lb, timings)):
                return

    def _post_loop(self) -> None:
        slot = 0
        text: str | None = None
        averaged = False  # whether ``text`` shows running averages (else the first frame's own times)
        try:
            while True:
                item = self._get(self._q_out)
                if item is _END:
                    return
                frame, result, lb, timings = item
                frame: Frame
                t0 = time.perf_counter()
                if self.kind == "instances":
                    instances = instances_from_outputs(result, lb, self.score_threshold,
                                                       names=self.manifest.output.names)
                    mask, drawn = None, instances
                else:
                    instances, mask, drawn = None, result, result
                if not self._render_ring:
                    h, w = frame.image.shape[:2]
                    n = self.queue_size + 3 if self._iterating else 1
                    self._render_ring = [self.renderer.new_output((w, h)) for _ in range(n)]
                out = self._render_ring[slot % len(self._render_ring)]
                slot += 1
                if self.overlay_stats and (not averaged or self._frames_done % _STATS_EVERY == 0):
                    # A few updates a second: readable figures, and the text is rasterised once per update.
                    averaged = self._ema["e2e"].v is not None
                    text = stats_text(self._label, self._ema, self.source.is_live, timings)
                try:
                    rendered = self.renderer.render(frame.image, drawn, lb, text, out=out)
                except ConfigError:
                    # The frame size changed mid-stream (an image folder of mixed sizes): new buffers.
                    h, w = frame.image.shape[:2]
                    self._render_ring = [self.renderer.new_output((w, h)) for _ in self._render_ring]
                    rendered = self.renderer.render(frame.image, drawn, lb, text,
                                                    out=self._render_ring[(slot - 1) % len(self._render_ring)])
                t1 = time.perf_counter()
                self.sink.write(rendered, frame.name)
                t2 = time.perf_counter()
                if self.sink.stop_requested:  # q/Esc in the display window
                    self._stop_capture.set()
                timings["post"] = timings.pop("decode") + (t1 - t0) * 1e3
                timings["sink"] = (t2 - t1) * 1e3
                timings["e2e"] = (t2 - frame.timestamp) * 1e3
                self._record(timings, t2)
                if self._iterating:
                    res = FrameResult(frame.index, frame.image, mask, instances, rendered, frame.label, lb, timings,
                                      text)
                    if not self._put(self._q_res, res):
                        return
        finally:
            if self._iterating:
                self._put(self._q_res, _END)

    def _record(self, timings: dict[str, float], t_done: float) -> None:
        for k in STAGES:
            self._times[k].add(timings[k])
        self._frames_done += 1
        e = self._ema
        if self._last_done is not None:
            e["interval"].add(t_done - self._last_done)
        self._last_done = t_done
        for k in ("e2e", "infer", "pre", "post"):
            e[k].add(timings[k])

    def live_stats(self) -> dict:
        """Frames done, FPS and per-stage running averages (ms), read by an http sink's ``/stats``."""
        return live_stats_from_ema(self._ema, self._frames_done)

    # ------------------------------------------------------------------ summary
    def _summary(self, interrupted: bool) -> RunSummary:
        n = self._frames_done
        end = self._last_done if self._last_done is not None else self._t_end
        wall = max(end - self._t_start, 1e-9)
        info = dict(getattr(self, "_backend_info", None) or self.backend.describe())
        info["precision"] = self.precision
        return RunSummary(
            frames=n, fps=n / wall, wall_s=wall, dropped=int(self.source.dropped_frames),
            corrupt=int(self.source.corrupt_frames),
            stages={k: w.stats() for k, w in self._times.items()}, backend=info,
            source=self.source.describe(), sink=self.sink.describe() if self.sink else "",
            interrupted=interrupted, reconnects=int(getattr(self.source, "reconnects", 0)),
            damage=self.source.damage_note(),
            live=self.source.is_live,
        )
