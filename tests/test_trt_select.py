"""Backend selection around TensorRT on a machine without it: auto falls back with the reason,
tensorrt raises with the install hint, and the engine decision reads the manifest and files."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from segrt.errors import BackendUnavailableError
from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segrt.runtime.backends.select import backend_for_bundle, decide_engine, probe_machine
from segrt.runtime.fsutil import sha256_file
from segrt.runtime.provenance import FALLBACK, OK, REBUILD, MachineInfo, make_record
from segrt.runtime.trt_api import jetson_model, l4t_release, tensorrt_install_hint
from segrt.tools.tiny_model import reference_mask, tiny_bundle

NO_TRT = importlib.util.find_spec("tensorrt") is None


@pytest.fixture()
def bundle(tmp_path):
    return tiny_bundle(tmp_path / "tiny", 16, 24)


def _with_engine(bundle, *, trt="10.16.1.11", gpu="NVIDIA GeForce RTX 4090", cc=(8, 9), data=b"plan"):
    name = f"model.fp32.x.trt{trt}.engine"
    (bundle.path / name).write_bytes(data)
    rec = make_record(precision="fp32", path=name, sha256=sha256_file(bundle.path / name), trt_version=trt,
                      gpu_name=gpu, compute_capability=cc, onnx_sha256=bundle.manifest.artifacts["fp32"].sha256,
                      build_options={"onnx": "fp32"})
    bundle.update(bundle.manifest.with_engine(rec))
    return rec


@pytest.mark.skipif(not NO_TRT, reason="this machine has TensorRT")
def test_tensorrt_backend_unavailable_says_what_to_install(bundle):
    with pytest.raises(BackendUnavailableError) as e:
        backend_for_bundle(bundle, backend="tensorrt")
    msg = str(e.value)
    assert "TensorRT" in msg and "not installed" in msg
    assert ("pip install tensorrt" in msg) or ("nvidia-jetpack" in msg)


@pytest.mark.skipif(not NO_TRT, reason="this machine has TensorRT")
def test_auto_falls_back_to_onnxruntime_and_still_computes(bundle):
    _with_engine(bundle)
    be = backend_for_bundle(bundle, backend="auto")
    assert isinstance(be, OnnxRuntimeBackend)
    frame = np.random.default_rng(1).integers(0, 256, (1, 16, 24, 3), dtype=np.uint8)
    with be:
        np.testing.assert_array_equal(be.infer(frame)["mask"], reference_mask(frame))


def test_auto_without_engine_says_how_to_build_one(bundle):
    msgs: list[str] = []
    machine, why = probe_machine()
    be = backend_for_bundle(bundle, backend="auto", echo=msgs.append)
    assert isinstance(be, OnnxRuntimeBackend)
    if not why:  # only printed where TensorRT could have run
        assert any("segrt build" in m for m in msgs)


def test_probe_reports_why_tensorrt_cannot_run_here():
    machine, why = probe_machine()
    if NO_TRT:
        assert machine.trt_version is None and "not installed" in why


def test_decide_engine_reads_records_and_files(bundle):
    here = MachineInfo("10.16.1.11", "NVIDIA GeForce RTX 4090", (8, 9))
    rec, d = decide_engine(bundle, "fp32", here)
    assert rec is None and d.action == REBUILD and "no fp32 TensorRT engine" in d.reason
    assert decide_engine(bundle, "fp32", MachineInfo(None, None, None))[1].action == FALLBACK
    rec = _with_engine(bundle)
    got, d = decide_engine(bundle, "fp32", here)
    assert got == rec and d.action == OK
    (bundle.path / rec.path).write_bytes(b"tampered")
    assert "checksum" in decide_engine(bundle, "fp32", here)[1].reason
    (bundle.path / rec.path).unlink()
    assert "missing" in decide_engine(bundle, "fp32", here)[1].reason
    orin = MachineInfo("10.3.0", "Orin", (8, 7))
    assert decide_engine(bundle, "fp32", orin)[1].action == REBUILD


def test_decide_engine_prefers_the_engine_built_here(bundle):
    _with_engine(bundle, trt="10.3.0", gpu="Orin", cc=(8, 7), data=b"orin")
    here_rec = _with_engine(bundle, data=b"desktop")
    got, d = decide_engine(bundle, "fp32", MachineInfo("10.16.1.11", "NVIDIA GeForce RTX 4090", (8, 9)))
    assert got == here_rec and d.action == OK


def test_jetson_detection_and_hints(tmp_path):
    rel = tmp_path / "nv_tegra_release"
    model = tmp_path / "model"
    assert jetson_model(rel, model) is None
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    assert jetson_model(rel, model) == "NVIDIA Jetson AGX Orin Developer Kit"
    assert l4t_release(rel) == "36.4"
    model.write_bytes(b"Raspberry Pi 5 Model B\x00")
    rel.unlink()
    assert jetson_model(rel, model) is None
    assert "nvidia-jetpack" in tensorrt_install_hint("Jetson") and "--system-site-packages" in tensorrt_install_hint("J")
    assert "pip install tensorrt" in tensorrt_install_hint(None)
    for where in (None, "Jetson"):  # PyCUDA runs engines; cuda-python alone only captures graphs
        assert "pycuda (required to run), cuda-python (for --cuda-graph)" in tensorrt_install_hint(where)


def test_runtime_imports_without_tensorrt_or_pycuda():
    import subprocess
    import sys

    code = ("import sys\n"
            "class B:\n"
            "    def find_spec(self, n, p=None, t=None):\n"
            "        if n.split('.')[0] in ('tensorrt', 'pycuda', 'torch'): raise ImportError('blocked ' + n)\n"
            "sys.meta_path.insert(0, B())\n"
            "import segrt.runtime.backends.tensorrt, segrt.runtime.backends.select, segrt.runtime.provenance\n"
            "import segrt.runtime.cuda_pycuda, segrt.runtime.trt_buffers, segrt.export.engine_from_onnx\n"
            "import segrt.calibration.trt_legacy\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

