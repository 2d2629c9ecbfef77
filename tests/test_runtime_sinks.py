"""Sinks: video (temp name, finalised on close, every frame), folder, image file, null, display errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrt.errors import SinkError
from segrt.runtime.sinks import (DisplaySink, ImageFileSink, ImageFolderSink, NullSink, VideoSink, open_sink,
                                 opencv_has_gui)

from _runtime_helpers import count_video_frames, frame_number, numbered_frame


@pytest.mark.parametrize("name", ["out.mp4", "out.avi", "sub/dir/out.mkv"])
def test_video_sink_writes_every_frame_at_the_fps(tmp_path, name):
    target = tmp_path / name
    sink = open_sink(str(target), fps=15, size=(160, 120))
    assert isinstance(sink, VideoSink)
    with sink:
        for i in range(9):
            sink.write(numbered_frame(i))
            if i == 0:
                # While recording, only a hidden temporary file exists.
                assert not target.exists()
                assert len(list(target.parent.glob(".out.*"))) == 1
    assert target.exists() and not list(target.parent.glob(".out.*"))
    cap = cv2.VideoCapture(str(target))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(15, abs=0.01)
    nums = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        nums.append(frame_number(img))
    assert nums == list(range(9))
    assert sink.frames_written == 9


def test_video_sink_finalises_when_the_writer_errors_midway(tmp_path):
    target = tmp_path / "out.avi"
    sink = open_sink(target, fps=10)
    with pytest.raises(SinkError, match="frame size changed"):
        with sink:
            for i in range(4):
                sink.write(numbered_frame(i))
            sink.write(numbered_frame(4, (80, 60)))
    assert count_video_frames(target) == 4  # what was recorded is kept and playable


def test_video_sink_without_frames_leaves_nothing(tmp_path):
    with open_sink(tmp_path / "out.mp4", fps=10):
        pass
    assert list(tmp_path.iterdir()) == []


def test_folder_sink(tmp_path):
    for uri in (str(tmp_path / "a") + "/", f"folder://{tmp_path / 'b'}?ext=jpg", str(tmp_path / "c" / "f_%03d.png")):
        sink = open_sink(uri)
        assert isinstance(sink, ImageFolderSink)
        with sink:
            for i in range(3):
                sink.write(numbered_frame(i, (64, 48)))
        files = sorted(p for p in sink.folder.iterdir())
        assert len(files) == 3 and not any(p.name.startswith(".") for p in files)
        assert [frame_number(cv2.imread(str(p))) for p in files] == [0, 1, 2]
    assert (tmp_path / "c" / "f_002.png").exists() and (tmp_path / "b" / "frame_000000.jpg").exists()


def test_image_file_sink_keeps_the_last_frame(tmp_path):
    sink = open_sink(tmp_path / "last.png")
    assert isinstance(sink, ImageFileSink)
    with sink:
        for i in range(3):
            sink.write(numbered_frame(i, (64, 48)))
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "last.png")), numbered_frame(2, (64, 48)))


def test_null_sink_counts():
    sink = open_sink("null://")
    assert isinstance(sink, NullSink) and isinstance(open_sink(None), NullSink)
    with sink:
        sink.write(numbered_frame(0))
    assert sink.frames_written == 1


@pytest.mark.skipif(opencv_has_gui(), reason="this OpenCV has highgui; the headless error path cannot occur")
def test_display_on_headless_opencv_says_so():
    sink = open_sink("display://")
    assert isinstance(sink, DisplaySink)
    with pytest.raises(SinkError, match="headless build.*GUI: NONE") as ei:
        sink.open()
    assert "opencv-python" in str(ei.value) and "\n" not in str(ei.value)


def test_display_without_a_display_says_so(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="display://"):
        open_sink("display://").open()


@pytest.mark.parametrize("uri,match", [("tcp://host", "unknown sink scheme"), ("out.xyz", "cannot tell"),
                                       ("", "empty")])
def test_bad_sink_uris(uri, match):
    with pytest.raises(SinkError, match=match):
        open_sink(uri)


def test_sink_rejects_non_images(tmp_path):
    with open_sink("null://") as sink:
        with pytest.raises(SinkError, match="HxWx3 uint8"):
            sink.write(np.zeros((4, 4), np.float32))


def test_video_sink_refuses_a_write_after_close(tmp_path):
    """A late write must not start a second temporary file beside the finished video."""
    out = tmp_path / "v.avi"
    sink = open_sink(str(out), fps=10.0, size=(64, 48))
    frame = np.zeros((48, 64, 3), np.uint8)
    with sink:
        sink.write(frame)
    assert out.is_file()
    with pytest.raises(SinkError, match="after close"):
        sink.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.avi"]
