"""Provenance: the check the runtime does before deserializing an engine (ok / rebuild / fallback)."""
from __future__ import annotations

from segrt.runtime.manifest import EngineRecord
from segrt.runtime.provenance import FALLBACK, OK, REBUILD, MachineInfo, check_engine, engines_for, make_record

REC = make_record(precision="fp16", path="model.fp16.geforce-rtx-4090-sm89.trt10.16.1.11.engine", sha256="e" * 64,
                  trt_version="10.16.1.11", gpu_name="NVIDIA GeForce RTX 4090", compute_capability=(8, 9),
                  onnx_sha256="o" * 64, build_options={"onnx": "fp16"}, layer_precisions={"fp16": 10})
HERE = MachineInfo("10.16.1.11", "NVIDIA GeForce RTX 4090", (8, 9))


def check(rec=REC, machine=HERE, engine="e" * 64, onnx="o" * 64):
    return check_engine(rec, machine, engine_sha256=engine, onnx_sha256=onnx)


def test_record_round_trips_through_the_manifest_format():
    again = EngineRecord.from_dict(REC.to_dict())
    assert again == REC and REC.built_at.endswith("+00:00")


def test_matching_engine_is_ok():
    d = check()
    assert d.action == OK and d.ok and not d.warning and "RTX 4090" in d.reason


def test_no_tensorrt_or_no_gpu_falls_back():
    assert check(machine=MachineInfo(None, None, None)).action == FALLBACK
    d = check(machine=MachineInfo("10.16.1.11", None, None))
    assert d.action == FALLBACK and "no NVIDIA GPU" in d.reason


def test_trt_version_must_match_exactly():
    d = check(machine=MachineInfo("10.16.1.12", "NVIDIA GeForce RTX 4090", (8, 9)))
    assert d.action == REBUILD and "TensorRT 10.16.1.11, this is 10.16.1.12" in d.reason
    d = check(machine=MachineInfo("10.16.1.12", "NVIDIA GeForce RTX 4090", (8, 9)), onnx=None)
    assert d.action == FALLBACK and "cannot rebuild without the ONNX" in d.reason and "ONNX Runtime" in d.reason


def test_version_compatible_engine_runs_on_a_later_tensorrt_only():
    vc = make_record(**{**_fields(REC), "build_options": {"version_compatible": True}})
    assert check(vc, MachineInfo("11.4.0.106", "NVIDIA GeForce RTX 4090", (8, 9))).action == OK
    assert check(vc, MachineInfo("10.3.0", "NVIDIA GeForce RTX 4090", (8, 9))).action == REBUILD


def test_compute_capability_mismatch_and_hardware_compat():
    orin = MachineInfo("10.16.1.11", "Orin (nvgpu)", (8, 7))
    d = check(machine=orin)
    assert d.action == REBUILD and "compute capability 8.9" in d.reason and "8.7" in d.reason
    amp = make_record(**{**_fields(REC), "build_options": {"hardware_compat": "AMPERE_PLUS"}})
    assert check(amp, MachineInfo("10.16.1.11", "NVIDIA A100", (8, 0))).action == OK
    assert check(amp, MachineInfo("10.16.1.11", "Tesla T4", (7, 5))).action == REBUILD


def test_same_cc_other_gpu_rebuilds_or_runs_with_a_warning():
    other = MachineInfo("10.16.1.11", "NVIDIA RTX 6000 Ada Generation", (8, 9))
    assert check(machine=other).action == REBUILD
    d = check(machine=other, onnx=None)  # cannot rebuild: run it, TensorRT allows same-SM engines
    assert d.action == OK and "rebuild on this GPU" in d.warning
    same = make_record(**{**_fields(REC), "build_options": {"hardware_compat": "SAME_COMPUTE_CAPABILITY"}})
    assert check(same, other).action == OK


def test_missing_or_modified_engine_and_changed_onnx():
    assert check(engine=None).action == REBUILD and "missing" in check(engine=None).reason
    assert "checksum" in check(engine="x" * 64).reason
    d = check(onnx="n" * 64)
    assert d.action == REBUILD and "ONNX changed" in d.reason


def test_engines_for_prefers_this_machine_then_newest():
    old = make_record(**{**_fields(REC), "path": "a.engine", "built_at": "2026-01-01T00:00:00+00:00"})
    new = make_record(**{**_fields(REC), "path": "b.engine", "built_at": "2026-06-01T00:00:00+00:00"})
    other = make_record(**{**_fields(REC), "path": "c.engine", "trt_version": "10.3.0", "gpu_name": "Orin",
                           "compute_capability": (8, 7), "built_at": "2026-09-01T00:00:00+00:00"})
    int8 = make_record(**{**_fields(REC), "path": "d.engine", "precision": "int8"})
    got = engines_for([other, old, int8, new], "fp16", HERE)
    assert [r.path for r in got] == ["b.engine", "a.engine", "c.engine"]


def _fields(r: EngineRecord) -> dict:
    d = r.to_dict()
    d["compute_capability"] = tuple(d["compute_capability"])
    return d


def test_platform_jetson_module_and_dla_cores_are_checked():
    """Every Orin reports GPU "Orin", SM 8.7: the module, CPU architecture and DLA cores decide."""
    agx = {"cpu_arch": "aarch64", "jetson_model": "NVIDIA Jetson AGX Orin Developer Kit", "dla_cores": 2}
    rec = make_record(**{**_fields(REC), "trt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": (8, 7),
                         "build_options": {**agx, "dla_core": 1}})
    agx_here = MachineInfo("10.3.0", "Orin", (8, 7), cpu_arch="aarch64", jetson_model=agx["jetson_model"],
                           dla_cores=2)
    assert check(rec, agx_here).action == OK
    nano = MachineInfo("10.3.0", "Orin", (8, 7), cpu_arch="aarch64",
                       jetson_model="NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", dla_cores=0)
    d = check(rec, nano)
    assert d.action == REBUILD and "AGX Orin" in d.reason and "Orin Nano" in d.reason
    one_core = MachineInfo("10.3.0", "Orin", (8, 7), cpu_arch="aarch64", jetson_model=agx["jetson_model"],
                           dla_cores=1)
    assert "DLA core 1" in check(rec, one_core).reason
    x86 = make_record(**{**_fields(REC), "build_options": {"cpu_arch": "x86_64"}})
    arm = MachineInfo("10.16.1.11", "NVIDIA GeForce RTX 4090", (8, 9), cpu_arch="aarch64")
    assert "x86_64" in check(x86, arm).reason and check(x86, arm).action == REBUILD


def test_an_ampere_plus_plan_is_never_accepted_on_a_jetson():
    amp = make_record(**{**_fields(REC), "build_options": {"hardware_compat": "AMPERE_PLUS"}})  # no cpu_arch: old
    orin = MachineInfo("10.16.1.11", "Orin", (8, 7), cpu_arch="aarch64", jetson_model="NVIDIA Jetson AGX Orin")
    d = check(amp, orin)
    assert d.action == REBUILD and "Jetson" in d.reason
    desktop = MachineInfo("10.16.1.11", "NVIDIA A100", (8, 0), cpu_arch="x86_64")
    assert check(amp, desktop).action == OK  # still fine between desktop Ampere+ GPUs
