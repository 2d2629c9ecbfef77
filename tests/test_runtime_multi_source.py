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
from segrt.runtime.bundle import onnx_filename
from segrt.runtime.manifest import (InputSpec, Manifest, OutputSpec, PreprocessSpec, ShapeRange,
                                    default_palette)

from _runtime_helpers import MEAN, STD, TORCH_CLASSES

FRAMES = 10
SIZE = "96x64"


@pytest.fixture(scope="module")
def batch_bundle(tmp_path_factory) -> Bundle:
    """A model whose mask follows the pixels (class = blue // 64), exported with a batch axis 1..4:
    every frame has its own mask, so one given to the wrong stream cannot pass for the right one."""
    import torch

    class BlueLevels(torch.nn.Module):
        def forward(self, frame):  # uint8 [N,H,W,3] BGR -> uint8 [N,H,W]
            return torch.div(frame[..., 0], 64, rounding_mode="floor").to(torch.uint8)

    path = tmp_path_factory.mktemp("multi") / "b"
    h, w = 32, 48
    nc = len(TORCH_CLASSES)
    inp = InputSpec(name="frame", height=h, width=w, layout="NHWC", dtype="uint8", fused=True,
                    dynamic=ShapeRange((1, h, w), (4, h, w), (4, h, w)))
    manifest = Manifest(name="torch-tiny-batch", classes=TORCH_CLASSES, palette=default_palette(nc), input=inp,
                        preprocess=PreprocessSpec(resize="stretch", mean=MEAN, std=STD, color_order="RGB"),
                        output=OutputSpec(kind="mask", names=("mask",), num_classes=nc),
                        source={"model": "blue levels"}, export={"opset": 17})
    bundle = Bundle.create(path, manifest)
    target = path / onnx_filename("fp32")
    torch.onnx.export(BlueLevels(), (torch.zeros(1, h, w, 3, dtype=torch.uint8),), str(target),
                      dynamo=False, opset_version=17, input_names=["frame"], output_names=["mask"],
                      dynamic_axes={"frame": {0: "N"}, "mask": {0: "N"}})
    bundle.register_onnx("fp32", target)
    return Bundle.open(path)


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
    firsts = [seen[i][0][2] for i in range(4)]
    assert len(np.unique(firsts[0])) > 1 and all(not np.array_equal(firsts[0], m) for m in firsts[1:])


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
    assert img[:32, :48].std() > 0 and img[32:, 48:].max() == 0  # 3 tiles drawn, the 4th cell empty


def test_sinks_must_match_the_sources(batch_bundle):
    with pytest.raises(ConfigError, match="2 sources but 1 sinks"):
        MultiSourceRunner(batch_bundle, ["synthetic://?size=32x32", "synthetic://?size=32x32"], ["null://"],
                          backend="onnxruntime")
    with pytest.raises(ConfigError, match="outside the bundle's batch axis"):
        MultiSourceRunner(batch_bundle, ["synthetic://?size=32x32"], backend="onnxruntime", max_batch=5)


def test_cli_runs_two_sources_with_one_sink_each(batch_bundle, tmp_path, capsys):
    from segrt.tools.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    rc = main(["run", str(batch_bundle.path), "--source", f"synthetic://?size={SIZE}&frames=3&seed=1",
               "--source", f"synthetic://?size={SIZE}&frames=3&seed=2", "--sink", str(a), "--sink", str(b),
               "--backend", "onnxruntime", "--threads", "1", "--no-stats"])
    out = capsys.readouterr().out
    assert rc == 0
    assert len(list(a.iterdir())) == 3 and len(list(b.iterdir())) == 3
    assert "batches of up to 2" in out and "seed=1" in out and "seed=2" in out
