"""Credentials never leave the process: real commands on URIs with a password and a token.

``segrt run`` and ``segrt quantize --calib`` are run as subprocesses (with and without ``-v``)
on an HTTP video served here, and on an RTSP URL whose port is closed; every byte of their
stdout/stderr, of a ``--log``-style file and of every file they wrote is searched for the
secrets. The unit tests pin down what :func:`redact` masks and what it leaves alone.
"""
from __future__ import annotations

import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrt.errors import SourceError
from segrt.runtime.redact import redact
from segrt.tools.tiny_model import tiny_bundle

PASSWORD = "s3cr3tPa55"
TOKEN = "t0kenV4lue"
SECRETS = (PASSWORD.encode(), TOKEN.encode())


@pytest.mark.parametrize("raw,shown", [
    ("rtsp://user:pw1@cam.local:554/stream", "rtsp://user:***@cam.local:554/stream"),
    ("cannot open http://admin:p@ss@10.0.0.2/v.mp4 (hint)", "cannot open http://admin:***@10.0.0.2/v.mp4 (hint)"),
    ("https://ghp_abcdef@github.com/x.onnx", "https://***@github.com/x.onnx"),
    ("http://h/v.mp4?size=3&token=abc&access_token=d&password=e&api_key=f&X-Amz-Signature=g",
     "http://h/v.mp4?size=3&token=***&access_token=***&password=***&api_key=***&X-Amz-Signature=***"),
    ("gst://rtspsrc location=rtsp://a:b@c/x user-id=me user-pw=pw ! appsink",
     "gst://rtspsrc location=rtsp://a:***@c/x user-id=me user-pw=*** ! appsink"),
])
def test_redact_masks_passwords_and_tokens(raw, shown):
    assert redact(raw) == shown
    assert redact(shown) == shown  # idempotent


@pytest.mark.parametrize("text", [
    "synthetic://?size=64x48&fps=30&frames=10&seed=3&live=1",
    "rtsp://cam.local:554/stream", "mail me at a@b.com", "/data/videos/run@2x.mp4", "monkey=1 keyframes=2",
])
def test_redact_leaves_everything_else_alone(text):
    assert redact(text) == text


def test_errors_carry_redacted_text():
    err = SourceError(f"cannot open rtsp://u:{PASSWORD}@h/x", hint=f"or http://h/?token={TOKEN}")
    for text in (str(err), err.message, err.hint, repr(err), repr(err.args)):
        assert PASSWORD not in text and TOKEN not in text


# -- real commands ------------------------------------------------------------------------------

def _write_video(path: Path, n: int = 60) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 60, (64, 96, 3), dtype=np.uint8)
        cv2.rectangle(img, (i % 80, 10), (i % 80 + 15, 40), (40, 200, 220), -1)
        w.write(img)
    w.release()


@pytest.fixture(scope="module")
def http_video(tmp_path_factory):
    """An HTTP server on 127.0.0.1 serving ``v.avi``; yields its port."""
    root = tmp_path_factory.mktemp("www")
    _write_video(root / "v.avi")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _segrt(args: list[str], cwd: Path, log: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "segrt.tools.cli", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=300)
    with open(log, "ab") as f:  # everything a user would see or pipe into a log
        f.write(f"$ segrt {' '.join(a for a in args if '://' not in a)}\n".encode() + proc.stdout + proc.stderr)
    return proc


def _files_with_secrets(root: Path) -> list[str]:
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file()
            and any(s in p.read_bytes() for s in SECRETS)]


def test_no_secret_in_any_output_log_or_file(http_video, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    bundle = tiny_bundle(work / "bundle", 48, 64, fused=True)
    log = work / "segrt.log"
    video_url = f"http://viewer:{PASSWORD}@127.0.0.1:{http_video}/v.avi?token={TOKEN}"
    dead_rtsp = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{_closed_port()}/x?token={TOKEN}"
    dead_http = f"http://viewer:{PASSWORD}@127.0.0.1:{_closed_port()}/v.mp4"
    runs = []
    for verbose in ([], ["-v"]):
        runs.append((_segrt([*verbose, "run", str(bundle.path), "--source", video_url, "--max-frames", "12",
                             "--sink", str(work / f"out{len(verbose)}.avi")], work, log), 0))
        for dead in (dead_rtsp, dead_http):
            runs.append((_segrt([*verbose, "run", str(bundle.path), "--source", dead, "--max-frames", "3"],
                                work, log), 2))
            runs.append((_segrt([*verbose, "quantize", str(bundle.path), "--precision", "int8", "--calib", dead,
                                 "--calib-frames", "4", "--no-progress"], work, log), 2))
    runs.append((_segrt(["-v", "quantize", str(bundle.path), "--precision", "int8", "--calib", video_url,
                         "--calib-frames", "16", "--eval-frames", "16", "--no-gate", "--no-progress"],
                        work, log), 0))
    for proc, rc in runs:
        assert proc.returncode == rc, (proc.args, proc.stdout[-2000:], proc.stderr[-2000:])
    text = log.read_bytes()
    assert text.count(b"segrt run: error: cannot open") >= 4  # the error paths really ran
    assert b"viewer:***@127.0.0.1" in text and b"token=***" in text
    assert b"Traceback" in text  # -v tracebacks are part of what was searched
    manifest = (bundle.path / "segrt.json").read_text()
    assert '"calibration"' in manifest and "viewer:***@" in manifest  # the provenance is there, redacted
    assert _files_with_secrets(tmp_path) == []
