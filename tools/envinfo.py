"""What machine a number was measured on: CPU, GPU, Jetson power mode, library versions, threads.

Every benchmark figure is recorded beside this dictionary, so two results can be
told apart ("was that the same power mode? the same ONNX Runtime?"). Nothing here
imports torch or TensorRT just to ask their version: installed package metadata is
read instead, so collecting the environment costs milliseconds and never changes it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from segrt.runtime.machine import this_cpu

#: environment variables that change how many threads the numeric libraries use
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "ORT_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_AFFINITY", "GOMP_CPU_AFFINITY")

#: distributions that may provide ``import tensorrt`` (pip variants and the Jetson apt package)
_TENSORRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu13_bindings",
                   "tensorrt_cu12_bindings", "tensorrt-libs")


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of ``cmd`` stripped, or None when the tool is absent, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def dist_version(*names: str) -> str | None:
    """Installed version of the first of ``names`` found, without importing it."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def cpu_info() -> dict[str, Any]:
    """CPU model, logical cores, the cores this process may use, SIMD flags, governor and load."""
    cpu = this_cpu()  # the one /proc/cpuinfo reader, also behind --precision auto's fingerprint
    simd = sorted(cpu.flags & {"avx", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma",
                               "asimd", "asimddp", "sve"})
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "model": cpu.model,
        "logical_cores": os.cpu_count(),
        "usable_cores": cpu.cores,
        "simd": simd,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "loadavg": load,
    }


def gpu_info() -> list[dict[str, Any]]:
    """One entry per NVIDIA GPU from ``nvidia-smi``; on Jetson (no nvidia-smi GPU query) the SoC."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                "--format=csv,noheader"])
    gpus = []
    if out:
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2],
                             "compute_capability": parts[3] if len(parts) > 3 else None})
    if not gpus and os.path.exists("/dev/nvhost-ctrl-gpu"):
        gpus.append({"name": _read("/proc/device-tree/model") or "NVIDIA Jetson (integrated GPU)",
                     "driver": _read("/etc/nv_tegra_release"), "memory": "shared", "compute_capability": None})
    return gpus


def jetson_info() -> dict[str, Any] | None:
    """L4T release and power mode (``nvpmodel -q``) on a Jetson, else None."""
    release = _read("/etc/nv_tegra_release")
    if release is None and not os.path.exists("/dev/nvhost-ctrl-gpu"):
        return None
    power = _run(["nvpmodel", "-q"])
    return {
        "model": _read("/proc/device-tree/model"),
        "l4t": release.splitlines()[0] if release else None,
        "power_mode": " / ".join(line.strip() for line in power.splitlines() if line.strip()) if power else None,
    }


def library_versions() -> dict[str, Any]:
    """numpy, OpenCV, ONNX, ONNX Runtime (+ providers), torch, TensorRT, CUDA bindings, segrt."""
    libs: dict[str, Any] = {}
    import numpy  # the runtime already imports these; asking them is free
    libs["numpy"] = numpy.__version__
    try:
        import cv2
        libs["opencv"] = cv2.__version__
        libs["opencv_threads"] = cv2.getNumThreads()
    except ImportError:
        libs["opencv"] = None
    libs["onnx"] = dist_version("onnx")
    try:
        import onnxruntime
        libs["onnxruntime"] = onnxruntime.__version__
        libs["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    except ImportError:
        libs["onnxruntime"] = None
        libs["onnxruntime_providers"] = []
    libs["torch"] = dist_version("torch")
    libs["torchvision"] = dist_version("torchvision")
    trt = dist_version(*_TENSORRT_DISTS)
    if trt is None and importlib.util.find_spec("tensorrt") is not None:
        # Jetson's apt package has no pip metadata: only the module knows its version.
        try:
            import tensorrt
            trt = str(getattr(tensorrt, "__version__", "unknown"))
        except Exception as exc:  # a broken install must not stop the benchmark
            trt = f"present but not importable ({type(exc).__name__})"
    libs["tensorrt"] = trt
    libs["pycuda"] = dist_version("pycuda")
    libs["cuda_python"] = dist_version("cuda-python", "cuda-bindings")
    libs["matplotlib"] = dist_version("matplotlib")
    from segrt import __version__ as segrt_version
    libs["segrt"] = segrt_version
    return libs


def thread_settings(intra_op_threads: int | None = None) -> dict[str, Any]:
    """The thread-related environment and the ONNX Runtime intra-op setting used.

    ``intra_op_threads=None`` means ONNX Runtime's default (one thread per physical core).
    """
    env = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    return {
        "env": {k: v for k, v in env.items() if v is not None},
        "onnxruntime_intra_op": intra_op_threads if intra_op_threads else "default (one per core)",
        "onnxruntime_inter_op": 1,
    }


def environment(intra_op_threads: int | None = None) -> dict[str, Any]:
    """Everything worth recording beside a benchmark figure, as a JSON-ready dict."""
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "os": {"system": platform.system(), "release": platform.release(),
               "platform": platform.platform(), "machine": platform.machine()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "cpu": cpu_info(),
        "gpus": gpu_info(),
        "jetson": jetson_info(),
        "libraries": library_versions(),
        "threads": thread_settings(intra_op_threads),
    }
