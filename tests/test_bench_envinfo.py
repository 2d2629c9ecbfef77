"""The environment recorded beside every benchmark figure."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime

from segrt.tools.envinfo import environment, thread_settings


def test_environment_reports_the_real_libraries_and_machine():
    env = environment(intra_op_threads=2)
    json.dumps(env)  # JSON-ready as is
    libs = env["libraries"]
    assert libs["numpy"] == np.__version__
    assert libs["opencv"] == cv2.__version__
    assert libs["onnxruntime"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in libs["onnxruntime_providers"]
    assert env["cpu"]["logical_cores"] == os.cpu_count()
    assert 1 <= env["cpu"]["usable_cores"] <= os.cpu_count()
    assert env["cpu"]["model"]
    assert env["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert env["threads"]["onnxruntime_intra_op"] == 2
    assert isinstance(env["gpus"], list)


def test_no_gpu_and_no_jetson_here_are_reported_as_such():
    env = environment()
    if not os.path.exists("/dev/nvidia0") and not os.path.exists("/dev/nvhost-ctrl-gpu"):
        assert env["gpus"] == []
    if not os.path.exists("/etc/nv_tegra_release"):
        assert env["jetson"] is None


def test_thread_environment_variables_are_recorded(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    t = thread_settings(None)
    assert t["env"]["OMP_NUM_THREADS"] == "3"
    assert "MKL_NUM_THREADS" not in t["env"]
    assert t["onnxruntime_intra_op"].startswith("default")


def test_collecting_the_environment_does_not_import_torch_or_tensorrt():
    code = ("import sys; from segrt.tools.envinfo import environment; env = environment(); "
            "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules, sorted(sys.modules); "
            "print(env['libraries']['torch'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import importlib.metadata
    try:
        expected = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        expected = "None"
    assert out.stdout.strip() == expected  # the version comes from package metadata, not an import
