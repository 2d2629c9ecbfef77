"""The threaded pipeline end to end on real bundles: masks match PyTorch, timings, sinks, errors, live drops."""
from __future__ import annotations

import queue
import re
import threading
import time

import cv2
import numpy as np
import pytest

from segrt.errors import ConfigError, SinkError, SourceError
from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segrt.runtime.bundle import Bundle
from segrt.runtime.pipeline import STAGES, FrameResult, Pipeline, RunSummary
from segrt.runtime.sinks import open_sink
from segrt.runtime.sources import LiveSource, open_source
from segrt.tools.tiny_model import reference_mask, tiny_bundle

from _runtime_helpers import (count_video_frames, frame_number, instances_bundle, numbered_frame, torch_bundle,
                              torch_reference_mask)

SYN = "synthetic://?size=160x96&fps=30&frames={n}&seed=1"


@pytest.fixture(scope="module")
def torch_bundles(tmp_path_factory):
    pytest.importorskip("torch", reason="PyTorch makes the reference (not in the old-library venv)")
    root = tmp_path_factory.mktemp("torch")
    fused, net = torch_bundle(root / "fused", 48, 64, fused=True)
    unfused, _ = torch_bundle(root / "unfused", 48, 64, fused=False)
    return fused, unfused, net


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("tiny"), 48, 64, fused=True)


@pytest.mark.parametrize("which", ["fused", "unfused"])
def test_pipeline_masks_match_pytorch(torch_bundles, which):
    fused, unfused, net = torch_bundles
    bundle = fused if which == "fused" else unfused
    results = []
    p = Pipeline(bundle, SYN.format(n=5), threads=1)
    for r in p:
        assert isinstance(r, FrameResult)
        resized = cv2.resize(r.frame, (64, 48), interpolation=cv2.INTER_LINEAR)
        ref = torch_reference_mask(net, resized)
        assert r.mask.shape == (48, 64) and r.mask.dtype == np.uint8
        agree = float(np.mean(r.mask == ref))
        assert agree >= 0.995, f"frame {r.index}: only {agree:.3%} of pixels match PyTorch"
        assert r.rendered.shape == (96, 160, 3)
        assert r.label is not None and r.label.shape == (96, 160)  # synthetic ground truth rides along
        assert set(r.timings) == set(STAGES) and all(v >= 0 for v in r.timings.values())
        results.append(r.index)
    assert results == list(range(5))
    s = p.summary
    assert isinstance(s, RunSummary) and s.frames == 5 and s.stages["infer"].count == 5
    assert s.backend["backend"] == "onnxruntime" and s.backend["precision"] == "fp32"
    assert s.backend["providers"] == ["CPUExecutionProvider"]


def test_run_writes_every_frame_and_exact_masks(tiny, tmp_path):
    # The tiny model has an exact numpy reference: check every decoded mask bit for bit.
    masks = {}
    p = Pipeline(tiny, SYN.format(n=7), tmp_path / "out.avi", view="side-by-side", shares=True)
    for r in p:
        ref = reference_mask(cv2.resize(r.frame, (64, 48), interpolation=cv2.INTER_LINEAR)[None])[0]
        np.testing.assert_array_equal(r.mask, ref)
        masks[r.index] = r.mask.copy()
    assert len(masks) == 7
    assert count_video_frames(tmp_path / "out.avi") == 7
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 96)


def test_run_summary_table(tiny, tmp_path):
    s = Pipeline(str(tiny.path), SYN.format(n=12), str(tmp_path / "frames") + "/").run()
    assert s.frames == 12 and s.fps > 0 and s.wall_s > 0 and s.dropped == 0 and s.corrupt == 0
    for name in STAGES:
        st = s.stages[name]
        assert st.count == 12 and st.min <= st.p50 <= st.p90 <= st.p99 <= st.max
    # End to end covers the stages of a frame: never shorter than its infer alone.
    assert s.stages["e2e"].min >= s.stages["infer"].min
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 12
    table = s.table()
    for word in ("capture", "infer", "e2e", "p99", "frames 12", "fps"):
        assert word in table
    # A file is read ahead of the model: its end-to-end time is labelled as queueing, not latency.
    assert "e2e*" in table and "queued behind the model" in table and not s.live
    assert s.to_dict()["stages"]["pre"]["count"] == 12


def test_objects_are_accepted_and_max_frames_stops(tiny, tmp_path):
    src = open_source(SYN.format(n=50))
    sink = open_sink(tmp_path / "o.mp4", fps=30)
    s = Pipeline(Bundle.open(tiny.path), src, sink, max_frames=9, overlay_stats=False).run()
    assert s.frames == 9 and count_video_frames(tmp_path / "o.mp4") == 9


def test_a_pipeline_runs_once(tiny):
    p = Pipeline(tiny, SYN.format(n=2))
    p.run()
    with pytest.raises(ConfigError, match="runs once"):
        p.run()


def _folder(tmp_path, sizes, bad_mask_at=None):
    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "masks").mkdir()
    for i, (w, h) in enumerate(sizes):
        cv2.imwrite(str(tmp_path / "images" / f"{i:03d}.png"), np.full((h, w, 3), 40 * i % 256, np.uint8))
        mh, mw = (h, w) if i != bad_mask_at else (h // 2, w)
        cv2.imwrite(str(tmp_path / "masks" / f"{i:03d}.png"), np.zeros((mh, mw), np.uint8))
    return tmp_path


def test_capture_error_propagates_to_the_caller(tiny, tmp_path):
    src = _folder(tmp_path / "data", [(64, 48)] * 6, bad_mask_at=3)
    p = Pipeline(tiny, src, tmp_path / "out.avi")
    with pytest.raises(SourceError, match="label .*003.png is 64x24 but its image"):
        p.run()
    # What was processed before the failure is still in a finalised, playable file.
    assert 1 <= count_video_frames(tmp_path / "out.avi") <= 3


def test_sink_error_propagates_from_the_post_thread(tiny, tmp_path):
    src = _folder(tmp_path / "data", [(64, 48), (64, 48), (80, 48)])
    with pytest.raises(SinkError, match="frame size changed from 64x48 to 80x48"):
        Pipeline(tiny, src, tmp_path / "out.avi").run()
    # and when iterating
    with pytest.raises(SinkError, match="frame size changed"):
        for _ in Pipeline(tiny, src, tmp_path / "out2.avi"):
            pass


def test_mixed_frame_sizes_render_without_a_video_sink(tiny, tmp_path):
    src = _folder(tmp_path / "data", [(64, 48), (80, 60), (64, 48)])
    shapes = [r.rendered.shape for r in Pipeline(tiny, src)]
    assert shapes == [(48, 64, 3), (60, 80, 3), (48, 64, 3)]


def test_iteration_results_stay_valid_until_the_next_step(tiny):
    kept = []
    for r in Pipeline(tiny, SYN.format(n=6), alpha=1.0, legend=False, overlay_stats=False, view="mask"):
        # The mask view is a pure function of the mask: re-render it and compare.
        kept.append((r.mask.copy(), r.rendered.copy()))
        assert np.array_equal(r.rendered, r.rendered)
    masks = [m for m, _ in kept]
    assert any(not np.array_equal(masks[0], m) for m in masks[1:])  # frames differ
    for m, img in kept:
        up = cv2.resize(m, (160, 96), interpolation=cv2.INTER_NEAREST)
        assert np.all((img.sum(axis=2) > 0) == (up > 0))


def test_live_source_in_the_pipeline_drops_stale_frames(tiny, tmp_path):
    # A 300 fps camera feeding a pipeline slowed by PNG writing at 640x480: frames must be skipped.
    uri = "synthetic://?size=640x480&fps=300&frames=100000&live=1"
    p = Pipeline(tiny, uri, tmp_path / "frames/", max_frames=15)
    seen = [r.index for r in p]
    assert len(seen) == 15 and seen == sorted(seen)
    assert p.summary.dropped > 0 and seen[-1] - seen[0] > 14  # gaps: newest frame wins


@pytest.mark.parametrize("rows", [None, 100], ids=["k-rows", "static-100"])
def test_instance_bundle_in_the_pipeline(tmp_path, rows):
    prob = np.zeros((2, 1, 28, 28), np.float32)
    prob[:, :, :, :14] = 0.9  # left half of each box
    bundle = instances_bundle(tmp_path / "b", 64, 64, [[0, 16, 32, 48], [32, 24, 64, 40]], [1, 2], [0.9, 0.3], prob,
                              rows=rows)
    # 160x80 frames letterboxed into 64x64: scale 0.4, content rows 16..48.
    p = Pipeline(bundle, "synthetic://?size=160x80&frames=3", tmp_path / "out.avi")
    results = list(p)
    assert len(results) == 3
    for r in results:
        assert r.mask is None and len(r.instances) == 1  # the 0.3 detection is under the threshold
        inst = r.instances[0]
        assert inst.label == 1 and inst.box == pytest.approx((0.0, 0.0, 80.0, 80.0))
        ys, xs = np.nonzero(inst.full_mask((160, 80)))
        assert (xs.min(), xs.max(), ys.min(), ys.max()) == (0, 39, 0, 79)
    assert count_video_frames(tmp_path / "out.avi") == 3


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_run(tiny):
    rss = {}
    for r in Pipeline(tiny, "synthetic://?size=320x180&frames=600", threads=1):
        if r.index in (150, 599):
            rss[r.index] = _rss_mb()
    assert rss[599] - rss[150] < 8.0, rss


def test_a_backend_whose_infer_thread_is_still_running_is_not_closed(tiny):
    """Closing a backend under a running infer() frees buffers the GPU may still use: shutdown
    leaves it open when the infer thread does not stop in time, and closes it otherwise."""
    import threading

    from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    release, second_started = threading.Event(), threading.Event()

    class SecondInferHangs(OnnxRuntimeBackend):  # the real ORT backend; its second infer() stalls
        calls = closes = 0

        def _infer(self, inputs):
            type(self).calls += 1
            if type(self).calls == 2:
                second_started.set()
                release.wait(30)
            return super()._infer(inputs)

        def _close(self):
            type(self).closes += 1
            super()._close()

    be = SecondInferHangs(tiny.onnx_path("fp32"), threads=1)
    p = Pipeline(tiny, SYN.format(n=20), backend=be, queue_size=1)
    p.stop_timeout_s = 0.3
    for _ in p:
        # the first result can reach us before the infer thread takes frame 2: wait until it has
        assert second_started.wait(10)
        break  # shutdown while the second infer() is stuck
    assert SecondInferHangs.calls == 2 and SecondInferHangs.closes == 0 and be.is_open
    release.set()
    p._threads[1].join(10)
    be.close()
    assert SecondInferHangs.closes == 1

    done = Pipeline(tiny, SYN.format(n=3), backend=OnnxRuntimeBackend(tiny.onnx_path("fp32"), threads=1))
    done.run()
    assert not done.backend.is_open  # a finished infer thread: the backend is closed as before


# ------------------------------------------------------------------ live: the newest frame is inferred
class _StepCamera:
    """A camera that delivers frame i only when the test calls ``show(i)`` (a numbered image)."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._released = threading.Event()
        self.delivered = 0  # frames the grabber has taken

    def show(self, *indices: int) -> None:
        for i in indices:
            self._queue.put(i)

    def read(self):
        while not self._released.is_set():
            try:
                i = self._queue.get(timeout=0.02)
            except queue.Empty:
                continue
            self.delivered += 1
            return True, numbered_frame(i, (64, 48))
        return False, None

    def release(self) -> None:
        self._released.set()

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: 64.0, cv2.CAP_PROP_FRAME_HEIGHT: 48.0, cv2.CAP_PROP_FPS: 30.0}.get(prop, 0.0)


class _GatedBackend(OnnxRuntimeBackend):
    """ONNX Runtime that waits at each inference until the test lets it through: a model slower than the camera."""

    def __init__(self, onnx_path) -> None:
        super().__init__(onnx_path, threads=1)
        self.started: queue.Queue = queue.Queue()
        self.gate = threading.Semaphore(0)

    def _infer(self, inputs):
        self.started.put(True)
        assert self.gate.acquire(timeout=10), "the test never released this inference"
        return super()._infer(inputs)


def _wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_live_pipeline_infers_the_newest_captured_frame(tiny):
    # While inference is busy the camera delivers a burst of frames; the next frame inferred must be
    # the newest of them, never an older one held in a queue (issue 16: two stale frames waited).
    camera = _StepCamera()
    source = LiveSource("step://camera", lambda: camera, read_timeout_s=10)
    backend = _GatedBackend(tiny.onnx_path("fp32"))
    camera.show(0)
    pipe = Pipeline(tiny, source, backend=backend, max_frames=4, overlay_stats=False)
    inferred: queue.Queue = queue.Queue()
    consumer = threading.Thread(target=lambda: [inferred.put(frame_number(r.frame)) for r in pipe], daemon=True)
    consumer.start()
    seen = []
    for burst in [(1, 2, 3), (4, 5), (6, 7, 8, 9), ()]:
        assert backend.started.get(timeout=10)  # inference is busy with a frame
        camera.show(*burst)
        if burst:
            _wait_until(lambda: camera.delivered == burst[-1] + 1)  # the grabber has taken them all
        time.sleep(0.05)  # time for a pipeline that reads ahead to take and preprocess a frame
        backend.gate.release()
        seen.append(inferred.get(timeout=10))
    consumer.join(timeout=10)
    assert not consumer.is_alive() and inferred.empty()  # max_frames ended the run
    assert seen == [0, 3, 5, 9]  # each inference took the newest frame captured before it was ready
    assert pipe.summary.dropped == 6 and pipe.summary.live


def test_a_single_image_shows_its_stats(tiny, tmp_path):
    # issue 16: a single image showed "warming up" instead of figures.
    cv2.imwrite(str(tmp_path / "one.png"), np.full((48, 64, 3), 90, np.uint8))
    results = [(r.stats_text, r.rendered.copy()) for r in Pipeline(tiny, tmp_path / "one.png")]
    assert len(results) == 1
    text, rendered = results[0]
    assert "warming up" not in text
    assert re.search(r"pre \d+\.\d +infer \d+\.\d ms", text), text
    plain = next(iter(Pipeline(tiny, tmp_path / "one.png", overlay_stats=False)))
    assert plain.stats_text is None and not np.array_equal(plain.rendered, rendered)  # the text is drawn


def test_live_stats_say_latency_and_file_stats_say_queued(tiny):
    live = [r.stats_text for r in Pipeline(tiny, "synthetic://?size=160x96&fps=100&frames=100000&live=1",
                                           max_frames=6)]
    assert any("latency" in t for t in live) and not any("queued" in t for t in live)
    files = [r.stats_text for r in Pipeline(tiny, SYN.format(n=12))]
    assert any("queued" in t for t in files) and not any("latency" in t for t in files)


def test_a_finite_live_source_ends_the_run(tiny):
    # synthetic://?frames=N&live=1 has an end: the run finishes there (it was replayed forever).
    s = Pipeline(tiny, "synthetic://?size=160x96&fps=100&frames=20&live=1").run()
    assert s.live and s.reconnects == 0 and 1 <= s.frames <= 20 and s.frames + s.dropped == 20
