"""Decoder noise and damage: FFmpeg/OpenCV stay quiet by default and speak with ``-v``; the summary says
what the corrupt count covers and what damage it cannot see."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from segrt.runtime.sources import open_source
from segrt.tools.tiny_model import tiny_bundle

NATIVE_LINE = re.compile(r"^\[(?:[\w-]+ @ 0x[0-9a-f]+|\s*WARN:|\s*INFO:|ERROR:|OPENCV:FFMPEG)", re.M)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """An MS-MPEG4 .avi with bytes overwritten through its middle: it decodes, with hundreds of FFmpeg errors."""
    root = tmp_path_factory.mktemp("damaged")
    path = root / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MP42"), 25, (160, 120))
    rng = np.random.default_rng(0)
    for i in range(60):
        img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        cv2.circle(img, (i * 2, 60), 20, (0, 255, 0), -1)
        w.write(img)
    w.release()
    data = bytearray(path.read_bytes())
    for off in range(len(data) // 3, 2 * len(data) // 3, 997):
        data[off:off + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    bad = root / "bad.avi"
    bad.write_bytes(bytes(data))
    return tiny_bundle(root / "bundle", 48, 64, fused=True), bad


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-m", "segrt.tools.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_damaged_video_is_quiet_by_default_and_noisy_with_v(damaged):
    bundle, bad = damaged
    quiet = _run(["run", str(bundle.path), "--source", str(bad)])
    assert quiet.returncode == 0, quiet.stderr
    assert not NATIVE_LINE.search(quiet.stderr) and not NATIVE_LINE.search(quiet.stdout), quiet.stderr[:2000]
    assert len(quiet.stderr.splitlines()) <= 3  # segrt's own warnings only
    loud = _run(["-v", "run", str(bundle.path), "--source", str(bad)])
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert len(re.findall(r"^\[msmpeg4\w* @ 0x", loud.stderr, re.M)) > 10  # the decoder's own messages
    assert not NATIVE_LINE.search(loud.stdout)  # never mixed into the summary on stdout


def test_unopenable_stream_error_is_the_only_line(tmp_path):
    bundle = tiny_bundle(tmp_path / "bundle", 48, 64, fused=True)
    proc = _run(["run", str(bundle.path), "--source", "rtsp://127.0.0.1:9/x"])  # port 9: discard, closed here
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("segrt run: error: cannot open")


def test_summary_says_what_damage_is_counted_and_what_is_not(damaged):
    bundle, bad = damaged
    out = _run(["run", str(bundle.path), "--source", str(bad)]).stdout
    corrupt = int(re.search(r"corrupt (\d+)", out).group(1))
    frames = int(re.search(r"^frames (\d+)", out, re.M).group(1))
    assert frames + corrupt == 60
    m = re.search(r"^damage +corrupt = (\d+) unreadable \+ (\d+) wrong-size frames; (\d+) frames missing from the "
                  r"timeline", out, re.M)
    assert m and int(m.group(1)) + int(m.group(2)) == corrupt
    assert "Not detectable: damage the decoder conceals" in out


def _chunks(data: bytes, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        yield data[pos:pos + 4], data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)


def _riff_chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def avi_with_dropped_frames(avi: bytes, drop: set[int]) -> bytes:
    """The AVI with video chunks ``drop`` emptied: AVI's own "dropped frame" (a recorder that fell behind).

    The movi list and idx1 index are rewritten; the header still announces every frame.
    """
    assert avi[:4] == b"RIFF" and avi[8:12] == b"AVI "
    top, index = [], []
    for cid, body in _chunks(avi, 12, len(avi)):
        if cid == b"LIST" and body[:4] == b"movi":
            parts, k, offset = [b"movi"], 0, 4
            for cid2, data in _chunks(body, 4, len(body)):
                if cid2[2:] in (b"dc", b"db"):
                    data = b"" if k in drop else data
                    index.append(struct.pack("<4sIII", cid2, 0x10 if data else 0, offset, len(data)))
                    k += 1
                parts.append(_riff_chunk(cid2, data))
                offset += len(parts[-1])
            body = b"".join(parts)
        elif cid == b"idx1":
            body = b"".join(index)
        top.append(_riff_chunk(cid, body))
    return _riff_chunk(b"RIFF", b"AVI " + b"".join(top))


def test_frames_missing_from_the_timeline_are_counted_and_indices_keep_their_place(tmp_path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        w.write(np.full((48, 64, 3), i * 12, np.uint8))
    w.release()
    gappy = tmp_path / "gappy.avi"
    gappy.write_bytes(avi_with_dropped_frames(path.read_bytes(), {5, 6, 7}))
    with open_source(gappy) as src:
        assert src.frame_count == 20
        frames = list(src)
    kept = [i for i in range(20) if i not in (5, 6, 7)]
    assert [f.index for f in frames] == kept
    assert [round(int(f.image[0, 0, 0]) / 12) for f in frames] == kept  # each frame is the one its index says
    assert src.timeline_gaps == 3 and src.corrupt_frames == 0
    assert "3 frames missing from the timeline" in src.damage_note()
    with open_source(path) as src:
        assert len(list(src)) == 20 and src.timeline_gaps == 0
