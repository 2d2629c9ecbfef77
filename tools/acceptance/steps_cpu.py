"""Steps that run everywhere: versions, the doctor's self-test, and the ``gpu``-marked tests."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from segrt.tools.doctor import FAIL, PASS, SKIP, machine_report, selftest

LIBRARIES = (("numpy", ("numpy",)), ("onnx", ("onnx",)), ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
             ("opencv", ("opencv-python-headless", "opencv-python", "opencv-contrib-python")),
             ("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")), ("pycuda", ("pycuda",)),
             ("cuda-python", ("cuda-bindings", "cuda-python")), ("cupy", ("cupy-cuda12x", "cupy-cuda13x", "cupy")),
             ("torch", ("torch",)))
GPU_TESTS_TIMEOUT_S = 300


def versions(ctx) -> tuple[str, str, dict]:
    """Versions of Python, segrt and every library that matters, and the doctor's machine facts."""
    from segrt import __version__
    from segrt.tools.envinfo import dist_version

    libs = {name: dist_version(*dists) for name, dists in LIBRARIES}
    rep = machine_report()
    if rep["opencv"].get("version"):
        libs["opencv"] = rep["opencv"]["version"]  # a system (apt / JetPack) cv2 has no pip metadata
    if rep["tensorrt"].get("version"):
        libs["tensorrt"] = rep["tensorrt"]["version"]  # JetPack's python3-libnvinfer neither
    data = {"python": platform.python_version(), "platform": platform.platform(), "segrt": __version__,
            "libraries": libs, "machine": rep}
    shown = ", ".join(f"{k} {v}" for k, v in libs.items() if v)
    return PASS, f"Python {data['python']} {platform.machine()}, segrt {__version__}; {shown}", data


def selftest_step(ctx) -> tuple[str, str, dict]:
    """``segrt doctor --selftest``: every backend and precision present on the tiny model."""
    checks = selftest(ctx.workdir / "selftest")
    failed = [c.name for c in checks if c.status == FAIL]
    counts = {s: sum(c.status == s for c in checks) for s in (PASS, FAIL, SKIP)}
    detail = f"{counts[PASS]} passed, {counts[SKIP]} skipped" + (f", FAILED: {', '.join(failed)}" if failed else "")
    return (FAIL if failed else PASS), detail, {"checks": [asdict(c) for c in checks]}


def tests_dir() -> Path | None:
    """The repository's tests/ (present in a clone, not in an installed wheel)."""
    import segrt

    d = Path(segrt.__file__).resolve().parent / "tests"
    return d if (d / "conftest.py").is_file() else None


def pytest_counts(summary: str) -> dict[str, int]:
    """{"passed": 3, "skipped": 2, ...} from pytest's last summary line."""
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}


def gpu_tests(ctx) -> tuple[str, str, dict]:
    """``pytest -m gpu`` in a subprocess, from a clone."""
    why = ctx.missing("tensorrt")
    if why:
        return SKIP, f"gpu-marked tests need TensorRT and a GPU: {why}", {}
    tests = tests_dir()
    if tests is None:
        return SKIP, "tests/ is not installed with the wheel: run from a clone (pip install -e .)", {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests.parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", str(tests)],
                          cwd=tests.parent, capture_output=True, text=True, timeout=GPU_TESTS_TIMEOUT_S, env=env)
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    counts = pytest_counts(last)
    data = {"returncode": proc.returncode, "summary": last, "counts": counts, "tail": proc.stdout[-4000:]}
    if proc.returncode == 5:
        return SKIP, "no gpu-marked tests were collected", data
    if proc.returncode != 0:
        return FAIL, f"pytest -m gpu: {last}", data
    if counts.get("passed", 0) == 0:
        return SKIP, f"every gpu-marked test skipped: {last}", data
    return PASS, last, data
