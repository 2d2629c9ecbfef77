"""Streaming activation-range calibration with bounded memory.

Why not ``quantize_static``'s own calibration loop: ONNX Runtime's calibrators
(``onnxruntime.quantization.calibrate``) accumulate per *call* of ``collect_data``:

* ``MinMaxCalibrater`` adds ReduceMin/ReduceMax outputs and keeps two scalars per tensor
  per frame: small, and ``CalibMaxIntermediateOutputs`` is meant to bound it, but in
  ORT 1.32 reaching that limit *discards* the collected outputs without merging them;
* ``HistogramCalibrater`` (Entropy, Percentile, Distribution) keeps **every calibrated
  tensor of every frame** until the reader is exhausted and only then histograms them:
  for a 512x1024 segmentation net that is hundreds of MB per frame, so 1,000 frames need
  hundreds of GB. Calling it in chunks bounds memory but fixes the histogram's bin width
  from the first chunk (its bin count then grows without limit), and its entropy search is
  an O(bins^2) Python loop.

So this module runs the calibration itself, one frame at a time, and hands ONNX Runtime
only the final ranges (``quantize_static(calibration_cache_path=...)``). Memory is one
frame's activations plus fixed-size statistics, whatever the number of frames:

* ``minmax``: ReduceMin/ReduceMax added to the graph (the tensors never leave ONNX
  Runtime), a running min/max per tensor, symmetric range ``+-max(|min|, |max|)``; this is
  what TensorRT's MinMax calibrator does;
* ``entropy``: a 2048-bin histogram of |x| per tensor whose range doubles (merging bin
  pairs) when a frame exceeds it, then TensorRT's EntropyCalibration2 threshold search
  (the clip that minimises the KL divergence to 128 quantized levels);
* ``percentile``: the same histogram, clipped at the 99.99th percentile of |x|.

Every range is symmetric (zero point 0), as TensorRT requires.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from segrt.errors import CalibrationError

log = logging.getLogger("segrt.calibration")

METHODS = ("minmax", "entropy", "percentile")
NUM_BINS = 2048
NUM_QUANT_BINS = 128  # int8: 127 positive levels + 0, as TensorRT's entropy calibrator
DEFAULT_PERCENTILE = 99.99
_HIST_CHUNK = 1 << 23
# Activations fetched per forward pass by entropy/percentile. Peak RSS is about 1.5x this plus
# the model: 1 GiB keeps a 512x1024 U-Net (1.3 GB of calibrated activations per frame) well
# under 4 GB at the cost of a second pass.
DEFAULT_MAX_OUTPUT_BYTES = 1 << 30


def tensors_to_calibrate(model: onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    """Float activations read or written by nodes of ``op_types`` (initializers excluded):
    the same selection ONNX Runtime's calibrators make for ``op_types_to_calibrate``."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name for t in model.graph.initializer}
    ops = set(op_types)
    names: list[str] = []
    seen: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in ops:
            continue
        for t in list(node.input) + list(node.output):
            if t and t not in seen and t not in inits and types.get(t) in (TensorProto.FLOAT, TensorProto.FLOAT16):
                seen.add(t)
                names.append(t)
    return names


def _augmented_minmax(model: onnx.ModelProto, tensors: Sequence[str]) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with a scalar ReduceMin and ReduceMax output per tensor (reduced over all axes).

    Each pair is placed right after the tensor's producer, and the session runs in
    priority-based order, so a tensor is reduced (and can be freed) as soon as it exists.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    index = {t: i for i, t in enumerate(tensors)}
    outs = [""] * (2 * len(tensors))
    reducers: dict[str, list[onnx.NodeProto]] = {}
    for t, i in index.items():
        lo, hi = f"__segrt_calib_min_{i}", f"__segrt_calib_max_{i}"
        reducers[t] = [helper.make_node("ReduceMin", [t], [lo], keepdims=0, name=f"{lo}_node"),
                       helper.make_node("ReduceMax", [t], [hi], keepdims=0, name=f"{hi}_node")]
        outs[2 * i], outs[2 * i + 1] = lo, hi
    nodes: list[onnx.NodeProto] = []
    for name in [i.name for i in m.graph.input]:  # graph inputs are reduced first
        nodes.extend(reducers.pop(name, []))
    for node in m.graph.node:
        nodes.append(node)
        for y in node.output:
            nodes.extend(reducers.pop(y, []))
    if reducers:
        raise CalibrationError(f"tensors {sorted(reducers)[:3]} are not produced by the graph")
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    for name in outs:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, []))
    return m, outs


def _augmented_tensors(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(t))
    return m


def tensor_bytes(model: onnx.ModelProto, tensors: Sequence[str], input_shape: Sequence[int] | None = None) -> dict[str, int]:
    """Bytes of each tensor for one frame (shape inference; symbolic graph-input dims are
    pinned to ``input_shape`` first). Unknown sizes are reported as 0."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if input_shape is not None:
        inits = {t.name for t in m.graph.initializer}
        graph_inputs = [i for i in m.graph.input if i.name not in inits]
        if len(graph_inputs) == 1:
            dims = graph_inputs[0].type.tensor_type.shape.dim
            if len(dims) == len(input_shape):
                for d, v in zip(dims, input_shape):
                    d.Clear()
                    d.dim_value = int(v)
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=False)
    info = {vi.name: vi.type.tensor_type for vi in list(inferred.graph.value_info) + list(inferred.graph.input)
            + list(inferred.graph.output)}
    out = {}
    for t in tensors:
        tt = info.get(t)
        n = 0
        if tt is not None and tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            n = int(np.prod([d.dim_value for d in tt.shape.dim], dtype=np.int64))
            n *= 2 if tt.elem_type == TensorProto.FLOAT16 else 4
        out[t] = n
    return out


def group_by_budget(tensors: Sequence[str], sizes: Mapping[str, int], budget: int) -> list[list[str]]:
    """Consecutive groups of ``tensors`` whose sizes add up to at most ``budget`` bytes
    (a tensor bigger than the budget gets a group of its own)."""
    groups: list[list[str]] = []
    current: list[str] = []
    total = 0
    for t in tensors:
        b = sizes.get(t, 0)
        if current and total + b > budget:
            groups.append(current)
            current, total = [], 0
        current.append(t)
        total += b
    if current:
        groups.append(current)
    return groups


class AbsHistogram:
    """A fixed-size histogram of |x| over [0, range) whose range doubles as needed."""

    __slots__ = ("bins", "range", "amax", "count", "min")

    def __init__(self, num_bins: int = NUM_BINS) -> None:
        self.bins = np.zeros(num_bins, np.int64)
        self.range = 0.0
        self.amax = 0.0
        self.count = 0
        self.min = np.inf  # the signed minimum: >= 0 says the tensor is one-sided (after a ReLU)

    def add(self, x: np.ndarray) -> None:
        a = np.abs(x.reshape(-1), dtype=np.float32)
        if not a.size:
            return
        self.min = min(self.min, float(x.min()))
        amax = float(a.max())
        if not np.isfinite(amax):
            raise CalibrationError("a calibrated activation holds inf/nan",
                                   hint="the model overflows on the calibration frames; check it in FP32 first")
        self.count += a.size
        self.amax = max(self.amax, amax)
        if amax == 0.0:
            self.bins[0] += a.size
            return
        n = len(self.bins)
        if self.range == 0.0:
            self.range = amax
        elif amax > self.range:
            factor = 1
            while self.range * factor < amax:
                factor *= 2
            if factor >= n:  # everything seen so far fits in the first bin of the new range
                merged = np.zeros(n, np.int64)
                merged[0] = self.bins.sum()
            else:
                merged = np.zeros(n, np.int64)
                merged[: n // factor] = self.bins.reshape(n // factor, factor).sum(axis=1)
            self.bins = merged
            self.range *= factor
        # OpenCV's histogram is multi-threaded and ~3x faster than numpy's bincount here. Its
        # upper edge is exclusive; every value is <= range, so what it left out equals the range
        # and belongs to the (closed) last bin.
        # It counts in float32, exact up to 2**24 per bin: feed it chunks of at most 2**23 values.
        for start in range(0, a.size, _HIST_CHUNK):
            part = a[start:start + _HIST_CHUNK]
            counts = cv2.calcHist([part.reshape(-1, 1)], [0], None, [n], [0.0, float(self.range)])
            counts = np.rint(counts.reshape(-1)).astype(np.int64)
            counts[-1] += part.size - int(counts.sum())
            self.bins += counts

    @property
    def bin_width(self) -> float:
        return self.range / len(self.bins) if self.range else 0.0

    def percentile_amax(self, percentile: float) -> float:
        total = self.bins.sum()
        if not total or self.range == 0.0:
            return 0.0
        cdf = np.cumsum(self.bins) / total
        i = int(np.searchsorted(cdf, percentile / 100.0))
        return min(self.amax, (i + 1) * self.bin_width)

    def entropy_amax(self, num_quant_bins: int = NUM_QUANT_BINS) -> float:
        """TensorRT's EntropyCalibration2 threshold: the clip ``i * bin_width`` whose
        ``num_quant_bins``-level quantization of the clipped histogram has the least KL
        divergence to it (outliers folded into the last kept bin)."""
        hist = self.bins.astype(np.float64)
        if self.range == 0.0 or not hist.sum():
            return 0.0
        nz = np.nonzero(hist)[0]
        last = int(nz[-1]) + 1
        if last <= num_quant_bins:  # the data already fits in the quantized levels
            return min(self.amax, last * self.bin_width)
        best_i, best_kl = last, np.inf
        total_after = np.cumsum(hist[::-1])[::-1]  # total_after[i] = sum(hist[i:])
        for i in range(num_quant_bins, last + 1):
            p = hist[:i].copy()
            if i < len(hist):
                p[i - 1] += total_after[i]
            # quantize hist[:i] (without outliers) into num_quant_bins levels, then expand
            # each level's count evenly over the bins of its group that are non-zero in p
            edges = (np.arange(num_quant_bins + 1) * i) // num_quant_bins
            group = np.repeat(np.arange(num_quant_bins), np.diff(edges))
            sliced = hist[:i]
            level_sum = np.bincount(group, weights=sliced, minlength=num_quant_bins)
            nonzero = p != 0
            level_nz = np.bincount(group, weights=nonzero.astype(np.float64), minlength=num_quant_bins)
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.where(nonzero, level_sum[group] / level_nz[group], 0.0)
            if np.any(nonzero & (q == 0)):
                continue  # q misses mass where p has it: infinite divergence
            ps, qs = p[nonzero], q[nonzero]
            ps = ps / ps.sum()
            qs = qs / qs.sum()
            kl = float(np.sum(ps * np.log(ps / qs)))
            if kl < best_kl:
                best_kl, best_i = kl, i
        return min(self.amax, best_i * self.bin_width)


@dataclass
class CalibrationRanges:
    """Symmetric per-tensor activation ranges and how they were obtained."""

    method: str
    amax: dict[str, float]  # the clip the method chose
    observed_amax: dict[str, float] = field(default_factory=dict)  # max |x| actually seen
    frames: int = 0
    observed_min: dict[str, float] = field(default_factory=dict)  # signed min seen (the CPU's U8 ranges)

    def one_sided_ranges(self) -> dict[str, tuple[float, float]]:
        """(lo, hi) per tensor for unsigned (U8) activations: (0, amax) where no negative value
        was seen, else the symmetric (-amax, amax). Tensors without a recorded min stay symmetric."""
        return {k: (0.0 if self.observed_min.get(k, -1.0) >= 0.0 else -v, v) for k, v in self.amax.items()}

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        return {k: (-v, v) for k, v in self.amax.items()}

    def tensors_data(self):
        """As ``onnxruntime.quantization.calibrate.TensorsData`` (for quantize_static)."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
        data = {k: TensorData(lowest=np.array(-v, np.float32), highest=np.array(v, np.float32))
                for k, v in self.amax.items()}
        return TensorsData(CalibrationMethod.MinMax, data)

    def write_ort_cache(self, path: str | os.PathLike[str]) -> Path:
        """ONNX Runtime's JSON range cache (``quantize_static(calibration_cache_path=)``)."""
        from onnxruntime.quantization.calibrate import save_tensors_data
        p = Path(path)
        save_tensors_data(self.tensors_data(), p)
        return p

    def to_dict(self) -> dict:
        return {"method": self.method, "frames": self.frames, "amax": dict(self.amax),
                "observed_amax": dict(self.observed_amax), "observed_min": dict(self.observed_min)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "CalibrationRanges":
        return cls(method=str(d["method"]), amax={k: float(v) for k, v in d["amax"].items()},
                   observed_amax={k: float(v) for k, v in (d.get("observed_amax") or {}).items()},
                   frames=int(d.get("frames", 0)),
                   observed_min={k: float(v) for k, v in (d.get("observed_min") or {}).items()})

    def save(self, path: str | os.PathLike[str]) -> None:
        from segrt.runtime.fsutil import write_json_atomic
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "CalibrationRanges":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _session(model: onnx.ModelProto, threads: int | None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    # Calibrated tensors must exist as computed by the original graph: no fusion may
    # swallow them (ORT's own calibrators also disable optimisation).
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # The default order runs the added ReduceMin/ReduceMax late and keeps every activation of a
    # 512x1024 U-Net alive (2.9 GB); priority-based order reduces each one as soon as it exists
    # (1.2 GB, the plain model needs 1.1 GB).
    if hasattr(ort, "ExecutionOrder"):
        so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _require_frames(frames: int) -> None:
    if not frames:
        raise CalibrationError("calibration received no frames",
                               hint="check the --calib source; calibration never falls back to random data")


def calibrate_ranges(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]], tensors: Sequence[str], *,
                     method: str = "minmax", percentile: float = DEFAULT_PERCENTILE, threads: int | None = None,
                     on_frame: Callable[[], None] | None = None, input_shape: Sequence[int] | None = None,
                     max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> CalibrationRanges:
    """Run ``model`` over ``feeds`` (one frame each, streamed) and return symmetric ranges
    for ``tensors``. Raises CalibrationError when ``feeds`` yields nothing.

    ``input_shape`` pins symbolic input dims for the memory estimate of the histogram
    methods; ``max_output_bytes`` bounds the activations fetched per forward pass."""
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if not tensors:
        raise CalibrationError("the model has no tensors to calibrate for the quantized op types")
    frames = 0
    if method == "minmax":
        aug, outs = _augmented_minmax(model, tensors)
        sess = _session(aug, threads)
        lo = np.full(len(tensors), np.inf, np.float64)
        hi = np.full(len(tensors), -np.inf, np.float64)
        for feed in feeds:
            vals = sess.run(outs, dict(feed))
            np.minimum(lo, np.array(vals[0::2], np.float64), out=lo)
            np.maximum(hi, np.array(vals[1::2], np.float64), out=hi)
            frames += 1
            if on_frame:
                on_frame()
        _require_frames(frames)
        amax = np.maximum(np.abs(lo), np.abs(hi))
        if not np.all(np.isfinite(amax)):
            bad = [t for t, a in zip(tensors, amax) if not np.isfinite(a)][:3]
            raise CalibrationError(f"activations {bad} hold inf/nan on the calibration frames",
                                   hint="the model overflows; check it in FP32 first")
        observed = {t: float(a) for t, a in zip(tensors, amax)}
        return CalibrationRanges(method, dict(observed), observed, frames, {t: float(v) for t, v in zip(tensors, lo)})

    # The histogram methods need the activations themselves, and ONNX Runtime holds every
    # requested output until run() returns: request them in groups of at most
    # ``max_output_bytes`` per run (one extra forward pass per extra group).
    sizes = tensor_bytes(model, tensors, input_shape)
    groups = group_by_budget(list(tensors), sizes, max_output_bytes)
    sessions = [(_session(_augmented_tensors(model, g), threads), g) for g in groups]
    if len(groups) > 1:
        log.info("histogram calibration: %d tensors (%.1f GB per frame) in %d passes of <= %.1f GB",
                 len(tensors), sum(sizes.values()) / 2 ** 30, len(groups), max_output_bytes / 2 ** 30)
    hists = {t: AbsHistogram() for t in tensors}
    for feed in feeds:
        feed = dict(feed)
        for sess, names in sessions:
            vals = sess.run(names, feed)
            for t, v in zip(names, vals):
                hists[t].add(v)
            del vals  # free these activations before the next pass
        frames += 1
        if on_frame:
            on_frame()
    _require_frames(frames)
    if method == "entropy":
        amax = {t: h.entropy_amax() for t, h in hists.items()}
    else:
        amax = {t: h.percentile_amax(percentile) for t, h in hists.items()}
    return CalibrationRanges(method, amax, {t: h.amax for t, h in hists.items()}, frames,
                             {t: float(h.min) for t, h in hists.items()})
