"""The real Triton server for tests: its cached venv, or a skip that names why it is missing."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from segrt.tools.triton_server import VENV, ensure_server_venv

#: Parses config.pbtxt files with Triton's own ModelConfig protobuf, in the server venv (tritonclient
#: there pins protobuf<7; the main venv has protobuf 7). Prints one line per file: OK or the error.
PARSE_SCRIPT = """
import sys
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
for path in sys.argv[1:]:
    try:
        cfg = text_format.Parse(open(path).read(), model_config_pb2.ModelConfig())
        print("OK", path, cfg.max_batch_size)
    except text_format.ParseError as exc:
        print("ERR", path, str(exc).replace(chr(10), " "))
"""


def batched_tiny_bundle(path: Path, height: int, width: int, max_batch: int):
    """The tiny fused bundle with a symbolic batch axis 1..max_batch (its ops are batch-agnostic)."""
    import dataclasses

    from segrt.runtime.manifest import ShapeRange
    from segrt.tools.tiny_model import tiny_bundle, tiny_segmentation_onnx

    bundle = tiny_bundle(path, height, width)
    model = tiny_segmentation_onnx(height, width, fused=True)
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    bundle.update(dataclasses.replace(bundle.manifest, input=dataclasses.replace(
        bundle.manifest.input, dynamic=ShapeRange((1, height, width), (max_batch, height, width),
                                                  (max_batch, height, width)))))
    bundle.save_onnx("fp32", model)
    return bundle


def server_root_or_skip() -> Path:
    try:
        return ensure_server_venv()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        pytest.skip(f"the Triton server venv at {VENV} could not be made (pip needs the package index): {exc}")


def parse_model_configs(*paths: Path) -> dict[str, str]:
    """{path: "OK <max_batch_size>" or "ERR <message>"} from Triton's ModelConfig protobuf."""
    server_root_or_skip()
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", PARSE_SCRIPT, *map(str, paths)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    result = {}
    for line in out.splitlines():
        status, path, rest = line.split(" ", 2)
        result[path] = f"{status} {rest}"
    return result


