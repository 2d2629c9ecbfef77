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


