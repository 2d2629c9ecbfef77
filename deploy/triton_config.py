"""A Triton Inference Server model configuration, as a frozen dataclass and as ``config.pbtxt`` text.

Field names, enum values and nesting follow Triton's ``ModelConfig`` protobuf
(triton-inference-server/common ``protobuf/model_config.proto``; documented in
triton-inference-server/server ``docs/user_guide/model_configuration.md``). The tests parse every
generated file with that protobuf (``tritonclient.grpc.model_config_pb2`` + ``text_format``), so
an unknown field or a wrong type fails there, not in a server.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from segrt.errors import ConfigError

#: numpy dtype name -> Triton ``DataType`` enum name
TRITON_TYPES = {"uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                "float16": "TYPE_FP16", "float32": "TYPE_FP32"}
#: --platform -> (platform, backend) strings (triton-inference-server/core src/constants.h)
PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "onnxruntime"), "tensorrt": ("tensorrt_plan", "tensorrt"),
             "python": (None, "python")}
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


@dataclass(frozen=True)
class TensorConfig:
    """One input or output; ``dims`` exclude the batch axis when ``max_batch_size > 0``."""

    name: str
    dtype: str  # numpy name
    dims: tuple[int, ...]
    image_format: str | None = None  # FORMAT_NHWC / FORMAT_NCHW for image inputs

    def __post_init__(self) -> None:
        if self.dtype not in TRITON_TYPES:
            raise ConfigError(f"tensor {self.name!r}: dtype {self.dtype} has no Triton type",
                              hint=f"one of {', '.join(TRITON_TYPES)}")


@dataclass(frozen=True)
class TritonModelConfig:
    name: str
    platform: str  # a key of PLATFORMS
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    instances: int = 1
    kind: str = "cpu"
    max_queue_delay_us: int = 100
    dynamic_batching: bool = True
    trt_accelerator_fp16: bool = False  # ONNX Runtime's TensorRT execution accelerator (ONNX on a GPU)
    cc_model_filenames: tuple[tuple[str, str], ...] = ()
    parameters: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ConfigError(f"unknown Triton platform {self.platform!r}", hint=f"one of {', '.join(PLATFORMS)}")
        if self.kind not in KINDS:
            raise ConfigError(f"unknown instance kind {self.kind!r}", hint="cpu or gpu")
        if self.max_batch_size < 0 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise ConfigError(f"{self.name}: need max_batch_size >= 0, instances >= 1 and a queue delay >= 0")
        if self.trt_accelerator_fp16 and (self.platform != "onnxruntime" or self.kind != "gpu"):
            raise ConfigError("the TensorRT execution accelerator applies to ONNX models on a GPU",
                              hint="use it with --platform onnxruntime --kind gpu")
        if self.cc_model_filenames and self.platform != "tensorrt":
            raise ConfigError("cc_model_filenames apply to TensorRT plans only")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor_text(t: TensorConfig) -> str:
    fmt = f"\n    format: {t.image_format}" if t.image_format else ""
    return (f"  {{\n    name: {_quote(t.name)}\n    data_type: {TRITON_TYPES[t.dtype]}{fmt}\n"
            f"    dims: [ {', '.join(str(int(d)) for d in t.dims)} ]\n  }}")


def pbtxt_from_config(cfg: TritonModelConfig) -> str:
    """``config.pbtxt`` text (protobuf text format of ``inference.ModelConfig``)."""
    platform, backend = PLATFORMS[cfg.platform]
    lines = [f"name: {_quote(cfg.name)}"]
    lines.append(f"platform: {_quote(platform)}" if platform else f"backend: {_quote(backend)}")
    lines.append(f"max_batch_size: {cfg.max_batch_size}")
    lines.append("input [\n" + ",\n".join(_tensor_text(t) for t in cfg.inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(_tensor_text(t) for t in cfg.outputs) + "\n]")
    lines.append(f"instance_group [\n  {{\n    count: {cfg.instances}\n    kind: {KINDS[cfg.kind]}\n  }}\n]")
    if cfg.dynamic_batching and cfg.max_batch_size > 0:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n}}")
    for cc, filename in cfg.cc_model_filenames:
        lines.append(f"cc_model_filenames {{\n  key: {_quote(cc)}\n  value: {_quote(filename)}\n}}")
    if cfg.trt_accelerator_fp16:
        # triton-inference-server/onnxruntime_backend README: "TensorRT Optimization". No
        # int8_calibration_table_name ever: segrt's INT8 models carry Q/DQ nodes, and a table for a
        # Q/DQ model makes ONNX Runtime's session creation fail.
        lines.append("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n      {\n"
                     "        name: \"tensorrt\"\n"
                     "        parameters { key: \"precision_mode\" value: \"FP16\" }\n"
                     "        parameters { key: \"trt_engine_cache_enable\" value: \"1\" }\n"
                     "      }\n    ]\n  }\n}")
    for key, value in cfg.parameters:
        lines.append(f"parameters {{\n  key: {_quote(key)}\n  value: {{ string_value: {_quote(value)} }}\n}}")
    return "\n".join(lines) + "\n"
