"""Version checks compare release tuples, and quantization refuses an onnxruntime that is too old."""
from __future__ import annotations

import onnxruntime
import pytest

from segrt.calibration import qdq
from segrt.errors import CalibrationError
from segrt.runtime.versions import at_least, version_tuple


def test_version_tuples_compare_numerically():
    assert version_tuple("1.9.0") < version_tuple("1.30.0")  # "1.9.0" > "1.30.0" as strings
    assert version_tuple("1.30.0rc1") == (1, 30, 0)
    assert version_tuple("2.14.1+cpu") == (2, 14, 1)
    assert version_tuple("unknown") == ()
    assert at_least("1.30", (1, 30, 0)) and at_least("1.32.0", (1, 30))
    assert not at_least("1.23.2", (1, 30)) and not at_least("1.9", (1, 30)) and not at_least("", (1,))


def test_precomputed_range_quantization_names_the_version_needed(monkeypatch):
    monkeypatch.setattr(onnxruntime, "__version__", "1.23.2")  # JetPack 6's newest cp310 wheel
    why = qdq.precomputed_ranges_unsupported()
    assert why == "INT8 quantization with precomputed ranges needs onnxruntime >= 1.30; this is 1.23.2"
    with pytest.raises(CalibrationError) as e:
        qdq._check_ort_supports_cache()
    assert "\n" not in str(e.value) and "onnxruntime>=1.30" in str(e.value)
    monkeypatch.setattr(onnxruntime, "__version__", "1.30.0")
    assert qdq.precomputed_ranges_unsupported() is None


BLOCK_CV2 = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cv2":
            raise ModuleNotFoundError("No module named 'cv2'", name="cv2")
        return None
sys.meta_path.insert(0, Block())
from segrt.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_opencv_the_cli_says_how_to_get_it_in_one_line(tmp_path):
    """OpenCV is an extra (a Jetson's system cv2 must not be shadowed): its absence is one line, not a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", BLOCK_CV2, "run", str(tmp_path), "--source", "synthetic://"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "segrt run: error: OpenCV (cv2) is not installed (desktop: pip install 'segrt[opencv]'; Jetson: "
        "JetPack's python3-opencv, seen from a --system-site-packages venv)"]
