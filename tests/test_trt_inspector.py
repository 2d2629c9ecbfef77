"""Per-layer precision counts from the engine inspector's JSON, in the 10.x and the 11.x schema.

The samples follow NVIDIA's documentation: 10.x lists ``"Bindings"`` as names and each
layer tensor's ``"Format/Datatype"`` as one string (verbose with an execution context,
short such as ``"Half"`` without); 11.x replaces ``Bindings`` with ``"I/O Tensors"``
objects and splits ``Format`` and ``DataType``.
"""
from __future__ import annotations

import json

import pytest

from segrt.errors import EngineError
from segrt.export.engine_from_onnx import (inspector_schema, layer_precision, layer_precisions_from_inspector,
                                           precision_summary)


def t10(name, fmt):
    return {"Name": name, "Location": "Device", "Dimensions": [1, 32, 64, 128], "Format/Datatype": fmt}


def t11(name, dtype, fmt="Row major linear format (kLINEAR)"):
    return {"Name": name, "Location": "Device", "Dimensions": [1, 32, 64, 128], "Format": fmt, "DataType": dtype}


INFO_10 = {
    "Layers": [
        {"Name": "Reformatting CopyNode for Input Tensor 0 to conv1", "LayerType": "Reformat",
         "Inputs": [t10("frame", "Row major linear UInt8 format")],
         "Outputs": [t10("frame_f", "Row major linear FP32 format")]},
        {"Name": "conv1 + relu1", "LayerType": "CaskConvolution",
         "Inputs": [t10("x", "Channel major INT8 format where channel % 32 == 0")],
         "Outputs": [t10("y", "Channel major FP16 format where channel % 8 == 0")],
         "TacticName": "sm86_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32"},
        {"Name": "conv2", "LayerType": "CaskConvolution",
         "Inputs": [t10("y", "Half")], "Outputs": [t10("z", "Half")]},           # short form (no context)
        {"Name": "head", "LayerType": "CaskConvolution",
         "Inputs": [t10("z", "Float")], "Outputs": [t10("logits", "Float")]},
        {"Name": "argmax", "LayerType": "TopK",
         "Inputs": [t10("logits", "Row major linear FP32 format")],
         "Outputs": [t10("idx", "Row major linear Int32 format")]},
        {"Name": "shape_math", "LayerType": "ElementWise",
         "Inputs": [t10("s", "Int64")], "Outputs": [t10("s2", "Int64")]},
    ],
    "Bindings": ["frame", "mask"],
}

INFO_11 = {
    "Layers": [
        {"Name": "quant_in", "LayerType": "Quantize",
         "Inputs": [t11("frame_f", "Float")], "Outputs": [t11("q", "Int8")]},
        {"Name": "conv1", "LayerType": "CaskConvolution",
         "Inputs": [t11("q", "Int8", "Channel major format where channel % 32 == 0 (kCHW32)")],
         "Outputs": [t11("y", "Int8")]},
        {"Name": "conv2", "LayerType": "CaskConvolution",
         "Inputs": [t11("y", "Int8")], "Outputs": [t11("z", "Half")]},
        {"Name": "up", "LayerType": "Resize", "Inputs": [t11("z", "Half")], "Outputs": [t11("u", "Half")]},
        {"Name": "to_fp32", "LayerType": "Reformat", "Inputs": [t11("u", "Half")], "Outputs": [t11("v", "Float")]},
        {"Name": "argmax", "LayerType": "TopK", "Inputs": [t11("v", "Float")], "Outputs": [t11("m", "UInt8")]},
    ],
    "I/O Tensors": [
        {"Name": "frame", "IOMode": "Input", "DataType": "UInt8", "Dimensions": [1, 256, 512, 3],
         "Location": "Device", "IsShapeInferenceIO": False,
         "ProfileInfo": [{"MinShape": [1, 256, 512, 3], "OptShape": [1, 256, 512, 3],
                          "MaxShape": [1, 256, 512, 3], "Format": "Row major linear UInt8 format (kLINEAR)"}]},
        {"Name": "mask", "IOMode": "Output", "DataType": "UInt8", "Dimensions": [1, 256, 512],
         "Location": "Device", "IsShapeInferenceIO": False},
    ],
}


def test_schema_is_detected():
    assert inspector_schema(INFO_10) == "10.x"
    assert inspector_schema(INFO_11) == "11.x"
    assert inspector_schema({"Layers": []}) == "unknown"


def test_counts_from_10x_json():
    counts = layer_precisions_from_inspector(json.dumps(INFO_10))
    assert counts == {"layers": 6, "fp32": 3, "int8": 1, "fp16": 1, "other": 1, "reformat": 1}
    # the reformat (uint8 -> fp32) counts as FP32 compute and is also listed as a reformat


def test_counts_from_11x_json():
    counts = layer_precisions_from_inspector(INFO_11)
    assert counts == {"layers": 6, "int8": 3, "fp16": 2, "fp32": 1, "reformat": 1}


def test_int8_layer_with_fp16_output_counts_as_int8():
    assert layer_precision(INFO_10["Layers"][1]) == "int8"
    assert layer_precision(INFO_11["Layers"][2]) == "int8"


def test_names_only_verbosity_is_unknown_not_wrong():
    counts = layer_precisions_from_inspector({"Layers": ["conv1 + relu1", "head"], "Bindings": ["x", "y"]})
    assert counts == {"layers": 2, "unknown": 2}


@pytest.mark.parametrize("text", ["Row major linear BF16 format", "BFloat16"])
def test_bf16_is_not_mistaken_for_fp32(text):
    assert layer_precision({"Inputs": [{"Format/Datatype": text}]}) == "bf16"


def test_fp8_and_uint8_classification():
    assert layer_precision({"Inputs": [{"DataType": "FP8"}], "Outputs": [{"DataType": "Half"}]}) == "fp8"
    assert layer_precision({"Inputs": [{"DataType": "UInt8"}]}) == "other"  # uint8 is not INT8 compute


def test_summary_line_for_diagnosing_int8_speed():
    line = precision_summary(layer_precisions_from_inspector(INFO_11))
    assert line == "6 layers: 3 INT8, 2 FP16, 1 FP32 (1 reformat)"


def test_malformed_json_is_an_engine_error():
    with pytest.raises(EngineError, match="invalid JSON"):
        layer_precisions_from_inspector("{not json")
    with pytest.raises(EngineError, match="no 'Layers'"):
        layer_precisions_from_inspector({"Bindings": []})
