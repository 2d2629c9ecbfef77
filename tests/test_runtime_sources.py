"""Sources by URI: files, images, folders (with masks), synthetic, live latest-wins and reconnects, errors."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from segrt.errors import SourceError
from segrt.runtime.sources import (Frame, ImageListSource, LiveSource, PacedSyntheticCapture, SyntheticSource,
                                   VideoFileSource, csi_pipeline, open_source, opencv_has_gstreamer)
from segrt.runtime.synthetic import SyntheticConfig, SyntheticScene

from _runtime_helpers import frame_number, numbered_frame, write_video


def _png(path, img):
    assert cv2.imwrite(str(path), img)
    return path


# ------------------------------------------------------------------ video files
@pytest.mark.parametrize("ext,fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_video_file_every_frame_in_order(tmp_path, ext, fourcc):
    path = write_video(tmp_path / f"clip{ext}", 12, size=(160, 120), fps=12.5, fourcc=fourcc)
    src = open_source(str(path))
    assert isinstance(src, VideoFileSource) and not src.is_live
    with src:
        assert src.size == (160, 120)
        assert src.fps == pytest.approx(12.5, abs=0.01)
        assert src.frame_count == 12
        frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    assert [frame_number(f.image) for f in frames] == list(range(12))
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 and f.label is None for f in frames)
    assert src.corrupt_frames == 0


def test_video_seek_random_access(tmp_path):
    path = write_video(tmp_path / "clip.avi", 20)
    with open_source(path) as src:
        for i in (15, 3, 19, 0):
            src.seek(i)
            f = src.read()
            assert f.index == i and frame_number(f.image) == i
        with pytest.raises(SourceError, match="outside"):
            src.seek(20)


def test_truncated_avi_counts_missing_frames_as_corrupt(tmp_path):
    path = write_video(tmp_path / "clip.avi", 40)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with open_source(cut) as src:
        assert src.frame_count == 40  # the header still announces 40
        frames = list(src)
    assert 0 < len(frames) < 40
    assert [frame_number(f.image) for f in frames] == list(range(len(frames)))
    assert src.corrupt_frames == 40 - len(frames)


def test_corrupt_frames_mid_video_are_skipped_and_counted(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 40, fourcc="mp4v")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with open_source(bad) as src:
        frames = list(src)
    assert src.corrupt_frames > 0
    assert len(frames) + src.corrupt_frames == 40
    idx = [f.index for f in frames]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert frames[-1].index == 39  # the stream continued after the damage


def test_truncated_mp4_is_a_one_line_error(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 20, fourcc="mp4v")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(SourceError, match="cannot decode video") as ei:
        open_source(cut).open()
    assert "\n" not in str(ei.value) and "cut.mp4" in str(ei.value)


# ------------------------------------------------------------------ images and folders
def test_single_image(tmp_path):
    img = numbered_frame(7, (64, 48))
    src = open_source(str(_png(tmp_path / "one.png", img)))
    with src:
        assert src.size == (64, 48) and src.frame_count == 1 and src.fps > 0
        frames = list(src)
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0].image, img)


def test_folder_sorted_and_glob(tmp_path):
    for i in (3, 1, 2, 0):
        _png(tmp_path / f"f{i:02d}.png", numbered_frame(i, (32, 24)))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(tmp_path) as src:
        assert [frame_number(f.image) for f in src] == [0, 1, 2, 3]
        src.seek(2)
        assert frame_number(src.read().image) == 2
    with open_source(str(tmp_path / "f0[12].png")) as src:
        assert [frame_number(f.image) for f in src] == [1, 2]


def test_folder_skips_undecodable_images(tmp_path):
    _png(tmp_path / "a.png", numbered_frame(0, (32, 24)))
    (tmp_path / "b.png").write_bytes(b"\x89PNG garbage")
    _png(tmp_path / "c.png", numbered_frame(2, (32, 24)))
    with open_source(tmp_path) as src:
        assert [frame_number(f.image) for f in src] == [0, 2]
    assert src.corrupt_frames == 1


def _mask(i: int, size=(32, 24)) -> np.ndarray:
    w, h = size
    m = np.zeros((h, w), np.uint8)
    m[: i + 2, :] = i + 1
    return m


def test_folder_images_and_masks_subfolders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        _png(tmp_path / "images" / f"s{i}.jpg", numbered_frame(i, (32, 24)))
        _png(tmp_path / "masks" / f"s{i}.png", _mask(i))
    for uri in (tmp_path, tmp_path / "images"):  # the parent, or the images folder itself
        with open_source(uri) as src:
            assert src.has_labels
            frames = list(src)
        assert len(frames) == 3
        for i, f in enumerate(frames):
            np.testing.assert_array_equal(f.label, _mask(i))


def test_folder_suffix_mask_pairs(tmp_path):
    for i in range(3):
        _png(tmp_path / f"x{i}.png", numbered_frame(i, (32, 24)))
        _png(tmp_path / f"x{i}_mask.png", _mask(i))
    with open_source(tmp_path) as src:
        frames = list(src)
    assert len(frames) == 3 and src.has_labels
    assert [frame_number(f.image) for f in frames] == [0, 1, 2]
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.label, _mask(i))


def test_palette_png_masks_keep_class_ids(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow writes the palette PNGs (not in the old-library venv)")

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _png(tmp_path / "images" / "a.png", numbered_frame(0, (32, 24)))
    m = _mask(4)
    im = Image.fromarray(m, mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128] + [0] * 750)
    im.save(tmp_path / "masks" / "a.png")
    with open_source(tmp_path) as src:
        np.testing.assert_array_equal(src.read().label, m)


def test_folder_with_missing_mask_is_an_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(2):
        _png(tmp_path / "images" / f"s{i}.png", numbered_frame(i, (32, 24)))
    _png(tmp_path / "masks" / "s0.png", _mask(0))
    with pytest.raises(SourceError, match="1 of 2 images have no mask.*s1.png"):
        open_source(tmp_path)


# ------------------------------------------------------------------ synthetic
def test_synthetic_wraps_the_scene_with_labels_and_seek():
    uri = "synthetic://?size=160x96&fps=25&frames=6&seed=3"
    src = open_source(uri)
    assert isinstance(src, SyntheticSource)
    scene = SyntheticScene(SyntheticConfig(width=160, height=96, fps=25, frames=6, seed=3))
    with src:
        assert src.size == (160, 96) and src.fps == 25 and src.frame_count == 6 and src.has_labels
        frames = list(src)
        assert [f.index for f in frames] == list(range(6))
        img, label = scene.render(4)
        np.testing.assert_array_equal(frames[4].image, img)
        np.testing.assert_array_equal(frames[4].label, label)
        src.seek(2)
        np.testing.assert_array_equal(src.read().image, scene.render(2)[0])


# ------------------------------------------------------------------ live: latest wins, reconnect
def test_live_source_latest_frame_wins():
    src = open_source("synthetic://?size=64x48&fps=100&frames=100000&live=1")
    assert isinstance(src, LiveSource) and src.is_live and src.frame_count is None
    with src:
        first = src.read()
        time.sleep(0.5)  # a slow consumer: ~50 frames arrive meanwhile
        t_read = time.perf_counter()
        f = src.read()
        # The frame handed over is the newest one, not the next in line.
        assert f.index - first.index >= 10
        assert t_read - f.timestamp < 0.1
        assert src.dropped_frames >= 9
        seen = [src.read().index for _ in range(5)]
    assert seen == sorted(seen) and len(set(seen)) == 5


def test_file_sources_do_not_drop(tmp_path):
    src = open_source("synthetic://?size=64x48&fps=100&frames=5")
    with src:
        out = []
        for f in src:
            time.sleep(0.02)
            out.append(f.index)
    assert out == [0, 1, 2, 3, 4] and src.dropped_frames == 0


class _UnpluggingCamera(PacedSyntheticCapture):
    """A paced synthetic camera whose cable comes out after ``frames`` frames: reads fail, but its
    content has not ended (a real camera has no end)."""

    @property
    def ended(self) -> bool:
        return False


def test_live_source_reopens_after_disconnect():
    # A camera that "unplugs" after 5 frames; each reopen restarts it.
    config = SyntheticConfig(width=64, height=48, fps=200, frames=5)
    src = LiveSource("fake://cam", lambda: _UnpluggingCamera(config), reconnects=3, backoff_s=0.05)
    with src:
        got = [src.read() for _ in range(14)]
    assert src.reconnects >= 2
    assert all(isinstance(f, Frame) for f in got)
    assert [f.index for f in got] == sorted(f.index for f in got)


def test_finite_live_source_ends_instead_of_reconnecting():
    # synthetic://?frames=N&live=1 has a known end: after its last frame read() returns None (issue 16:
    # it was "reopened" and replayed forever).
    src = open_source("synthetic://?size=64x48&fps=200&frames=6&live=1")
    t = time.perf_counter()
    with src:
        got = list(src)
    assert time.perf_counter() - t < 5
    assert src.reconnects == 0
    assert got and got[-1].index == 5 and [f.index for f in got] == sorted({f.index for f in got})
    assert len(got) + src.dropped_frames == 6


def test_live_source_gives_up_after_bounded_reconnects():
    opens = []
    config = SyntheticConfig(width=64, height=48, fps=200, frames=3)

    def opener():
        opens.append(time.perf_counter())
        if len(opens) > 1:
            raise SourceError("cannot open fake camera")  # the camera is gone
        return _UnpluggingCamera(config)

    src = LiveSource("fake://cam", opener, reconnects=3, backoff_s=0.05, read_timeout_s=5)
    with src:
        with pytest.raises(SourceError, match="could not be reopened.*3 attempts"):
            for _ in range(20):
                src.read()
    assert len(opens) == 4  # the first open and 3 attempts
    gaps = np.diff(opens[1:])
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # exponential backoff: 0.05 * 2**k seconds


def test_live_close_unblocks_a_waiting_reader():
    src = LiveSource("fake://slow", lambda: PacedSyntheticCapture(SyntheticConfig(width=64, height=48, fps=0.5)),
                     read_timeout_s=30)
    src.open()
    src.read()  # the first frame; the next is 2 s away
    result = []
    t = threading.Thread(target=lambda: result.append(src.read()))
    t.start()
    time.sleep(0.1)
    src.close()
    t.join(timeout=3)
    assert not t.is_alive() and result == [None]


# ------------------------------------------------------------------ URIs and errors
@pytest.mark.parametrize("uri,match", [
    ("nope://x", "unknown source scheme"),
    ("/definitely/not/here.mp4", "no such file"),
    ("/dev/video7", "no camera at /dev/video7"),
    ("7", "no camera at /dev/video7"),
    ("v4l2:///dev/video7", "no camera at /dev/video7"),
    ("v4l2:///tmp/x", "expected v4l2:///dev/videoN"),
    ("synthetic://?size=big", "size='big' is not WIDTHxHEIGHT"),
    ("synthetic://?colour=red", "unknown parameter 'colour'"),
    ("", "empty"),
])
def test_bad_uris_are_one_line_source_errors(uri, match):
    with pytest.raises(SourceError, match=match) as ei:
        open_source(uri)
    assert "\n" not in str(ei.value)


def test_unreachable_stream_is_a_source_error():
    src = open_source("rtsp://127.0.0.1:9/none")  # nothing listens on the discard port
    assert src.is_live
    t = time.perf_counter()
    with pytest.raises(SourceError, match="cannot open rtsp://127.0.0.1:9/none"):
        src.open()
    assert time.perf_counter() - t < 10


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path)


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer; the no-GStreamer error cannot occur")
@pytest.mark.parametrize("uri", ["csi://0", "csi://1?width=1920&height=1080&fps=30&flip=2",
                                 "gst://videotestsrc ! videoconvert ! appsink"])
def test_gstreamer_uris_explain_missing_gstreamer(uri):
    with pytest.raises(SourceError, match="built without it.*GStreamer: NO"):
        open_source(uri)


def test_csi_pipeline_carries_the_options():
    p = csi_pipeline(1, 1920, 1080, 60, flip=2)
    assert "nvarguscamerasrc sensor-id=1" in p
    assert "width=(int)1920, height=(int)1080, framerate=(fraction)60/1" in p
    assert "flip-method=2" in p and p.endswith("appsink drop=true max-buffers=1 sync=false")
    assert "framerate=(fraction)29970/1000" in csi_pipeline(fps=29.97)


def test_source_object_passes_through(tmp_path):
    src = ImageListSource("x", [_png(tmp_path / "a.png", numbered_frame(0, (8, 8)))])
    assert open_source(src) is src


def test_synthetic_ground_truth_is_made_on_first_use():
    from segrt.runtime.synthetic import SyntheticConfig, SyntheticScene

    with open_source("synthetic://?size=1920x1080&frames=3&seed=4") as src:
        frames = list(src)
    scene = SyntheticScene(SyntheticConfig(width=1920, height=1080, frames=3, seed=4))
    for f in frames:
        assert f.has_label
        image, label = scene.render(f.index)
        np.testing.assert_array_equal(f.image, image)
        assert f.label.shape == (1080, 1920)
        np.testing.assert_array_equal(f.label, label)
        assert f.label is f.label  # made once, then kept


# ------------------------------------------------------------------ http(s): a video file is a file
@pytest.fixture()
def http_folder(tmp_path):
    """A local HTTP server for ``tmp_path``; yields its base URL."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_video_file_over_http_is_a_finite_file_source(tmp_path, http_folder):
    write_video(tmp_path / "clip.avi", 9, size=(160, 120), fps=10)
    src = open_source(f"{http_folder}/clip.avi")
    assert isinstance(src, VideoFileSource) and not src.is_live
    with src:
        got = [frame_number(f.image) for f in src]
    assert got == list(range(9))  # every frame once, then the end: not replayed as a live stream


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9/video.mjpg", "https://cam.example/stream", "rtsp://h/x.mp4"])
def test_streams_over_the_network_stay_live(uri):
    assert open_source(uri).is_live
