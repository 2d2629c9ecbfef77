"""The wheel holds the segrt package (and the demo weights), and no tests."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contents(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("segrt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("segrt/__init__.py", "segrt/errors.py", "segrt/runtime/manifest.py",
                     "segrt/runtime/backends/onnxruntime.py", "segrt/export/__init__.py",
                     "segrt/calibration/__init__.py", "segrt/tools/cli.py"):
        assert required in names, f"{required} missing from {wheel.name}"
    assert not [n for n in names if n.startswith(("segrt/tests/", "tests/"))], "tests leaked into the wheel"
    assert not [n for n in names if "/.venv/" in n or n.startswith("segrt/benchmarks/")]
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "segrt = segrt.tools.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()
    if (ROOT / "weights" / "demo_unet.pth").exists():
        assert "segrt/weights/demo_unet.pth" in names and "segrt/weights/demo_unet.json" in names
