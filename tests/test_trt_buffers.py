"""The buffer plan from engine I/O: dtype sizes, int64 ArgMax outputs, profile MAX shapes."""
from __future__ import annotations

import numpy as np
import pytest

from segrt.errors import EngineError
from segrt.runtime.trt_buffers import IOTensor, check_input, numpy_dtype, plan_buffers


def test_dtype_names_map_to_numpy_and_exotic_types_are_refused():
    assert numpy_dtype("FLOAT") == np.float32 and numpy_dtype("HALF") == np.float16
    assert numpy_dtype("DataType.INT64") == np.int64 and numpy_dtype("UINT8") == np.uint8
    assert numpy_dtype("BOOL") == np.bool_ and numpy_dtype("INT8") == np.int8 and numpy_dtype("INT32") == np.int32
    for t in ("BF16", "FP8", "INT4", "FP4"):
        with pytest.raises(EngineError, match="keep_io_types"):
            numpy_dtype(t, "logits")


def test_fused_static_graph_sizes():
    plan = plan_buffers([IOTensor("frame", True, "UINT8", (1, 256, 512, 3)),
                         IOTensor("mask", False, "UINT8", (1, 256, 512), max_shape=(1, 256, 512))])
    assert plan.spec("frame").nbytes == 256 * 512 * 3          # uint8 in: 1 byte per channel
    assert plan.spec("mask").nbytes == 256 * 512               # uint8 class ids out
    assert plan.static and plan.host_bytes == 256 * 512 * 4
    assert [b.name for b in plan.inputs] == ["frame"] and [b.name for b in plan.outputs] == ["mask"]


def test_argmax_int64_output_costs_8_bytes_per_pixel():
    plan = plan_buffers([IOTensor("input", True, "FLOAT", (1, 3, 256, 512)),
                         IOTensor("mask", False, "INT64", (1, 256, 512), max_shape=(1, 256, 512))])
    assert plan.spec("mask").dtype == np.int64
    assert plan.spec("mask").nbytes == 8 * 256 * 512
    assert plan.spec("input").nbytes == 4 * 3 * 256 * 512


def test_autocast_fp16_io_halves_the_bytes():
    plan = plan_buffers([IOTensor("input", True, "HALF", (1, 3, 64, 64)),
                         IOTensor("logits", False, "HALF", (1, 21, 64, 64), max_shape=(1, 21, 64, 64))])
    assert plan.spec("logits").nbytes == 2 * 21 * 64 * 64


def test_dynamic_input_sized_for_profile_max_and_outputs_for_resolved_max():
    prof = ((1, 128, 256, 3), (1, 256, 512, 3), (4, 512, 1024, 3))
    plan = plan_buffers([IOTensor("frame", True, "UINT8", (-1, -1, -1, 3), profile=prof),
                         IOTensor("mask", False, "UINT8", (-1, -1, -1), max_shape=(4, 512, 1024))])
    assert plan.spec("frame").max_shape == (4, 512, 1024, 3) and plan.spec("frame").dynamic
    assert plan.spec("mask").nbytes == 4 * 512 * 1024 and plan.spec("mask").dynamic
    assert not plan.static  # no CUDA graph


def test_errors_name_the_tensor_and_the_fix():
    with pytest.raises(EngineError, match="no optimisation profile"):
        plan_buffers([IOTensor("frame", True, "UINT8", (-1, 256, 512, 3))])
    with pytest.raises(EngineError, match="data-dependent") as e:  # Mask R-CNN NMS output
        plan_buffers([IOTensor("frame", True, "UINT8", (1, 320, 480, 3)),
                      IOTensor("boxes", False, "FLOAT", (-1, 4), max_shape=(-1, 4))])
    assert "onnxruntime" in str(e.value)
    with pytest.raises(EngineError, match="duplicate"):
        plan_buffers([IOTensor("x", True, "FLOAT", (1,)), IOTensor("x", False, "FLOAT", (1,), max_shape=(1,))])
    with pytest.raises(EngineError, match="no I/O"):
        plan_buffers([])


def test_check_input_against_static_and_dynamic_specs():
    static = plan_buffers([IOTensor("frame", True, "UINT8", (1, 4, 6, 3))]).spec("frame")
    check_input(static, np.zeros((1, 4, 6, 3), np.uint8))
    with pytest.raises(EngineError, match="must be uint8"):
        check_input(static, np.zeros((1, 4, 6, 3), np.float32))
    with pytest.raises(EngineError, match="must have shape"):
        check_input(static, np.zeros((1, 4, 7, 3), np.uint8))
    prof = ((1, 2, 2, 3), (1, 4, 4, 3), (2, 8, 8, 3))
    dyn = plan_buffers([IOTensor("frame", True, "UINT8", (-1, -1, -1, 3), profile=prof)]).spec("frame")
    check_input(dyn, np.zeros((2, 5, 8, 3), np.uint8), prof)
    with pytest.raises(EngineError, match="outside the engine profile"):
        check_input(dyn, np.zeros((1, 9, 8, 3), np.uint8), prof)
    with pytest.raises(EngineError, match="outside the engine profile"):
        check_input(dyn, np.zeros((1, 1, 8, 3), np.uint8), prof)
    with pytest.raises(EngineError, match="rank"):
        check_input(dyn, np.zeros((8, 8, 3), np.uint8), prof)


def test_a_profile_with_min_equal_max_is_static_so_a_cuda_graph_is_allowed():
    # ONNX exported with dynamic axes, engine built with the fixed profile min = opt = max (trt_plan)
    fixed = ((1, 256, 512, 3),) * 3
    plan = plan_buffers([IOTensor("frame", True, "UINT8", (-1, -1, -1, 3), profile=fixed),
                         IOTensor("mask", False, "UINT8", (-1, -1, -1), max_shape=(1, 256, 512))])
    assert not plan.spec("frame").dynamic and not plan.spec("mask").dynamic
    assert plan.static and plan.spec("frame").max_shape == (1, 256, 512, 3)
    check_input(plan.spec("frame"), np.zeros((1, 256, 512, 3), np.uint8))
    with pytest.raises(EngineError, match="must have shape"):
        check_input(plan.spec("frame"), np.zeros((1, 128, 512, 3), np.uint8))
    # one axis free (min != max) keeps it dynamic
    ranged = ((1, 256, 512, 3), (1, 256, 512, 3), (2, 256, 512, 3))
    plan = plan_buffers([IOTensor("frame", True, "UINT8", (-1, -1, -1, 3), profile=ranged),
                         IOTensor("mask", False, "UINT8", (-1, -1, -1), max_shape=(2, 256, 512))])
    assert not plan.static and plan.spec("mask").dynamic
