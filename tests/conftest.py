"""Shared pytest configuration: the ``gpu`` marker skips cleanly without TensorRT and a GPU."""
from __future__ import annotations

import importlib.util
import os

# Before any test imports torch: spin-waiting OpenMP threads make a 2-core machine crawl.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


def gpu_skip_reason() -> str | None:
    """Why GPU tests cannot run here, or None when TensorRT and a CUDA device are present."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (GPU tests need tensorrt + pycuda and an NVIDIA GPU)"
    if not (os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl-gpu")):
        return "no NVIDIA GPU device node (/dev/nvidia0 or Jetson /dev/nvhost-ctrl-gpu)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = gpu_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
