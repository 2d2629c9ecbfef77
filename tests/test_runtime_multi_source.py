"""Several live sources on one backend: batched or one by one, a stalling camera, no cross-talk."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from segrt.errors import ConfigError
from segrt.runtime.backends.select import backend_for_bundle
from segrt.runtime.bundle import Bundle
from segrt.runtime.multi_source import MultiSourceRunner
from segrt.runtime.postprocess import mask_from_outputs
from segrt.runtime.preprocess import Preprocessor
from segrt.runtime.sources.live import LiveSource
from segrt.runtime.sources.synthetic import PacedSyntheticCapture, synthetic_config_from_uri
from segrt.tools.cli import main

from _export_helpers import write_user_module

FRAMES = 10
SIZE = "96x64"


@pytest.fixture(scope="module")
def batch_bundle(tmp_path_factory) -> Bundle:
    folder = tmp_path_factory.mktemp("multi")
    write_user_module(folder)
    import sys
    sys.path.insert(0, str(folder))
    try:
        assert main(["export", "user_nets:build", "--size", "32x32", "--max-batch", "4", "-o", str(folder / "b")]) == 0
    finally:
        sys.path.remove(str(folder))
    return Bundle.open(folder / "b")


class StallingCapture:
    """A paced synthetic camera that, on its first opening, blocks for ``stall_s`` at frame ``at``
    and then fails (a dropped camera); the source reopens it, and the new capture runs on."""

    def __init__(self, config, stall: bool, at: int, stall_s: float) -> None:
        self._inner = PacedSyntheticCapture(config)
        self._stall, self._at, self._stall_s = stall, at, stall_s
        self._n = 0
        self.ended = False

    def read(self):
        if self._stall and self._n == self._at:
            time.sleep(self._stall_s)
            return False, None
        self._n += 1
        return self._inner.read()

    def release(self) -> None:
        self._inner.release()

    def get(self, prop: int) -> float:
        return self._inner.get(prop)


def stalling_source(seed: int, stall_s: float = 0.8) -> LiveSource:
    uri = f"synthetic://?size={SIZE}&fps=20&seed={seed}"
    config = synthetic_config_from_uri(uri, uri.split("?", 1)[1])
    opened = []

    def opener():
        opened.append(1)
        return StallingCapture(config, stall=len(opened) == 1, at=3, stall_s=stall_s)

    return LiveSource(uri + "&live=1", opener, backoff_s=0.05, read_timeout_s=5.0)


def run_four(bundle: Bundle, **kw):
    sources = [f"synthetic://?size={SIZE}&fps=20&seed={s}&live=1" for s in (1, 2, 3)] + [stalling_source(4)]
    seen: dict[int, list] = {i: [] for i in range(4)}
    lock = threading.Lock()

    def on_frame(i, res):
        with lock:
            seen[i].append((time.perf_counter(), res.frame.copy(), res.mask.copy()))

    runner = MultiSourceRunner(bundle, sources, backend="onnxruntime", threads=1, max_frames=FRAMES,
                               overlay_stats=False, on_frame=on_frame, **kw)
    return runner.run(), seen


def single_stream_mask(backend, pre: Preprocessor, manifest, image: np.ndarray) -> np.ndarray:
    tensor, _ = pre.pre(image)
    return mask_from_outputs(backend.infer(tensor), manifest)


@pytest.mark.parametrize("max_batch", [None, 1], ids=["batched", "one-by-one"])
def test_four_live_streams_keep_their_own_masks_and_survive_a_stall(batch_bundle, max_batch):
    summary, seen = run_four(batch_bundle, max_batch=max_batch)
    assert [s.frames for s in summary.streams] == [FRAMES] * 4
    if max_batch is None:
        assert summary.max_batch == 4 and summary.mean_batch > 1.0  # frames of several streams per inference
    else:
        assert summary.max_batch == 1 and summary.mean_batch == 1.0 and summary.batches == 4 * FRAMES
    # The stalled camera was dropped and reconnected; the summary says so.
    assert summary.streams[3].reconnects == 1 and summary.streams[0].reconnects == 0
    assert "reconn" in summary.table()
    # While camera 3 stalled, the other streams went on.
    times3 = [t for t, _, _ in seen[3]]
    gap = int(np.argmax(np.diff(times3)))
    t0, t1 = times3[gap], times3[gap + 1]
    assert t1 - t0 > 0.5
    for i in range(3):
        assert sum(t0 < t < t1 for t, _, _ in seen[i]) >= 3, f"stream {i} stalled with camera 3"
    # Every frame's mask is what single-stream inference gives for that same frame.
    manifest = batch_bundle.manifest
    pre = Preprocessor(manifest)
    with backend_for_bundle(batch_bundle, backend="onnxruntime", threads=1) as single:
        for i in range(4):
            for _, image, mask in seen[i]:
                np.testing.assert_array_equal(mask, single_stream_mask(single, pre, manifest, image))
    # The streams differ (different seeds), so a mask given to the wrong stream would be caught above.
    firsts = [seen[i][0][1] for i in range(4)]
    assert all(not np.array_equal(firsts[0], f) for f in firsts[1:])


def test_tiled_mosaic_to_one_sink(batch_bundle, tmp_path):
    sources = [f"synthetic://?size={SIZE}&fps=20&seed={s}&live=1" for s in (1, 2, 3)]
    out = tmp_path / "tiles"
    summary = MultiSourceRunner(batch_bundle, sources, str(out), tile=True, backend="onnxruntime", threads=1,
                                max_frames=3, overlay_stats=False).run()
    assert [s.frames for s in summary.streams] == [3, 3, 3]
    import cv2
    written = sorted(out.iterdir())
    assert written
    img = cv2.imread(str(written[-1]))
    assert img.shape[:2] == (64, 96)  # 2x2 grid of 48x32 tiles: one stream's size


def test_sinks_must_match_the_sources(batch_bundle):
    with pytest.raises(ConfigError, match="2 sources but 1 sinks"):
        MultiSourceRunner(batch_bundle, ["synthetic://?size=32x32", "synthetic://?size=32x32"], ["null://"],
                          backend="onnxruntime")
    with pytest.raises(ConfigError, match="outside the bundle's batch axis"):
        MultiSourceRunner(batch_bundle, ["synthetic://?size=32x32"], backend="onnxruntime", max_batch=5)
