"""The TensorRT backend's buffer plan, as plain functions (no TensorRT, no CUDA).

The backend asks the engine for each I/O tensor (name, mode, data type, shape,
and for dynamic inputs the profile's min/opt/max), sets every input to its
profile MAX, asks the context for the resulting output shapes, and hands the
lot to :func:`plan_buffers`. The plan says how many bytes to pin on the host
and allocate on the device, once, for the worst case; per frame the backend
only takes views of those buffers.

Dtype sizes matter: ONNX ArgMax imports as TopK + a cast to INT64, so an
unfused "argmax in graph" output costs 8 bytes per pixel; AutoCast without
``keep_io_types`` makes engine I/O FP16. Both are read from the engine, never
assumed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from segrt.errors import EngineError

#: TensorRT ``DataType`` member name -> numpy dtype. BF16/FP8/INT4/FP4 have none.
TRT_DTYPES: Mapping[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}


def numpy_dtype(trt_dtype_name: str, tensor: str = "?") -> np.dtype:
    """numpy dtype for a TensorRT DataType member name; EngineError for BF16/FP8/INT4."""
    key = str(trt_dtype_name).rsplit(".", 1)[-1].upper()
    if key not in TRT_DTYPES:
        raise EngineError(f"engine I/O tensor {tensor!r} has type {key}, which numpy cannot hold",
                          hint="keep the graph's I/O in FP32/uint8 (AutoCast keep_io_types=True) and rebuild")
    return TRT_DTYPES[key]


@dataclass(frozen=True)
class IOTensor:
    """One engine I/O tensor as the engine reports it.

    ``shape`` has -1 for dynamic axes. ``profile`` is (min, opt, max) for a
    dynamic input. ``max_shape`` is the shape the context resolved once every
    input was set to its MAX (for outputs; -1 left there means data-dependent).
    """

    name: str
    is_input: bool
    dtype: str
    shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None
    max_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class BufferSpec:
    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]
    nbytes: int
    dynamic: bool  # shape varies per call (input in a dynamic profile, or an output depending on it)


@dataclass(frozen=True)
class BufferPlan:
    buffers: tuple[BufferSpec, ...]

    @property
    def inputs(self) -> tuple[BufferSpec, ...]:
        return tuple(b for b in self.buffers if b.is_input)

    @property
    def outputs(self) -> tuple[BufferSpec, ...]:
        return tuple(b for b in self.buffers if not b.is_input)

    @property
    def static(self) -> bool:
        """All shapes fixed: the only case where a CUDA graph can be captured once and replayed."""
        return not any(b.dynamic for b in self.buffers)

    @property
    def host_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers)

    def spec(self, name: str) -> BufferSpec:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)


def input_max_shape(t: IOTensor) -> tuple[int, ...]:
    """The shape to size an input for: its static shape, or its profile MAX."""
    if all(d >= 0 for d in t.shape):
        return tuple(int(d) for d in t.shape)
    if t.profile is None:
        raise EngineError(f"engine input {t.name!r} has dynamic shape {t.shape} but no optimisation profile",
                          hint="rebuild the engine with segrt build (it adds the profile from the manifest)")
    mx = tuple(int(d) for d in t.profile[2])
    if len(mx) != len(t.shape) or any(d <= 0 for d in mx):
        raise EngineError(f"engine input {t.name!r}: profile MAX {mx} does not fit shape {t.shape}")
    return mx


def fixed_by_profile(t: IOTensor) -> bool:
    """An input with -1 axes whose profile has min == max: it takes one shape only, so it is static."""
    return t.profile is not None and tuple(t.profile[0]) == tuple(t.profile[2])


def varies(t: IOTensor) -> bool:
    """Does this input's shape change from call to call?"""
    return any(d < 0 for d in t.shape) and not fixed_by_profile(t)


def volume(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def plan_buffers(tensors: Sequence[IOTensor]) -> BufferPlan:
    """Host/device buffer sizes for every I/O tensor, sized once for the worst case."""
    if not tensors:
        raise EngineError("engine has no I/O tensors")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise EngineError(f"engine lists duplicate I/O tensor names: {names}")
    any_dynamic_input = any(t.is_input and varies(t) for t in tensors)
    out = []
    for t in tensors:
        dt = numpy_dtype(t.dtype, t.name)
        if t.is_input:
            shape = input_max_shape(t)
            dynamic = varies(t)
        else:
            shape = tuple(int(d) for d in (t.max_shape if t.max_shape is not None else t.shape))
            if any(d < 0 for d in shape):
                raise EngineError(
                    f"engine output {t.name!r} has a data-dependent shape {shape} (NMS, NonZero)",
                    hint="preallocated buffers cannot hold it: export the model up to fixed-size outputs "
                         "(boxes + 28x28 mask logits) or run it with --backend onnxruntime")
            # An output follows its inputs: fixed when every input is (a min == max profile included).
            dynamic = any_dynamic_input and t.shape != shape
        out.append(BufferSpec(t.name, t.is_input, dt, shape, volume(shape) * dt.itemsize, dynamic))
    return BufferPlan(tuple(out))


def check_input(spec: BufferSpec, array: np.ndarray, profile: tuple | None = None) -> None:
    """A frame fits its input: same dtype, same rank, within the profile (or exactly the static shape)."""
    if array.dtype != spec.dtype:
        raise EngineError(f"input {spec.name!r} must be {spec.dtype}, got {array.dtype}",
                          hint="the bundle's preprocessing decides the dtype; feed what the manifest says")
    if array.ndim != len(spec.max_shape):
        raise EngineError(f"input {spec.name!r} must have rank {len(spec.max_shape)}, got shape {array.shape}")
    if not spec.dynamic:
        if tuple(array.shape) != spec.max_shape:
            raise EngineError(f"input {spec.name!r} must have shape {spec.max_shape}, got {array.shape}")
        return
    lo = profile[0] if profile is not None else (1,) * array.ndim
    if any(a < l or a > h for a, l, h in zip(array.shape, lo, spec.max_shape)):
        raise EngineError(f"input {spec.name!r} shape {array.shape} is outside the engine profile "
                          f"{tuple(lo)}..{spec.max_shape}", hint="resize frames to the model size, or rebuild")
