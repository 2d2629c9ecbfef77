"""One conformance suite, run against every backend present (as segmentation_models_pytorch's tester).

Each backend is opened on the same tiny bundle whose output has an exact numpy
reference, so a backend passes only by computing the right answer. TensorRT runs
here only where TensorRT and a GPU exist (marked ``gpu``).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from segrt.errors import BackendError
from segrt.runtime.backends.base import Backend, StageTimes
from segrt.runtime.bundle import Bundle
from segrt.tools.tiny_model import mask_agreement_with_ties, reference_logits, reference_mask, tiny_bundle

H, W = 32, 48


def _onnxruntime(bundle: Bundle, precision: str) -> Backend:
    from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
    return OnnxRuntimeBackend(bundle.onnx_path(precision), threads=1)


def _openvino(bundle: Bundle, precision: str) -> Backend:
    from segrt.runtime.backends.select import backend_for_bundle
    return backend_for_bundle(bundle, backend="openvino", precision=precision, threads=1)


def _tensorrt(bundle: Bundle, precision: str) -> Backend:  # pragma: no cover - needs a GPU
    from segrt.runtime.backends.select import backend_for_bundle
    return backend_for_bundle(bundle, backend="tensorrt", precision=precision, rebuild=True)  # builds it


_SERVERS: dict = {}


def _triton(bundle: Bundle, precision: str) -> Backend:
    """The bundle deployed with ``segrt deploy triton --platform python`` on a real local tritonserver."""
    from _triton_helpers import server_root_or_skip

    from segrt.deploy.triton_repo import deploy_triton
    from segrt.runtime.backends.triton import TritonBackend
    from segrt.tools.triton_server import LocalTritonServer

    if bundle.path not in _SERVERS:
        server_root_or_skip()
        repo = bundle.path.parent / "triton-repo"
        deploy_triton(bundle.path, repo, name="tiny", precision=precision, platform="python")
        _SERVERS[bundle.path] = LocalTritonServer(repo).start()
    return TritonBackend(f"triton://{_SERVERS[bundle.path].url}/tiny")


@pytest.fixture(scope="module", autouse=True)
def _stop_servers():
    yield
    while _SERVERS:  # stopped by PID, also when a test failed
        _SERVERS.popitem()[1].stop()


#: How close each backend must come to the numpy reference. ONNX Runtime's CPU kernels match it
#: to the last bits. A GPU's FP32 kernels (TF32 off) differ in the last bits, and where two
#: logits tie exactly TensorRT's TopK may pick either class: masks are compared tie-aware.
LOGITS_ATOL = {"onnxruntime": 1e-5, "openvino": 1e-5, "tensorrt": 1e-4, "triton": 1e-5}


BACKENDS = [
    pytest.param(_onnxruntime, id="onnxruntime"),
    # a dev/CI dependency ([dev] installs openvino): absent only where someone left it out
    pytest.param(_openvino, id="openvino", marks=pytest.mark.skipif(
        importlib.util.find_spec("openvino") is None, reason="OpenVINO not installed: pip install 'segrt[openvino]'")),
    pytest.param(_tensorrt, id="tensorrt", marks=pytest.mark.gpu),
    pytest.param(_triton, id="triton"),
]


@pytest.fixture(scope="module", params=[True, False], ids=["fused", "unfused"])
def bundle(request, tmp_path_factory) -> Bundle:
    return tiny_bundle(tmp_path_factory.mktemp("tiny"), H, W, fused=request.param)


def _frames(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8)]
    yy, xx = np.mgrid[0:H, 0:W]
    grad = np.stack([xx * 255 // W, yy * 255 // H, 255 - xx * 255 // W], -1).astype(np.uint8)[None]
    frames.append(grad)
    frames.append(np.zeros((1, H, W, 3), np.uint8))
    return frames[:n]


def _feed(bundle: Bundle, frame: np.ndarray) -> np.ndarray:
    if bundle.manifest.input.fused:
        return frame
    rgb = frame[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb - 127.5) / 127.5).transpose(0, 3, 1, 2))


@pytest.mark.parametrize("make", BACKENDS)
def test_specs_match_manifest(make, bundle):
    with make(bundle, "fp32") as be:
        (inp,) = be.input_specs
        assert inp.name == bundle.manifest.input.name
        assert tuple(inp.shape) == bundle.manifest.input.shape
        assert inp.dtype == np.dtype(bundle.manifest.input.dtype)
        assert [o.name for o in be.output_specs] == list(bundle.manifest.output.names)


@pytest.mark.parametrize("make", BACKENDS)
def test_outputs_match_reference(make, bundle):
    with make(bundle, "fp32") as be:
        for frame in _frames():
            out = be.infer(_feed(bundle, frame))
            if bundle.manifest.output.kind == "mask":
                mask = out["mask"]
                assert mask.dtype == np.uint8 and mask.shape == (1, H, W)
                if be.name in ("onnxruntime", "triton"):  # the server runs ONNX Runtime on the CPU
                    np.testing.assert_array_equal(mask, reference_mask(frame))
                assert mask_agreement_with_ties(mask, frame) == 1.0
            else:
                logits = out["logits"]
                assert logits.dtype == np.float32 and logits.shape == (1, 4, H, W)
                np.testing.assert_allclose(logits, reference_logits(frame), atol=LOGITS_ATOL[be.name])


@pytest.mark.parametrize("make", BACKENDS)
def test_life_cycle(make, bundle):
    be = make(bundle, "fp32")
    assert not be.is_open
    with pytest.raises(BackendError, match="before open"):
        be.infer(_feed(bundle, _frames(1)[0]))
    be.open()
    be.open()  # idempotent
    first = {k: v.copy() for k, v in be.infer(_feed(bundle, _frames(1)[0])).items()}
    assert isinstance(be.last_times, StageTimes) and be.last_times.total_ms > 0
    be.close()
    be.close()  # idempotent
    assert not be.is_open
    with be:  # reopen after close
        again = be.infer({bundle.manifest.input.name: _feed(bundle, _frames(1)[0])})
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
    assert "backend" in be.describe()


@pytest.mark.parametrize("make", BACKENDS)
def test_deterministic_over_repeated_calls(make, bundle):
    frame = _feed(bundle, _frames(2)[1])
    with make(bundle, "fp32") as be:
        outs = [{k: v.copy() for k, v in be.infer(frame).items()} for _ in range(3)]
    for o in outs[1:]:
        for k in o:
            np.testing.assert_array_equal(o[k], outs[0][k])


@pytest.mark.parametrize("make", BACKENDS)
def test_wrong_input_is_a_backend_error(make, bundle):
    with make(bundle, "fp32") as be:
        with pytest.raises(BackendError):
            be.infer({"not_an_input": _feed(bundle, _frames(1)[0])})


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO not installed")
def test_openvino_returns_logits_channel_last_in_memory(tmp_path):
    """The backend asks OpenVINO for NHWC logits (its NCHW reorder is slow) and returns an NCHW view."""
    from segrt.runtime.backends.openvino import OpenVinoBackend
    b = tiny_bundle(tmp_path, H, W, fused=False)
    frame = _feed(b, _frames(2)[1])
    with _openvino(b, "fp32") as be, OpenVinoBackend(b.onnx_path("fp32"), threads=1) as plain:
        assert be.describe()["channel_last"] == ["logits"] and plain.describe()["channel_last"] == []
        got, ref = be.infer(frame)["logits"], plain.infer(frame)["logits"]
        assert got.shape == ref.shape == (1, 4, H, W) and be.output_specs[0].shape == (1, 4, H, W)
        assert got.strides[1] == got.itemsize and ref.flags.c_contiguous  # channels adjacent in memory
        np.testing.assert_allclose(got, ref, atol=1e-6)
