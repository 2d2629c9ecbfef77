"""pip's resolver accepts the runtime's dependencies on every platform segrt claims.

JetPack 6 is CPython 3.10 on aarch64 (Ubuntu 22.04, glibc 2.35); desktops are x86_64;
3.11 and 3.12 are claimed too. Each case runs ``pip install --dry-run --target <tmp>
--python-version X --platform manylinux2014_<arch> --platform manylinux_2_NN_<arch>...
--only-binary=:all:`` on the requirements declared in pyproject.toml. The glibc 2.17..2.35
tags matter: onnxruntime >= 1.17 ships only ``manylinux_2_27``/``_2_28`` wheels, which
``--platform manylinux2014_*`` alone would never accept. A case skips, with pip's reason,
only when the package index cannot be reached.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segrt.runtime.versions import version_tuple

ROOT = Path(__file__).resolve().parents[1]
GLIBC_MINORS = (17, 24, 26, 27, 28, 31, 34, 35)  # manylinux tags a glibc 2.35 system (Ubuntu 22.04) accepts
NETWORK_ERRORS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                  "Network is unreachable", "ProxyError", "ConnectTimeoutError", "Could not fetch URL",
                  "Name or service not known", "Connection refused")
pytestmark = [pytest.mark.network, pytest.mark.slow]


def _project() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def runtime_requirements() -> list[str]:
    return list(_project()["dependencies"])


def extra(name: str) -> list[str]:
    return list(_project()["optional-dependencies"][name])


def resolve(requirements: list[str], python: str, arch: str, tmp_path: Path,
            constraints: list[str] = ()) -> dict[str, str]:
    """{distribution name: version} pip would install, or skip when the index is unreachable."""
    platforms = [f"manylinux2014_{arch}"] + [f"manylinux_2_{m}_{arch}" for m in GLIBC_MINORS]
    report = tmp_path / f"report-{python}-{arch}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--disable-pip-version-check", "--timeout", "20", "--retries", "1",
           "--target", str(tmp_path / "target"), "--python-version", python,
           *[a for p in platforms for a in ("--platform", p)], "--only-binary=:all:",
           "--report", str(report), *requirements]
    if constraints:
        cfile = tmp_path / "constraints.txt"
        cfile.write_text("\n".join(constraints) + "\n")
        cmd += ["-c", str(cfile)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        hit = next((e for e in NETWORK_ERRORS if e in out), None)
        if hit:
            pytest.skip(f"package index unreachable ({hit}): "
                        + next(line for line in out.splitlines() if hit in line).strip()[:200])
        errors = [line for line in out.splitlines() if line.startswith("ERROR")]
        pytest.fail(f"pip cannot resolve {requirements} for cp{python} {arch}: {' | '.join(errors)[-1500:]}")
    data = json.loads(report.read_text())
    return {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"] for i in data["install"]}


@pytest.mark.parametrize("arch", ["aarch64", "x86_64"])
@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_runtime_dependencies_resolve(python, arch, tmp_path):
    got = resolve(runtime_requirements(), python, arch, tmp_path)
    assert {"numpy", "onnx", "onnxruntime"} <= set(got), got
    assert version_tuple(got["onnxruntime"]) >= (1, 23)
    assert not [n for n in got if n.startswith("opencv")], "the runtime must not pull a pip OpenCV over a system cv2"


def test_jetpack6_recipe_keeps_numpy_1(tmp_path):
    """The README's Jetson step: segrt's runtime under the venv's 'numpy<2' constraint on cp310 aarch64.

    Without the constraint numpy 2 comes in even when numpy 1.x was installed first:
    onnx needs ml_dtypes, whose newest release (0.6) requires numpy >= 2.
    """
    got = resolve(runtime_requirements(), "3.10", "aarch64", tmp_path, constraints=["numpy<2"])
    assert version_tuple(got["numpy"]) < (2,), got
    assert version_tuple(got["onnxruntime"])[:2] == (1, 23), got  # the newest cp310 wheel
    unconstrained = resolve(runtime_requirements(), "3.10", "aarch64", tmp_path)
    assert version_tuple(unconstrained["numpy"]) >= (2,), "numpy 2 no longer comes in: the README can relax"


@pytest.mark.parametrize("arch", ["aarch64", "x86_64"])
def test_desktop_opencv_extra_resolves_with_numpy_1(arch, tmp_path):
    got = resolve(["numpy<2", *runtime_requirements(), *extra("opencv")], "3.10", arch, tmp_path)
    assert version_tuple(got["numpy"]) < (2,) and "opencv-python-headless" in got, got


@pytest.mark.parametrize("cuda", [12, 13])
def test_tensorrt_extra_pins_cuda_python_to_its_cuda_major(cuda, tmp_path):
    reqs = extra(f"tensorrt-cu{cuda}")
    assert any(r.startswith(f"tensorrt-cu{cuda}") for r in reqs)
    cuda_python = [r for r in reqs if r.startswith("cuda-python")]
    assert len(cuda_python) == 1, reqs
    got = resolve(cuda_python, "3.10" if cuda == 12 else "3.12", "x86_64", tmp_path)
    assert version_tuple(got["cuda-python"])[0] == cuda, got
    if cuda == 12:
        assert version_tuple(got["cuda-python"]) >= (12, 6, 1)  # 12.6.0 has no cuda.bindings


def test_no_extra_mixes_cuda_majors():
    extras = _project()["optional-dependencies"]
    assert "tensorrt" not in extras, "an unsplit [tensorrt] extra pulls the newest (CUDA 13) cuda-python"
    for name, reqs in extras.items():
        majors = {m for r in reqs for m in re.findall(r"(?:tensorrt-cu|cuda-python>=)(\d+)", r)}
        assert len(majors) <= 1, (name, reqs)


def test_fast_extra_resolves_on_jetpack6_with_numpy_1(tmp_path):
    """``segrt[fast]`` (numba, the compiled instance paste and drawing) installs on a Jetson's cp310
    aarch64 under the README's 'numpy<2' constraint, and on desktops."""
    got = resolve([*runtime_requirements(), *extra("fast")], "3.10", "aarch64", tmp_path, constraints=["numpy<2"])
    assert "numba" in got and "llvmlite" in got and version_tuple(got["numpy"]) < (2,), got
    got = resolve([*runtime_requirements(), *extra("fast")], "3.12", "x86_64", tmp_path)
    assert "numba" in got, got
