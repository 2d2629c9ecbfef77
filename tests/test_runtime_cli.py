"""``segrt run``: the summary table, one-line errors, and Ctrl-C/SIGTERM finalising a recording."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from segrt.tools.cli import main
from segrt.tools.tiny_model import tiny_bundle

from _runtime_helpers import count_video_frames


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("cli"), 48, 64, fused=True)


def test_run_prints_the_summary(bundle, tmp_path, capsys):
    rc = main(["run", str(bundle.path), "--source", "synthetic://?size=160x96&frames=40", "--sink",
               str(tmp_path / "out.mp4"), "--max-frames", "8", "--view", "side-by-side", "--alpha", "0.3",
               "--threads", "1", "--no-legend", "--shares"])
    out = capsys.readouterr().out
    assert rc == 0
    assert re.search(r"^frames 8 +fps [\d.]+", out, re.M)
    assert re.search(r"^infer +[\d.]+ +[\d.]+ +[\d.]+", out, re.M)
    assert count_video_frames(tmp_path / "out.mp4") == 8


@pytest.mark.parametrize("args,match", [
    (["--source", "/no/such/video.mp4"], "no such file"),
    (["--source", "/dev/video9"], "no camera at /dev/video9"),
    (["--source", "synthetic://?frames=2", "--sink", "display://"], "display://"),
    (["--source", "synthetic://?frames=2", "--sink", "out.xyz"], "cannot tell"),
    (["--source", "synthetic://?frames=2", "--alpha", "3"], "alpha"),
])
def test_errors_are_one_line_and_exit_2(bundle, capsys, args, match):
    rc = main(["run", str(bundle.path)] + args)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("segrt run: error: ") and match in err and "\n" not in err


def test_missing_bundle(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope"), "--source", "synthetic://"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_recording_finalises_the_video(bundle, tmp_path, sig):
    out = tmp_path / "rec.mp4"
    cmd = [sys.executable, "-m", "segrt.tools.cli", "run", str(bundle.path), "--source",
           "synthetic://?size=320x180&fps=30&frames=100000", "--sink", str(out), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the recording is under way: the hidden temporary file is growing.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list(tmp_path.glob(".rec.*.part.mp4"))
            if parts and parts[0].stat().st_size > 50_000:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("the recording never started")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted; output finalised" in stdout
    frames = int(re.search(r"^frames (\d+)", stdout, re.M).group(1))
    assert frames > 5
    assert out.exists() and not list(tmp_path.glob(".rec.*"))
    # The file plays and holds every processed frame.
    assert count_video_frames(out) == frames
