"""What `segrt quantize` prints: one line per fact, progress fit for where it goes, hints fit for the precision."""
from __future__ import annotations

import io
import subprocess
import sys

import onnx
from onnx import numpy_helper

from _calib_helpers import colour_bundle, colour_manifest, colour_net_onnx, synthetic
from segrt.calibration.progress import progress_bar
from segrt.runtime.bundle import Bundle
from segrt.tools.cli import main


def _tiny_weights_bundle(path):
    """The colour net with 40 weights below FP16's smallest subnormal (they become 0 in FP16)."""
    model = colour_net_onnx(48, 64)
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4
                and numpy_helper.to_array(i).shape[0] == 8 and numpy_helper.to_array(i).shape[1] == 8)
    w = numpy_helper.to_array(init).copy()
    w.reshape(-1)[:40] = 1e-9
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.checker.check_model(model)
    bundle = Bundle.create(path, colour_manifest(48, 64))
    bundle.save_onnx("fp32", model)
    return bundle


def _segrt(*args, log=None):
    """The CLI in a subprocess, as a user runs it: logging configured, stdout+stderr into ``log``."""
    cmd = [sys.executable, "-m", "segrt.tools.cli", *map(str, args)]
    if log is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    with open(log, "w") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=600)


def test_fp16_prints_flushed_weights_once_and_no_zero_counts(tmp_path):
    bundle = _tiny_weights_bundle(tmp_path / "tiny_w")
    # an unreachable gate makes the fallback build the FP16 model once per candidate layer
    proc = _segrt("quantize", bundle.path, "--precision", "fp16", "--eval", synthetic(160, 120, 40, 5),
                  "--eval-frames", "12", "--gate", "100", "--no-gate", "--allow-small-eval", "--max-fallback", "1",
                  "--no-progress")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert text.count("became 0") == 1, text
    assert "40 weight values below FP16's smallest subnormal became 0" in text
    assert "clamped" not in text  # "0 weights clamped" is not news


def test_fp16_gate_failure_suggests_fp16_options_only(tmp_path, capsys):
    bundle = colour_bundle(tmp_path / "c", 48, 64)
    rc = main(["quantize", str(bundle.path), "--precision", "fp16", "--eval", synthetic(160, 120, 40, 5),
               "--eval-frames", "12", "--gate", "100", "--max-fallback", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "below the gate" in err
    assert "--method" not in err and "--calib" not in err
    assert "--max-fallback" in err and "--no-gate" in err


def test_progress_is_one_line_per_update_off_a_tty():
    stream = io.StringIO()  # not a TTY, like a log file
    bar = progress_bar(5, "calibrating (minmax)", True, stream=stream, min_interval_s=0.0)
    for _ in range(5):
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines and all(len(line) < 80 for line in lines)
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert lines[-1] == "calibrating (minmax): 5/5"


def test_cli_log_file_has_no_progress_bars(tmp_path):
    bundle = colour_bundle(tmp_path / "c", 48, 64)
    log = tmp_path / "quantize.log"
    proc = _segrt("quantize", bundle.path, "--precision", "int8", "--calib", synthetic(160, 120, 200, 1),
                  "--calib-frames", "30", "--eval-frames", "12", "--gate", "90", log=log)
    raw = log.read_bytes()  # bytes: read_text would turn a bar's carriage returns into newlines
    assert proc.returncode == 0, raw.decode()
    assert b"\r" not in raw and max(len(line) for line in raw.split(b"\n")) < 300
    assert b"calibrating (minmax):" in raw  # progress is still there, as plain lines


def test_progress_bar_is_silent_when_disabled():
    stream = io.StringIO()
    bar = progress_bar(3, "x", False, stream=stream)
    bar.update()
    bar.close()
    assert stream.getvalue() == "" and bar.n == 1
