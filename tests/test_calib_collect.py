"""Streaming range calibration: exact min/max, bounded histograms, entropy and percentile clips."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from _calib_helpers import colour_net_onnx, run
from segrt.calibration.collect import (
    AbsHistogram,
    CalibrationRanges,
    calibrate_ranges,
    tensors_to_calibrate,
)
from segrt.calibration.qdq import DEFAULT_QUANT_OPS, prepare_fp32
from segrt.errors import CalibrationError


def test_histogram_range_doubles_and_keeps_every_count():
    h = AbsHistogram(num_bins=16)
    h.add(np.array([0.5, -1.0], np.float32))  # range = 1.0
    assert h.range == 1.0 and h.bins.sum() == 2
    h.add(np.array([3.5, -0.1], np.float32))  # range grows x4 (to 4.0) by merging bin groups
    assert h.range == 4.0 and h.bins.sum() == 4 and h.amax == 3.5
    # bin width 0.25: 0.1 -> bin 0, 0.5 -> bin 2, 3.5 -> bin 14; 1.0 was the old range's top value,
    # counted in its closed last bin [0.9375, 1.0], which merges into bin 3 = [0.75, 1.0]
    assert np.nonzero(h.bins)[0].tolist() == [0, 2, 3, 14]
    h.add(np.full(10, 1e6, np.float32))  # beyond 16x: the old histogram collapses into bin 0
    assert h.bins.sum() == 14 and h.bins[0] == 4 and h.bins[-1] == 10
    with pytest.raises(CalibrationError):
        h.add(np.array([np.inf], np.float32))


def test_percentile_and_entropy_clip_outliers():
    rng = np.random.default_rng(0)
    h = AbsHistogram()
    for _ in range(20):
        x = rng.standard_normal(50_000).astype(np.float32)
        x[:2] = 40.0  # rare outliers
        h.add(x)
    assert h.amax == 40.0
    p = h.percentile_amax(99.99)
    assert 3.3 < p < 4.5  # |N(0,1)| 99.99th percentile is 3.89
    e = h.entropy_amax()
    assert 2.0 < e < 12.0  # KL clip sits far below the outliers
    u = AbsHistogram()
    u.add(rng.uniform(-2, 2, 200_000).astype(np.float32))
    assert u.entropy_amax() == pytest.approx(2.0, rel=0.05)  # uniform data: no clipping pays off


def _feeds(n, h=48, w=64, seed=0):
    from segrt.runtime.sources import open_source
    with open_source(f"synthetic://?size={w}x{h}&frames={n}&seed={seed}") as src:
        return [{"frame": f.image[None]} for f in src]


def test_minmax_ranges_equal_the_observed_extremes():
    model, _ = prepare_fp32(colour_net_onnx(48, 64))
    tensors = tensors_to_calibrate(model, DEFAULT_QUANT_OPS)
    assert tensors and all(t != "frame" for t in tensors)  # uint8 input is not calibrated
    feeds = _feeds(5)
    r = calibrate_ranges(model, iter(feeds), tensors, method="minmax")
    assert r.frames == 5 and set(r.amax) == set(tensors)
    # reference: expose the tensors as outputs and take max |x| over the frames in numpy
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for t in tensors:
        exposed.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    names = [o.name for o in exposed.graph.output]
    ref = {t: 0.0 for t in tensors}
    for f in feeds:
        for name, v in zip(names, run(exposed, f)):
            if name in ref:
                ref[name] = max(ref[name], float(np.abs(v).max()))
    for t in tensors:
        assert r.amax[t] == pytest.approx(ref[t], rel=1e-6)
        assert r.ranges[t] == (-r.amax[t], r.amax[t])  # symmetric


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_clip_within_the_observed_range(method):
    model, _ = prepare_fp32(colour_net_onnx(48, 64))
    tensors = tensors_to_calibrate(model, DEFAULT_QUANT_OPS)
    r = calibrate_ranges(model, iter(_feeds(4)), tensors, method=method)
    for t in tensors:
        assert 0 < r.amax[t] <= r.observed_amax[t] * (1 + 1e-6)


def test_ranges_round_trip_and_ort_cache(tmp_path):
    r = CalibrationRanges("entropy", {"a": 1.5, "b": 0.25}, {"a": 3.0, "b": 0.25}, frames=7)
    r.save(tmp_path / "r.json")
    back = CalibrationRanges.load(tmp_path / "r.json")
    assert back.amax == r.amax and back.method == "entropy" and back.frames == 7
    from onnxruntime.quantization.calibrate import load_tensors_data
    td = load_tensors_data(r.write_ort_cache(tmp_path / "ort.json"))
    assert float(td["a"].range_value[1]) == 1.5 and float(td["a"].range_value[0]) == -1.5


def test_no_frames_and_bad_method():
    model, _ = prepare_fp32(colour_net_onnx(32, 32))
    tensors = tensors_to_calibrate(model, DEFAULT_QUANT_OPS)
    with pytest.raises(CalibrationError, match="no frames"):
        calibrate_ranges(model, iter([]), tensors)
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        calibrate_ranges(model, iter([]), tensors, method="random")


def test_outputs_are_grouped_under_a_byte_budget_with_identical_results():
    from segrt.calibration.collect import group_by_budget, tensor_bytes
    model, _ = prepare_fp32(colour_net_onnx(48, 64))
    tensors = tensors_to_calibrate(model, DEFAULT_QUANT_OPS)
    sizes = tensor_bytes(model, tensors, (1, 48, 64, 3))
    assert all(v > 0 for v in sizes.values())
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    assert sizes[first.output[0]] == 8 * 24 * 32 * 4  # 8 channels at stride 2, float32
    groups = group_by_budget(tensors, sizes, max(sizes.values()))
    assert len(groups) > 1 and [t for g in groups for t in g] == tensors
    assert all(sum(sizes[t] for t in g) <= max(sizes.values()) for g in groups)
    feeds = _feeds(3)
    one = calibrate_ranges(model, iter(feeds), tensors, method="percentile")
    split = calibrate_ranges(model, iter(feeds), tensors, method="percentile", max_output_bytes=1,
                             input_shape=(1, 48, 64, 3))
    assert split.amax == one.amax


def test_minmax_reductions_run_right_after_each_producer():
    from segrt.calibration.collect import _augmented_minmax
    model, _ = prepare_fp32(colour_net_onnx(32, 32))
    tensors = tensors_to_calibrate(model, DEFAULT_QUANT_OPS)
    aug, outs = _augmented_minmax(model, tensors)
    order = [n for n in aug.graph.node]
    produced_at = {o: i for i, n in enumerate(order) for o in n.output}
    for i, t in enumerate(tensors):
        lo_at = produced_at[outs[2 * i]]
        # the reduction follows its tensor's producer, before any unrelated compute op
        src = produced_at[t]
        between = [n.op_type for n in order[src + 1:lo_at]]
        assert set(between) <= {"ReduceMin", "ReduceMax"}, (t, between)
