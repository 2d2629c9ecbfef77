"""The layout is the architecture: runtime/ and calibration/ never import torch."""
from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"blocked import of {name}")
            return None
    sys.meta_path.insert(0, Block())
    import segrt.PKG
    failed = []
    for mod in pkgutil.walk_packages(segrt.PKG.__path__, "segrt.PKG."):
        try:
            importlib.import_module(mod.name)
        except ImportError as exc:
            if "blocked import" in str(exc):
                failed.append(f"{mod.name}: {exc}")
            # tensorrt/pycuda are optional; their absence is not a layering fault
    assert not any(m.startswith("torch") for m in sys.modules), sorted(m for m in sys.modules if m.startswith("torch"))
    print("\\n".join(failed) if failed else "OK")
""")


def _check(pkg: str) -> str:
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH.replace("PKG", pkg)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_runtime_imports_without_torch():
    assert _check("runtime") == "OK"


def test_deploy_imports_without_torch():
    assert _check("deploy") == "OK"


def test_calibration_imports_without_torch():
    assert _check("calibration") == "OK"
