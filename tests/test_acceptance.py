"""``segrt doctor --acceptance``: step registry, ordering, JSON schema, --no-tensorrt, and the CPU run here.

No GPU step is verified here: on this machine they must skip, each saying what is missing.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from segrt.tools.acceptance import STEPS, run_acceptance
from segrt.tools.acceptance.context import AcceptanceContext
from segrt.tools.acceptance.registry import NEEDS, SCHEMA, Step, run_step, select_steps
from segrt.tools.acceptance.steps_cpu import pytest_counts
from segrt.tools.cli import main
from segrt.tools.doctor import FAIL, PASS, SKIP

CUDA_ONLY = ["cuda-python devices", "pinned buffers and events", "cuda graph", "pycuda three threads"]
STEP_KEYS = {"name", "needs", "status", "detail", "seconds", "data"}


def test_registry_order_and_needs():
    names = [s.name for s in STEPS]
    assert len(set(names)) == len(names)
    assert names[:3] == ["versions", "selftest", "gpu-marked tests"]
    assert names[3:7] == CUDA_ONLY  # CUDA-only steps before anything that needs TensorRT
    assert all(s.needs == "tensorrt" for s in STEPS[7:])
    assert {s.needs for s in STEPS} == set(NEEDS)
    assert all(s.what for s in STEPS)
    with pytest.raises(ValueError):
        Step("bad", "gpu", lambda ctx: (PASS, ""), "needs is not one of NEEDS")


def test_no_tensorrt_selects_only_the_cuda_steps():
    assert [s.name for s in select_steps(STEPS, no_tensorrt=True)] == CUDA_ONLY
    assert select_steps(STEPS, no_tensorrt=False) == STEPS


def test_a_raising_step_is_a_failure_with_its_line_and_a_missing_need_is_a_skip(tmp_path):
    ctx = AcceptanceContext(tmp_path)
    r = run_step(Step("raises", "cpu", lambda c: (PASS, str(int("not a number"))), "raises ValueError"), ctx)
    assert r.status == FAIL and r.detail.startswith("ValueError: invalid literal") and "test_acceptance.py:" in r.detail
    if ctx.missing("tensorrt"):
        r = run_step(Step("trt", "tensorrt", lambda c: (PASS, "ran"), "needs TensorRT"), ctx)
        assert r.status == SKIP and r.detail == ctx.missing("tensorrt")


def _check_schema(rep: dict, names: list[str], mode: str) -> None:
    assert rep["schema"] == SCHEMA and rep["mode"] == mode
    assert [s["name"] for s in rep["steps"]] == names
    assert all(set(s) == STEP_KEYS and s["status"] in (PASS, FAIL, SKIP) for s in rep["steps"])
    assert rep["summary"] == {st: sum(s["status"] == st for s in rep["steps"]) for st in (PASS, FAIL, SKIP)}
    assert rep["ok"] == (rep["summary"][FAIL] == 0)
    assert set(rep["facts"]) == {"cuda", "pycuda", "tensorrt"}


def test_cpu_run_writes_one_json_with_every_step_and_each_skip_reason(tmp_path):
    lines: list[str] = []
    out = tmp_path / "acceptance.json"
    rep = run_acceptance(out=out, workdir=tmp_path / "work", echo=lines.append)
    on_disk = json.loads(out.read_text())
    assert on_disk["steps"] == json.loads(json.dumps(rep["steps"], default=str))
    _check_schema(on_disk, [s.name for s in STEPS], "full")
    steps = {s["name"]: s for s in on_disk["steps"]}
    assert steps["versions"]["status"] == PASS and steps["versions"]["data"]["libraries"]["numpy"]
    assert steps["selftest"]["status"] == PASS and steps["selftest"]["data"]["checks"]
    assert on_disk["ok"] is True
    if rep["facts"]["tensorrt"] != "available":  # this machine: no TensorRT, no GPU
        for s in STEPS:
            if s.needs != "cpu":
                st = steps[s.name]
                assert st["status"] == SKIP and st["detail"], st
        assert "TensorRT" in steps["tensorrt build + stream"]["detail"]
        assert "PyCUDA" in steps["pycuda three threads"]["detail"]
        assert "cuda-python" in steps["cuda graph"]["detail"]
    assert len(lines) == len(STEPS) and lines[0].lstrip().startswith("[PASS] versions")


def test_cli_no_tensorrt_runs_only_the_cuda_steps(tmp_path, capsys):
    out = tmp_path / "a.json"
    rc = main(["doctor", "--acceptance", "--no-tensorrt", "--out", str(out)])
    rep = json.loads(out.read_text())
    _check_schema(rep, CUDA_ONLY, "no-tensorrt")
    assert rc == (0 if rep["ok"] else 1)
    text = capsys.readouterr().out
    assert "--no-tensorrt" in text and str(out) in text and "selftest" not in text


def test_cli_refuses_acceptance_options_without_acceptance(capsys):
    assert main(["doctor", "--no-tensorrt"]) == 2
    err = capsys.readouterr().err
    assert "--acceptance" in err and len(err.strip().splitlines()) == 1


def test_pytest_summary_counts():
    assert pytest_counts("3 passed, 2 skipped, 180 deselected in 4.1s") == {"passed": 3, "skipped": 2, "deselected": 180}
    assert pytest_counts("1 failed, 1 error in 2s") == {"failed": 1, "error": 1}


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None,
                    reason="cuda-python (cuda.bindings) not installed")
def test_every_cuda_python_name_the_steps_use_exists():
    from cuda.bindings import driver, runtime

    from segrt.tools.acceptance.cuda_checks import DRIVER_NAMES, RUNTIME_NAMES

    assert [n for n in RUNTIME_NAMES if not hasattr(runtime, n)] == []
    assert [n for n in DRIVER_NAMES if not hasattr(driver, n)] == []
    used = set()
    for mod in ("steps_cuda.py", "cuda_checks.py"):
        src = (Path(__file__).resolve().parents[1] / "tools" / "acceptance" / mod).read_text()
        used |= set(re.findall(r"\brt\.(\w+)", src)) | set(re.findall(r"\bdrv\.(\w+)", src))
    missing = sorted(n for n in used if not (hasattr(runtime, n) or hasattr(driver, n)))
    assert missing == [], missing


def _calls(module_file: str) -> list:
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[1] / "tools" / "acceptance" / module_file).read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_the_tensorrt_steps_call_the_library_with_arguments_it_takes():
    """The GPU steps cannot run here; at least every project call in them binds to the real signature."""
    import inspect

    from segrt.calibration.trt_legacy import usable_cache
    from segrt.runtime.backends.select import backend_for_bundle
    from segrt.runtime.pipeline import Pipeline
    from segrt.tools.bench import bench_bundles
    from segrt.tools.doctor import mask_agreement

    targets = {"bench_bundles": bench_bundles, "Pipeline": Pipeline, "backend_for_bundle": backend_for_bundle,
               "usable_cache": usable_cache, "mask_agreement": mask_agreement}
    if importlib.util.find_spec("segrt.export.engine_from_onnx") is not None:
        from segrt.export.engine_from_onnx import build_bundle_engine
        from segrt.runtime.backends.tensorrt import TensorRTBackend
        targets.update(build_bundle_engine=build_bundle_engine, TensorRTBackend=TensorRTBackend)
    seen = set()
    for call in _calls("steps_trt.py"):
        name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
        if name in targets:
            seen.add(name)
            inspect.signature(targets[name]).bind(*[None] * len(call.args), **{k.arg: None for k in call.keywords})
    assert {"bench_bundles", "Pipeline", "backend_for_bundle", "mask_agreement"} <= seen


def test_the_cuda_steps_use_only_names_the_project_wrappers_have():
    import ast

    from segrt.runtime import cuda_cudart, cuda_pycuda
    from segrt.tools.acceptance import cuda_checks

    wrappers = {"cuda_cudart": cuda_cudart, "cp": cuda_pycuda, "cc": cuda_checks}
    used = set()
    for mod in ("steps_cuda.py", "cuda_checks.py"):
        tree = ast.parse((Path(__file__).resolve().parents[1] / "tools" / "acceptance" / mod).read_text())
        used |= {(n.value.id, n.attr) for n in ast.walk(tree)
                 if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in wrappers}
    assert {w for w, _ in used} == set(wrappers)
    assert [f"{w}.{a}" for w, a in sorted(used) if not hasattr(wrappers[w], a)] == []
