"""TensorRT calibration cache format, scales from CPU calibration, and the TensorRT batch feed."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from _calib_helpers import colour_bundle, synthetic
from segrt.calibration.cache import (
    cache_from_ranges,
    calibration_cache_from_text,
    hex_from_scale,
    iter_calibration_batches,
    read_calibration_cache,
    scale_from_hex,
    scales_from_ranges,
    trt_version_number,
    write_calibration_cache,
)
from segrt.calibration.reader import CalibrationBatches
from segrt.errors import CalibrationError
from segrt.runtime.preprocess import Preprocessor
from segrt.runtime.sources import open_source
from segrt.tools.tiny_model import tiny_bundle


def test_hex_is_big_endian_float32_bits():
    assert hex_from_scale(1.0) == "3f800000"
    v = struct.unpack(">f", bytes.fromhex("3caa54fc"))[0]
    assert hex_from_scale(v) == "3caa54fc"
    assert scale_from_hex("3caa54fc") == v == pytest.approx(0.02079248)
    assert scale_from_hex("0") == 0.0  # TensorRT writes %x without leading zeros
    assert scale_from_hex("800000") == pytest.approx(2.0 ** -126)
    with pytest.raises(ValueError):
        scale_from_hex("xyz")


@pytest.mark.parametrize("version, number", [("10.3.0", 100300), ("10.16.1.11", 101601), ("8.6.1", 8601),
                                             ("8.5.1.7", 8501), ("11.4.0", 110400)])
def test_header_version_numbers(version, number):
    assert trt_version_number(version) == number


def test_scales_are_amax_over_127():
    s = scales_from_ranges({"a": (-2.54, 1.0), "b": (0.0, 12.7), "z": (0.0, 0.0)})
    assert s["a"] == pytest.approx(2.54 / 127)
    assert s["b"] == pytest.approx(0.1)
    assert s["z"] > 0  # never a zero scale
    with pytest.raises(CalibrationError):
        scales_from_ranges({"bad": (float("-inf"), 1.0)})


def test_cache_round_trip(tmp_path):
    ranges = {"input": (-2.64, 2.64), "/c1/Conv_output_0": (-0.5, 7.25), "/relu: with colon": (0.0, 3.0)}
    cache = cache_from_ranges(ranges, "10.3.0", "entropy")
    path = write_calibration_cache(tmp_path / "calib.cache", cache)
    text = path.read_text()
    assert text.splitlines()[0] == "TRT-100300-EntropyCalibration2"
    assert "input: " + hex_from_scale(2.64 / 127) in text
    back = read_calibration_cache(path)
    assert back.trt_version == 100300 and back.calibrator == "EntropyCalibration2"
    assert list(back.scales) == list(ranges)
    for name, (lo, hi) in ranges.items():
        # float32 exact: what was written is what comes back
        assert back.scales[name] == np.float32(max(abs(lo), abs(hi)) / 127)
        assert back.amax(name) == pytest.approx(max(abs(lo), abs(hi)), rel=1e-6)
    assert cache_from_ranges(ranges, 8601, "minmax").header == "TRT-8601-MinMaxCalibration"


def test_reads_a_tensorrt_written_cache():
    text = "TRT-8401-EntropyCalibration2\ninput: 3caa54fc\n371: 3caa54fc\n366: 0\n(Unnamed Layer* 64) [Shuffle]_output: 3c56713e\n"
    cache = calibration_cache_from_text(text)
    assert cache.trt_version == 8401
    assert cache.scales["366"] == 0.0
    assert cache.scales["(Unnamed Layer* 64) [Shuffle]_output"] == pytest.approx(0.0130885, rel=1e-5)


@pytest.mark.parametrize("text", ["", "not a header\nx: 3f800000\n", "TRT-8601-EntropyCalibration2\nno colon here\n",
                                  "TRT-8601-EntropyCalibration2\nx: nothex\n"])
def test_malformed_caches(text):
    with pytest.raises(CalibrationError):
        calibration_cache_from_text(text)


def test_batches_are_what_inference_sees(tmp_path):
    bundle = colour_bundle(tmp_path / "b", 32, 48)
    uri = synthetic(96, 64, frames=40, seed=5)
    batches = CalibrationBatches(bundle, uri, frames=9, batch_size=2)
    got = [b.copy() for b in batches]
    assert len(got) == 4  # 9 frames -> 4 full batches, the partial one dropped
    assert all(b.shape == (2, 32, 48, 3) and b.dtype == np.uint8 and b.flags.c_contiguous for b in got)
    # the first batch holds the preprocessed frames the sampler picked
    idx = batches.coverage.indices
    pre = Preprocessor(bundle.manifest)
    with open_source(uri) as src:
        for k in range(2):
            src.seek(idx[k])
            np.testing.assert_array_equal(got[0][k], pre(src.read().image)[0][0])


def test_unfused_batches_are_float_nchw(tmp_path):
    bundle = tiny_bundle(tmp_path / "t", 16, 24, fused=False)
    first = next(iter_calibration_batches(bundle.path, synthetic(64, 48, 20), frames=4, batch_size=1))
    assert first.shape == (1, 3, 16, 24) and first.dtype == np.float32
    assert -3 < first.min() < first.max() < 3  # normalised, not raw pixels


def test_empty_source_is_an_error(tmp_path):
    bundle = colour_bundle(tmp_path / "b", 32, 48)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception) as info:
        list(CalibrationBatches(bundle, str(empty), frames=4))
    from segrt.errors import SegrtError
    assert isinstance(info.value, SegrtError)


def test_cache_from_a_quantized_bundle(tmp_path):
    from segrt.calibration.api import quantize_bundle
    from segrt.calibration.cache import calibration_cache_from_bundle
    from segrt.calibration.collect import CalibrationRanges
    bundle = colour_bundle(tmp_path / "b", 32, 48)
    with pytest.raises(CalibrationError, match="no INT8 calibration"):
        calibration_cache_from_bundle(bundle, "10.3.0")
    quantize_bundle(bundle, "int8", calib=synthetic(96, 64, 60, 2), calib_frames=10, eval_frames=4,
                    enforce_gate=False, max_fallback=0, progress=False)
    cache = calibration_cache_from_bundle(bundle.path, "10.3.0")
    ranges = CalibrationRanges.load(bundle.path / "calibration.int8.json")
    assert cache.header == "TRT-100300-MinMaxCalibration"
    assert set(cache.scales) == set(ranges.amax)
    for name, amax in ranges.amax.items():
        assert cache.scales[name] == pytest.approx(amax / 127, rel=1e-6)
    back = calibration_cache_from_text(cache.to_text())
    assert back.scales == cache.scales
