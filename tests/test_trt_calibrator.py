"""The legacy (TensorRT 10.x) calibrator's feed: batches at the calibration shape, and the
TensorRT text calibration cache (segrt.calibration.cache) read, checked and written."""
from __future__ import annotations

import numpy as np
import pytest

from segrt.calibration.cache import cache_from_ranges, read_calibration_cache, write_calibration_cache
from segrt.calibration.trt_legacy import CalibrationFeed, calibration_cache_path, legacy_calibrator, usable_cache
from segrt.errors import CalibrationError
from segrt.tools.tiny_model import tiny_bundle

SHAPE = (1, 8, 12, 3)


def feed(tmp_path, batches=(), kind="entropy", version="10.3.0", copies=None):
    def to_device(b):
        copies.append(b.copy())
        return 0xDEAD0000 + len(copies)
    return CalibrationFeed(iter(batches), shape=SHAPE, dtype=np.uint8, cache_path=tmp_path / "c.trtcache",
                           kind=kind, trt_version=version, to_device=to_device if copies is not None else None)


def test_batches_go_to_the_device_one_pointer_per_input(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, SHAPE, dtype=np.uint8) for _ in range(3)]
    copies: list[np.ndarray] = []
    f = feed(tmp_path, frames, copies=copies)
    ptrs = [f.next_pointers(["frame"]) for _ in range(4)]
    assert ptrs == [[0xDEAD0001], [0xDEAD0002], [0xDEAD0003], None]
    assert f.count == 3 and f.batch_size == 1
    for a, b in zip(copies, frames):
        np.testing.assert_array_equal(a, b)


def test_batch_shape_dtype_and_inputs_are_checked(tmp_path):
    with pytest.raises(CalibrationError, match="OPT shape"):
        feed(tmp_path, [np.zeros((1, 8, 13, 3), np.uint8)], copies=[]).next_pointers(["frame"])
    with pytest.raises(CalibrationError, match="dtype float32"):
        feed(tmp_path, [np.zeros(SHAPE, np.float32)], copies=[]).next_pointers(["frame"])
    with pytest.raises(CalibrationError, match="one input"):
        feed(tmp_path, [np.zeros(SHAPE, np.uint8)], copies=[]).next_pointers(["a", "b"])
    with pytest.raises(CalibrationError, match="gave no frames"):
        feed(tmp_path, [], copies=[]).next_pointers(["frame"])
    f = CalibrationFeed(iter([np.zeros((1, 3, 4, 4), np.float64)]), shape=(1, 3, 4, 4), dtype=np.float32,
                        cache_path=tmp_path / "x", kind="minmax")
    assert f.next_batch().dtype == np.float32  # float batches are cast, ints are refused


def _cache(version="10.3.0", method="entropy"):
    return cache_from_ranges({"frame_f": (0.0, 255.0), "/conv/Conv_output_0": (-3.5, 7.25)}, version, method)


def test_cache_written_by_tensorrt_is_validated_and_reused(tmp_path):
    f = feed(tmp_path)
    assert f.read_cache() is None                           # nothing yet: calibrate
    text = _cache().to_text().encode()
    f.write_cache(text)                                     # what TensorRT hands write_calibration_cache
    assert f.read_cache() == text
    back = read_calibration_cache(tmp_path / "c.trtcache")
    assert back.header == "TRT-100300-EntropyCalibration2"
    assert back.amax("/conv/Conv_output_0") == pytest.approx(7.25, rel=1e-6)
    with pytest.raises(CalibrationError):
        f.write_cache(b"garbage")


def test_cache_from_another_version_or_calibrator_is_not_reused(tmp_path):
    path = tmp_path / "c.trtcache"
    write_calibration_cache(path, _cache("10.16.1"))
    assert feed(tmp_path, version="10.3.0").read_cache() is None          # TensorRT would recalibrate
    assert feed(tmp_path, version="10.16.1.11").read_cache() is not None
    write_calibration_cache(path, _cache("10.3.0", "minmax"))
    assert feed(tmp_path, kind="entropy").read_cache() is None
    assert feed(tmp_path, kind="minmax").read_cache() is not None
    path.write_bytes(b"TRT-100300-EntropyCalibration2\nbroken line\n")
    assert feed(tmp_path).read_cache() is None                           # malformed: recalibrate, overwrite
    assert usable_cache(_cache().to_text().encode(), "entropy", None)


def test_cache_path_is_per_algorithm_and_shape(tmp_path):
    assert calibration_cache_path(tmp_path, "minmax", (1, 256, 512, 3)).name == "calib.minmax.1x256x512x3.trtcache"


def test_without_source_or_usable_cache_it_says_what_to_pass(tmp_path):
    b = tiny_bundle(tmp_path / "b", 8, 12)

    class _Trt:  # only __version__ is read before any TensorRT class is touched
        __version__ = "10.3.0"

    with pytest.raises(CalibrationError, match="no --calib source") as e:
        legacy_calibrator(_Trt, b, kind="entropy", source_uri=None, frames=10, shape=SHAPE)
    assert "--calib" in str(e.value)
    write_calibration_cache(calibration_cache_path(b.path, "entropy", SHAPE), _cache("10.16.1"))
    with pytest.raises(CalibrationError, match="another TensorRT or calibrator"):
        legacy_calibrator(_Trt, b, kind="entropy", source_uri=None, frames=10, shape=SHAPE)


def test_feed_takes_the_project_calibration_reader_batches(tmp_path):
    """The real reader (frames -> manifest preprocessing) feeds the calibrator at the engine's shape."""
    from segrt.calibration.trt_legacy import _calibration_batches

    b = tiny_bundle(tmp_path / "b", 8, 12)
    batches = _calibration_batches(b, "synthetic://?size=48x32&frames=4&seed=3", 4, 1)
    copies: list[np.ndarray] = []
    f = CalibrationFeed(batches, shape=SHAPE, dtype=np.uint8, cache_path=tmp_path / "c", kind="entropy",
                        to_device=lambda a: copies.append(a.copy()) or 1)
    n = 0
    while f.next_pointers(["frame"]) is not None:
        n += 1
    assert n == f.count >= 2 and all(c.shape == SHAPE and c.dtype == np.uint8 for c in copies)
    assert any(c.std() > 0 for c in copies)  # real frames, not zeros


def test_callback_errors_are_kept_for_after_the_build_not_raised_into_tensorrt(tmp_path):
    """TensorRT's trampolines swallow exceptions from get_batch and the cache callbacks, so the
    feed answers None (end of data) and finish() re-raises the first error after the build."""
    good = np.zeros(SHAPE, np.uint8)
    bad = np.zeros((1, 9, 12, 3), np.uint8)  # wrong shape in mid-run
    copies: list[np.ndarray] = []
    f = feed(tmp_path, [good, bad, good], copies=copies)
    f.expected = 3
    assert f.guard(f.next_pointers, ["frame"]) == [0xDEAD0001]
    assert f.guard(f.next_pointers, ["frame"]) is None      # what TensorRT sees: no exception
    assert f.guard(f.next_pointers, ["frame"]) is None      # and nothing more after an error
    assert isinstance(f.error, CalibrationError) and f.count == 1
    with pytest.raises(CalibrationError, match="has shape"):
        f.finish()
    # an invalid cache handed to write_calibration_cache is kept too, and the file is not written
    (tmp_path / "w").mkdir()
    w = feed(tmp_path / "w")
    assert w.guard(w.write_cache, b"not a cache") is None and w.error is not None
    assert not w.cache_path.exists()
    with pytest.raises(CalibrationError):
        w.finish()


def test_calibration_that_ends_early_fails_and_a_short_source_only_warns(tmp_path, caplog):
    frames = [np.full(SHAPE, i, np.uint8) for i in range(4)]
    early = feed(tmp_path, frames, copies=[])
    early.expected = 4
    early.guard(early.next_pointers, ["frame"])  # TensorRT stopped asking after one batch
    with pytest.raises(CalibrationError, match="after 1 of 4"):
        early.finish()
    short = feed(tmp_path, frames[:2], copies=[])
    short.expected = 4
    while short.guard(short.next_pointers, ["frame"]) is not None:
        pass
    short.finish()  # the source ran out (duplicates dropped): calibrated on what there was
    assert short.count == 2 and "2 of 4 batches" in caplog.text
    cached = feed(tmp_path, frames, copies=[])
    cached.expected, cached.cache_used = 4, True
    cached.finish()  # TensorRT took the scales from the cache and asked for no batch


def test_reader_batches_have_the_plan_calibration_shape_for_a_dynamic_bundle(tmp_path):
    """The batches the reader yields and the shape the calibration profile is set to are one shape."""
    import dataclasses

    from segrt.calibration.trt_legacy import _calibration_batches
    from segrt.export.trt_plan import BuildRequest, plan_build
    from segrt.runtime.manifest import ShapeRange

    b = tiny_bundle(tmp_path / "b", 8, 12)
    dyn = dataclasses.replace(b.manifest.input, dynamic=ShapeRange(min=(1, 4, 6), opt=(2, 16, 24), max=(2, 16, 24)))
    b.update(dataclasses.replace(b.manifest, input=dyn))
    plan = plan_build(BuildRequest(trt_version=(10, 3, 0), precision="int8", input=b.manifest.input, legacy=True,
                                   onnx_input_shape=(-1, -1, -1, 3)))
    assert plan.calibration_shape == (2, 8, 12, 3) and plan.profile.opt == (2, 16, 24, 3)
    batches = list(_calibration_batches(b, "synthetic://?size=48x32&frames=4&seed=3", 4, plan.calibration_shape[0]))
    assert batches and all(x.shape == plan.calibration_shape for x in batches)
