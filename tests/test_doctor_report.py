"""``segrt doctor``: machine facts and the CPU self-test, as text and JSON."""
from __future__ import annotations

import json

from segrt.calibration.qdq import precomputed_ranges_unsupported
from segrt.tools.cli import main
from segrt.tools.doctor_opencv import numpy_abi_match, numpy_built_for, opencv_report
from segrt.tools.doctor import FAIL, PASS, SKIP, cameras, gstreamer_support, machine_report, selftest

BUILD_INFO_PIP = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (59.37.100)
    GStreamer:                   NO
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
BUILD_INFO_JETPACK = BUILD_INFO_PIP.replace("GStreamer:                   NO",
                                            "GStreamer:                   YES (1.20.3)") + """
  Python 3:
    Interpreter:                 /usr/bin/python3 (ver 3.10.12)
    numpy:                       /usr/lib/python3/dist-packages/numpy/core/include (ver 1.21.5)
"""


def test_gstreamer_flag_from_opencv_build_info():
    assert gstreamer_support(BUILD_INFO_PIP) is False
    assert gstreamer_support(BUILD_INFO_JETPACK) is True
    assert gstreamer_support("no video section") is None


def test_cameras_lists_video_devices(tmp_path):
    for n in (2, 0):
        (tmp_path / f"video{n}").touch()
    (tmp_path / "media0").touch()
    assert cameras(str(tmp_path / "video*")) == [str(tmp_path / "video0"), str(tmp_path / "video2")]


def test_machine_report_on_this_machine():
    rep = machine_report()
    assert "CPUExecutionProvider" in rep["onnxruntime"]["providers"]
    assert rep["opencv"]["gstreamer"] in (True, False, None)
    t = rep["tensorrt"]
    assert t["version"] or ("pip install tensorrt" in t["hint"] or "nvidia-jetpack" in t["hint"])
    assert set(rep["cuda_bindings"]) == {"pycuda", "cuda_python"}
    json.dumps(rep)  # JSON-ready


def test_selftest_on_a_cpu_runs_what_it_can_and_says_what_it_skipped(tmp_path):
    lines: list[str] = []
    checks = {c.name: c for c in selftest(tmp_path, echo=lines.append, stream_frames=4)}
    assert checks["onnxruntime fp32"].status == PASS and "100.00%" in checks["onnxruntime fp32"].detail
    assert checks["fp16 cast (calibration.fp16)"].status == PASS
    assert checks["onnxruntime fp16"].status == PASS
    if precomputed_ranges_unsupported() is None:
        assert checks["int8 Q/DQ (calibration.qdq)"].status == PASS
        assert checks["onnxruntime int8"].status == PASS  # >= 98% of pixels as the FP32 reference
    else:  # the old-library venv (onnxruntime 1.23): refused with the version needed, not failed
        assert checks["int8 Q/DQ (calibration.qdq)"].status == SKIP
        assert "onnxruntime >= 1.30" in checks["int8 Q/DQ (calibration.qdq)"].detail
    stream = checks["stream (pipeline, onnxruntime)"]
    assert stream.status == PASS and stream.data["frames"] == 4
    trt = [c for name, c in checks.items() if name.startswith("tensorrt")]
    assert trt and all(c.status in (SKIP, PASS) for c in trt)
    if trt[0].status == SKIP:
        assert trt[0].detail  # says why
    assert not [c for c in checks.values() if c.status == FAIL]
    assert any(line.lstrip().startswith("[PASS] onnxruntime fp32") for line in lines)


def test_doctor_cli_json(capsys):
    rc = main(["doctor", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and "machine" in out and "selftest" not in out
    assert "providers" in out["machine"]["onnxruntime"]


def test_doctor_cli_text(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "TensorRT" in out and "ONNX Runtime" in out and "GStreamer" in out and "cameras" in out


def test_numpy_that_cv2_was_built_for():
    assert numpy_built_for(BUILD_INFO_JETPACK) == "1.21.5"
    assert numpy_built_for(BUILD_INFO_PIP) is None
    pip_wheel = "    numpy:   /home/ci/.local/lib/python3.9/site-packages/numpy/_core/include (ver 2.0.2)\n"
    assert numpy_built_for(pip_wheel) == "2.0.2"


def test_numpy_abi_verdicts():
    bad, why = numpy_abi_match("1.21.5", "2.2.6")  # JetPack's OpenCV under a pip-installed numpy 2
    assert bad is False and "numpy<2" in why
    assert numpy_abi_match("1.21.5", "1.26.4")[0] is True
    assert numpy_abi_match("1.26.0", "1.21.5")[0] is False  # built for a newer 1.x than installed
    assert numpy_abi_match("2.0.0", "1.26.4")[0] is True  # pip's opencv 4.10 wheel on numpy 1.26
    assert numpy_abi_match(None, "1.26.4")[0] is None


def test_opencv_report_on_this_machine():
    import numpy as np

    rep = opencv_report()
    assert rep["numpy_installed"] == np.__version__
    assert rep["version"] and rep["numpy_match"] is True, rep  # both venvs here: pip wheels built for numpy 2
