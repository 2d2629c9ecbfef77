"""``segrt build`` on a machine without TensorRT: one line naming what to install, exit 2;
and the TensorRT backend itself on a GPU (marked ``gpu``, skipped here with the reason)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from segrt.tools.cli import build_parser, main
from segrt.tools.tiny_model import mask_agreement_with_ties, tiny_bundle

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def test_build_parser_takes_every_documented_flag():
    args = build_parser().parse_args(
        ["build", "B", "--precision", "int8", "--legacy-calibrator", "--calibrator", "minmax", "--calib",
         "synthetic://", "--workspace", "2", "--dla-core", "1", "--timing-cache", "t.cache", "--opt-level", "5",
         "--version-compatible", "--hardware-compat", "same-cc"])
    assert (args.precision, args.legacy, args.calibrator, args.calib, args.workspace, args.dla_core,
            args.timing_cache, args.opt_level, args.version_compatible, args.hardware_compat) == (
        "int8", True, "minmax", "synthetic://", 2.0, 1, "t.cache", 5, True, "same-cc")


@pytest.mark.skipif(HAVE_TRT, reason="this machine has TensorRT")
def test_build_without_tensorrt_is_one_line_with_the_install_hint(tmp_path, capsys):
    b = tiny_bundle(tmp_path / "tiny", 16, 24)
    rc = main(["build", str(b.path), "--precision", "fp16"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("segrt build: error: TensorRT") and "pip install tensorrt" in err
    assert not list(b.path.glob("*.engine"))  # nothing half-written


def test_build_cli_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "segrt.tools.cli", "build", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="needs TensorRT and an NVIDIA GPU (not on this machine)")
def test_tensorrt_engine_matches_the_reference_on_a_gpu(tmp_path):  # pragma: no cover - GPU only
    from segrt.export.engine_from_onnx import build_bundle_engine
    from segrt.runtime.backends.tensorrt import TensorRTBackend

    b = tiny_bundle(tmp_path / "tiny", 32, 48)
    rec = build_bundle_engine(b, precision="fp32")
    assert rec.layer_precisions.get("layers", 0) > 0
    assert rec.build_options["tf32"] is False and rec.build_options["cpu_arch"]  # fp32 means FP32
    frame = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    for graph in (False, True):
        with TensorRTBackend(b.path / rec.path, cuda_graph=graph) as be:
            for _ in range(3):  # third call replays the captured graph
                assert mask_agreement_with_ties(be.infer(frame)["mask"], frame) == 1.0  # exact ties may differ
            assert be.last_times.compute_ms > 0
