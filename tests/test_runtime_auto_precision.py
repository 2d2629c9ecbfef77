"""--precision auto: candidates per device, the fastest wins, the per-machine cache in the manifest."""
from __future__ import annotations

import shutil

import pytest

import segrt.runtime.auto_precision as auto
from segrt.errors import ConfigError
from segrt.runtime.auto_precision import (
    cached_choice,
    cpu_candidates,
    explain_choice,
    fastest,
    gpu_candidates,
    resolve_auto,
)
from segrt.runtime.bundle import Bundle
from segrt.runtime.machine import cpu_fingerprint, cpu_info_from_text, gpu_fingerprint
from segrt.runtime.manifest import Artifact
from segrt.tools.tiny_model import tiny_bundle

AMD = cpu_info_from_text("model name\t: AMD EPYC\nflags\t\t: avx2 fma f16c\n", "x86_64", 2)
SPR = cpu_info_from_text("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_fp16 amx_int8\n", "x86_64", 8)
ORIN = cpu_info_from_text("Features\t: fp asimd asimdhp asimddp\n", "aarch64", 8)


def _with(bundle: Bundle, precision: str, passed: bool = True, sha: str = "ab" * 32) -> Bundle:
    """Register a copy of the FP32 file as ``precision`` (a real, runnable artifact)."""
    name = f"model.{precision}.onnx"
    shutil.copy(bundle.path / "model.onnx", bundle.path / name)
    art = Artifact(precision=precision, path=name, sha256=sha, accuracy={"passed": passed, "agreement": 0.995})
    bundle.update(bundle.manifest.with_artifact(art))
    return bundle


@pytest.fixture()
def bundle(tmp_path):
    return tiny_bundle(tmp_path / "tiny", 32, 48)


def test_fp16_only_on_a_cpu_with_fp16_arithmetic(bundle):
    _with(bundle, "fp16")
    assert not AMD.has_fp16_arithmetic and SPR.has_fp16_arithmetic and ORIN.has_fp16_arithmetic
    cands, skipped = cpu_candidates(bundle.manifest, AMD, ["onnxruntime"])
    assert cands == [("fp32", "onnxruntime")] and "FP16" in skipped["fp16"]
    cands, _ = cpu_candidates(bundle.manifest, ORIN, ["onnxruntime"])
    assert ("fp16", "onnxruntime") in cands


def test_cpu_int8_replaces_the_tensorrt_int8_and_failed_gates_are_out(bundle):
    _with(bundle, "int8")
    cands, _ = cpu_candidates(bundle.manifest, AMD, ["onnxruntime"])
    assert ("int8", "onnxruntime") in cands  # no CPU graph: the only INT8 there is
    _with(bundle, "int8-cpu")
    cands, skipped = cpu_candidates(bundle.manifest, AMD, ["onnxruntime", "openvino"])
    assert cands == [("fp32", "onnxruntime"), ("fp32", "openvino"), ("int8-cpu", "onnxruntime"),
                     ("int8-cpu", "openvino"), ("int8", "openvino")]  # OpenVINO reads the TensorRT Q/DQ fast
    assert "int8-cpu" in skipped["int8/onnxruntime"]
    _with(bundle, "int8-cpu", passed=False)
    cands, skipped = cpu_candidates(bundle.manifest, AMD, ["onnxruntime"])
    assert ("int8-cpu", "onnxruntime") not in cands and "gate" in skipped["int8-cpu"]


def test_gpu_never_takes_the_cpu_variant(bundle):
    _with(bundle, "int8-cpu")
    _with(bundle, "fp16")
    cands, skipped = gpu_candidates(bundle.manifest, ["fp16", "int8-cpu", "fp32"])
    assert cands == [("fp16", "tensorrt"), ("fp32", "tensorrt")] and "int8-cpu" in skipped


def test_fastest_and_the_explanation():
    ms = {"fp32/onnxruntime": 61.5, "int8-cpu/onnxruntime": 47.3}
    assert fastest(ms) == "int8-cpu/onnxruntime"
    assert explain_choice("int8-cpu/onnxruntime", ms, "this CPU") == "int8-cpu: 47 ms vs fp32 62 ms on this CPU"
    two = {**ms, "int8-cpu/openvino": 40.0}
    assert explain_choice("int8-cpu/openvino", two, "this CPU").startswith("int8-cpu/openvino: 40 ms vs int8-cpu/")
    with pytest.raises(ConfigError):
        fastest({})


def test_fingerprints_differ_by_machine_and_runtime():
    a = cpu_fingerprint(AMD, "onnxruntime", "1.32", None)
    assert a == cpu_fingerprint(AMD, "onnxruntime", "1.32", None) and a.startswith("cpu:")
    assert a != cpu_fingerprint(SPR, "onnxruntime", "1.32", None)
    assert a != cpu_fingerprint(AMD, "onnxruntime", "1.33", None)
    assert a != cpu_fingerprint(AMD, "onnxruntime", "1.32", 1)
    assert gpu_fingerprint("Orin", (8, 7), "10.3") != gpu_fingerprint("Orin", (8, 7), "10.7")


def _fake_timer(table, calls):
    def measure(bundle, candidates, threads):
        calls.extend(candidates)
        return {f"{p}/{b}": table[p] for p, b in candidates}, {}
    return measure


def test_measures_once_then_uses_the_cache(bundle, monkeypatch):
    monkeypatch.setattr(auto, "this_cpu", lambda: AMD)
    monkeypatch.setattr(auto, "installed_cpu_backends", lambda: ["onnxruntime"])
    _with(bundle, "int8-cpu")
    calls: list = []
    said: list[str] = []
    timer = _fake_timer({"fp32": 62.0, "int8-cpu": 47.0}, calls)
    first = resolve_auto(bundle, measure=timer, echo=said.append)
    assert (first.precision, first.backend, first.cached) == ("int8-cpu", "onnxruntime", False)
    assert sorted(calls) == [("fp32", "onnxruntime"), ("int8-cpu", "onnxruntime")]
    assert "int8-cpu: 47 ms vs fp32 62 ms on this CPU" in said[-1]
    # cached in the manifest on disk, under this machine's fingerprint
    reopened = Bundle.open(bundle.path)
    (fp, rec), = reopened.manifest.speed.items()
    assert fp.startswith("cpu:") and rec["choice"] == "int8-cpu/onnxruntime" and "AMD EPYC" in rec["machine"]
    calls.clear()
    second = resolve_auto(reopened, measure=timer, echo=said.append)
    assert calls == [] and second.cached and second.precision == "int8-cpu" and "(cached)" in said[-1]


def test_another_machine_measures_again(bundle, monkeypatch):
    monkeypatch.setattr(auto, "installed_cpu_backends", lambda: ["onnxruntime"])
    _with(bundle, "int8-cpu")
    calls: list = []
    monkeypatch.setattr(auto, "this_cpu", lambda: AMD)
    resolve_auto(bundle, measure=_fake_timer({"fp32": 62.0, "int8-cpu": 47.0}, calls), echo=lambda _m: None)
    calls.clear()
    monkeypatch.setattr(auto, "this_cpu", lambda: SPR)  # a different CPU: its own measurement and record
    other = resolve_auto(Bundle.open(bundle.path), measure=_fake_timer({"fp32": 20.0, "int8-cpu": 25.0}, calls),
                         echo=lambda _m: None)
    assert len(calls) == 2 and other.precision == "fp32" and not other.cached
    assert len(Bundle.open(bundle.path).manifest.speed) == 2


def test_a_requantized_artifact_measures_again(bundle, monkeypatch):
    monkeypatch.setattr(auto, "this_cpu", lambda: AMD)
    monkeypatch.setattr(auto, "installed_cpu_backends", lambda: ["onnxruntime"])
    _with(bundle, "int8-cpu")
    calls: list = []
    timer = _fake_timer({"fp32": 62.0, "int8-cpu": 47.0}, calls)
    resolve_auto(bundle, measure=timer, echo=lambda _m: None)
    b = _with(Bundle.open(bundle.path), "int8-cpu", sha="cd" * 32)
    assert cached_choice(b.manifest, next(iter(b.manifest.speed)), {"fp32": b.manifest.artifacts["fp32"].sha256,
                                                                     "int8-cpu": "cd" * 32}) is None
    calls.clear()
    resolve_auto(b, measure=timer, echo=lambda _m: None)
    assert len(calls) == 2


def test_real_measurement_on_this_machine(bundle):
    """No fake timer: every installed CPU backend runs the tiny model and the fastest is kept."""
    said: list[str] = []
    choice = resolve_auto(bundle, echo=said.append)
    assert choice.precision == "fp32" and choice.backend in auto.installed_cpu_backends()
    assert all(v > 0 for v in choice.ms.values()) and len(choice.ms) == len(auto.installed_cpu_backends())
    assert choice.ms[choice.key] == min(choice.ms.values()) and "on this CPU" in said[-1]


def test_pipeline_runs_what_auto_chose(bundle, capsys):
    from segrt.runtime.pipeline import Pipeline
    summary = Pipeline(bundle, "synthetic://?size=96x64&frames=4&seed=3", None, precision="auto", max_frames=4).run()
    assert summary.frames == 4 and summary.backend["precision"] == "fp32"
    assert "precision auto: fp32" in capsys.readouterr().out


def test_interleaved_medians_rotate_and_time_every_call():
    order: list[str] = []
    ms = auto.interleaved_medians({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                  warmup=1, rounds=2, per_round=2)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    # warm-up a, b; round 1: a (untimed + 2), b (untimed + 2); round 2 starts with b
    assert order[:2] == ["a", "b"] and order[2:5] == ["a"] * 3 and order[5:8] == ["b"] * 3
    assert order[8:11] == ["b"] * 3


def test_auto_refuses_a_triton_backend(bundle):
    with pytest.raises(ConfigError, match="triton"):
        resolve_auto(bundle, backend="triton://localhost:8000/seg")
