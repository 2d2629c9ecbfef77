"""The README's commands cannot rot: CI runs its test command, and this runs its quick start."""
from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _setup_commands() -> list[str]:
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def _quickstart_commands() -> list[str]:
    block = README.split("<!-- readme-test:begin -->", 1)[1].split("<!-- readme-test:end -->", 1)[0]
    body = re.search(r"```bash\n(.*?)```", block, flags=re.S).group(1)
    return [line.strip() for line in body.splitlines() if line.strip() and not line.startswith("#")]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    cmds = _setup_commands()
    assert len(cmds) == 2, cmds
    demo, tests = cmds
    assert demo.endswith("segrt demo") and "torch==2.14.1 torchvision==0.29.1" in demo
    assert "pytest" in tests and "torch==2.14.1 torchvision==0.29.1" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), ".ci/run must run the README's test command verbatim"


@pytest.mark.slow
def test_quickstart_commands_run(tmp_path):
    segrt = Path(sys.executable).parent / "segrt"
    assert segrt.exists(), "the segrt console script is not installed in this environment"
    have_trt = importlib.util.find_spec("tensorrt") is not None
    for cmd in _quickstart_commands():
        argv = shlex.split(cmd)
        assert argv[0] == "segrt"
        proc = subprocess.run([str(segrt), *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=900)
        if argv[1] == "build" and not have_trt:
            assert proc.returncode == 2, proc.stderr
            assert "TensorRT" in proc.stderr and "Traceback" not in proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1
            continue
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert (tmp_path / "overlay.mp4").stat().st_size > 10_000
    for name in ("bench.json", "bench.csv", "bench.png"):
        assert (tmp_path / "bench" / name).is_file(), name
