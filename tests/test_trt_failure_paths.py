"""The GPU path's failure decisions, run here on the real modules (no TensorRT, PyCUDA or driver):
cuda-python without a driver, a CUDA-graph capture that fails, cuda-python checked at open(),
``auto`` falling back when ``open()`` fails, rebuild options, the lazy builder lookup, one logger."""
from __future__ import annotations

import ast
import importlib.util
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from segrt.errors import BackendUnavailableError, EngineError
from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segrt.runtime.backends.tensorrt import TensorRTBackend
from segrt.runtime.provenance import MachineInfo
from segrt.tools.tiny_model import tiny_bundle

from _trt_helpers import REPO, package_files

HAS_GPU_NODE = os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl-gpu")
HAS_PYCUDA = importlib.util.find_spec("pycuda") is not None


@pytest.fixture()
def cudart():
    return pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda.bindings) not installed")


@pytest.fixture()
def bundle(tmp_path):
    return tiny_bundle(tmp_path / "tiny", 16, 24)


def test_cuda_python_12_raising_without_a_driver_means_no_gpu(cudart, monkeypatch, bundle):
    """cuda-python 12.x raises RuntimeError (dlopen libcuda) where 13.x returns an error code."""
    from segrt.runtime import cuda_cudart
    from segrt.runtime.backends.select import backend_for_bundle, probe_machine

    def no_libcuda(*args):
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    monkeypatch.setattr(cudart, "cudaGetDeviceCount", no_libcuda)
    monkeypatch.setattr(cudart, "cudaGetDeviceProperties", no_libcuda)
    assert cuda_cudart.device_count() == 0
    with pytest.raises(BackendUnavailableError, match="CUDA driver unavailable"):
        cuda_cudart.device_info(0)
    machine, why = probe_machine()  # must not raise
    assert machine.gpu_name is None and why
    assert isinstance(backend_for_bundle(bundle, backend="auto"), OnnxRuntimeBackend)


def test_failed_capture_is_cleared_logged_and_gives_no_graph(cudart, caplog):
    """Capture on the legacy default stream (handle 0) is refused by CUDA on every machine (and here
    there is no driver at all): the caller gets None and one warning, and the work is never captured."""
    from segrt.runtime.cuda_cudart import capture_or_none

    calls = []
    with caplog.at_level(logging.WARNING, logger="segrt.cuda"):
        graph = capture_or_none(0, lambda: calls.append(1) or True, "model.engine")
    assert graph is None and calls == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "running without a CUDA graph" in warnings[0]
    assert "cudaStreamBeginCapture failed: cudaError" in warnings[0]


@pytest.mark.skipif(HAS_GPU_NODE or HAS_PYCUDA, reason="needs a machine without PyCUDA and without a GPU")
def test_build_device_without_pycuda_uses_cuda_set_device(cudart):
    from segrt.export.trt_machine import on_device

    with pytest.raises(BackendUnavailableError, match="cannot select CUDA device 1: cudaSetDevice"):
        with on_device(1):
            pass


def test_cuda_graph_asks_for_cuda_python_at_open_not_on_the_second_frame(tmp_path, monkeypatch):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # cuda-python not installed
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    with pytest.raises(BackendUnavailableError, match="cuda-python is not installed"):
        TensorRTBackend(engine, cuda_graph=True).open()
    if importlib.util.find_spec("tensorrt") is None:  # without the graph, what is missing is TensorRT
        with pytest.raises(BackendUnavailableError, match="TensorRT"):
            TensorRTBackend(engine, cuda_graph=False).open()


@pytest.mark.parametrize("engine_kind", ["missing", "present"])
def test_auto_falls_back_when_the_tensorrt_backend_fails_to_open(bundle, monkeypatch, engine_kind):
    """auto opens TensorRT before handing it over: a real TensorRTBackend whose open() fails (here: no
    engine file, or no TensorRT to deserialize with) ends in ONNX Runtime, saying why."""
    from segrt.runtime.backends import select
    from segrt.tools.tiny_model import reference_mask

    path = bundle.path / "model.fp32.x.engine"
    if engine_kind == "present":
        path.write_bytes(b"plan")
    monkeypatch.setattr(select, "probe_machine",
                        lambda device=0: (MachineInfo("10.3.0", "Orin", (8, 7), cpu_arch="aarch64"), ""))
    monkeypatch.setattr(select, "_tensorrt_backend", lambda *a, **k: TensorRTBackend(path))
    bundle.update(bundle.manifest.with_engine(_record(bundle, path)))
    msgs: list[str] = []
    be = select.backend_for_bundle(bundle, backend="auto", echo=msgs.append)
    assert isinstance(be, OnnxRuntimeBackend)
    assert any("falling back to ONNX Runtime" in m for m in msgs)
    assert any(("does not exist" in m) if engine_kind == "missing" else ("TensorRT" in m) for m in msgs)
    frame = np.zeros((1, 16, 24, 3), np.uint8)
    with be:
        assert (be.infer(frame)["mask"] == reference_mask(frame)).all()


def _record(bundle, path):
    from segrt.runtime.provenance import make_record

    return make_record(precision="fp32", path=path.name, sha256="0" * 64, trt_version="10.3.0", gpu_name="Orin",
                       compute_capability=(8, 7), onnx_sha256=bundle.manifest.artifacts["fp32"].sha256)


def test_rebuild_keeps_every_recorded_build_option():
    from segrt.export.trt_plan import BuildRequest, plan_build
    from segrt.runtime.backends.select import rebuild_arguments
    from segrt.runtime.manifest import InputSpec

    inp = InputSpec(name="frame", height=64, width=96)
    plan = plan_build(BuildRequest(trt_version=(10, 3, 0), precision="int8", input=inp, legacy=True,
                                   calibrator="minmax", workspace_gib=1.5, opt_level=5, hardware_compat="ampere+"))
    options = {**plan.options(), "timing_cache": "/b/timing.cache", "calibration_source": "frames/",
               "cpu_arch": "x86_64", "jetson_model": None, "dla_cores": 0}
    assert rebuild_arguments(options) == {
        "legacy": True, "calibrator": "minmax", "calib_source": "frames/", "dla_core": None, "opt_level": 5,
        "version_compatible": False, "hardware_compat": "ampere+", "timing_cache": "/b/timing.cache",
        "workspace_gib": 1.5}
    dla = plan_build(BuildRequest(trt_version=(10, 3, 0), precision="fp16", input=inp, dla_core=1)).options()
    args = rebuild_arguments(dla)
    assert args["dla_core"] == 1 and args["legacy"] is False  # DLA on 10.x is weak without --legacy-calibrator
    old = {"path": "legacy_calibrator", "device": "GPU", "calibrator": None}  # written before "legacy" existed
    assert rebuild_arguments(old)["legacy"] is True
    with pytest.raises(EngineError, match=r"\['sparsity'\]"):
        rebuild_arguments({**options, "sparsity": True})


def test_engine_builder_is_found_without_importing_export_first():
    code = ("import sys\n"
            "from segrt.runtime.backends import select\n"
            "assert 'segrt.export.engine_from_onnx' not in sys.modules\n"
            "b = select.engine_builder()\n"
            "print(b.__module__, b.__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["segrt.export.engine_from_onnx", "build_bundle_engine"]


def test_one_process_wide_tensorrt_logger():
    """init_libnvinfer_plugins keeps the raw logger pointer: only process_logger() may create a trt.Logger."""
    creators = []
    for p in package_files():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.FunctionDef):
                for call in ast.walk(node):
                    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                            and call.func.attr in ("Logger", "init_libnvinfer_plugins")):
                        creators.append(f"{p.relative_to(REPO)}:{node.name}")
    assert creators and set(creators) == {"runtime/backends/tensorrt.py:process_logger"}, creators


def test_tensorrt_fails_with_the_reason_and_a_rebuild_passes_every_recorded_option(bundle, monkeypatch):
    """A stale legacy-calibrated engine: ``tensorrt`` refuses with the reason (README), ``rebuild=True``
    and ``auto`` hand the builder every recorded option. The builder is substituted through the
    public registration hook (the real one needs a GPU); the rest is the real selection code."""
    from segrt.export.trt_plan import BuildRequest, plan_build
    from segrt.runtime.backends import select
    from segrt.runtime.fsutil import sha256_file
    from segrt.runtime.provenance import make_record

    monkeypatch.setattr(select, "import_tensorrt", lambda: None)  # as if TensorRT were installed
    monkeypatch.setattr(select, "probe_machine", lambda device=0: (MachineInfo("10.3.0", "Orin", (8, 7)), ""))
    plan = plan_build(BuildRequest(trt_version=(10, 2, 0), precision="fp16", input=bundle.manifest.input,
                                   legacy=True, opt_level=4, workspace_gib=0.5))
    stale = bundle.path / "model.fp16.orin-sm87.trt10.2.0.engine"
    stale.write_bytes(b"old plan")
    bundle.update(bundle.manifest.with_engine(make_record(
        precision="fp16", path=stale.name, sha256=sha256_file(stale), trt_version="10.2.0", gpu_name="Orin",
        compute_capability=(8, 7), onnx_sha256=bundle.manifest.artifacts["fp32"].sha256,
        build_options={**plan.options(), "timing_cache": "t.cache"})))

    with pytest.raises(EngineError, match="TensorRT 10.2.0, this is 10.3.0") as e:
        select.backend_for_bundle(bundle, backend="tensorrt", precision="fp16")
    assert "segrt build" in str(e.value)

    calls: list[dict] = []

    def builder(b, **kw):
        calls.append(kw)
        return make_record(precision="fp16", path="model.fp16.new.engine", sha256="0" * 64, trt_version="10.3.0",
                           gpu_name="Orin", compute_capability=(8, 7), onnx_sha256="1" * 64,
                           build_options={"dla_core": None})

    monkeypatch.setattr(select, "_ENGINE_BUILDER", builder)
    be = select.backend_for_bundle(bundle, backend="tensorrt", precision="fp16", rebuild=True, echo=lambda m: None)
    assert isinstance(be, TensorRTBackend) and be.engine_path.name == "model.fp16.new.engine" and not be.is_open
    want = {"legacy": True, "opt_level": 4, "workspace_gib": 0.5, "timing_cache": "t.cache", "dla_core": None,
            "version_compatible": False, "hardware_compat": "none"}
    assert {k: calls[0][k] for k in want} == want and calls[0]["precision"] == "fp16"
    from segrt.tools.tiny_model import tiny_segmentation_onnx

    bundle.save_onnx("fp16", tiny_segmentation_onnx(16, 24))  # something for ONNX Runtime to fall back on
    msgs: list[str] = []
    auto = select.backend_for_bundle(bundle, backend="auto", precision="fp16", echo=msgs.append)
    assert len(calls) == 2 and {k: calls[1][k] for k in want} == want
    assert isinstance(auto, OnnxRuntimeBackend)  # the rebuilt engine cannot open here (no TensorRT): fallback
    assert any("falling back to ONNX Runtime" in m for m in msgs)
