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
