"""``segrt deploy triton``: repositories whose config.pbtxt Triton's own ModelConfig protobuf accepts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from segrt.deploy.triton_config import TensorConfig, TritonModelConfig, pbtxt_from_config
from segrt.deploy.triton_repo import deploy_triton
from segrt.errors import BundleError, ConfigError
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import EngineRecord

from _export_helpers import cli
from _triton_helpers import batched_tiny_bundle, parse_model_configs

H, W = 32, 48


@pytest.fixture()
def batched(tmp_path) -> Bundle:
    """The tiny bundle with a batch axis 1..8."""
    return batched_tiny_bundle(tmp_path / "tiny", H, W, 8)


def _text(path: Path) -> str:
    return path.read_text()


def test_every_platform_writes_a_config_the_protobuf_accepts(batched, tmp_path, capsys):
    repo = tmp_path / "repo"
    rc, out, err = cli(capsys, "deploy", "triton", str(batched.path), "-o", str(repo), "--name", "seg_ort",
                       "--kind", "gpu", "--instances", "2", "--trt-fp16")
    assert rc == 0, err
    rc, _, err = cli(capsys, "deploy", "triton", str(batched.path), "-o", str(repo), "--name", "seg_py",
                     "--platform", "python", "--max-batch", "4")
    assert rc == 0, err
    # Two engines for two GPUs: cc_model_filenames picks the plan per compute capability.
    for cc in ((8, 7), (8, 9)):
        eng = batched.path / f"model.fp32.sm{cc[0]}{cc[1]}.engine"
        eng.write_bytes(b"plan bytes")
        batched.update(batched.manifest.with_engine(EngineRecord(
            precision="fp32", path=eng.name, sha256="0" * 64, trt_version="10.3.0", gpu_name="x",
            compute_capability=cc, onnx_sha256="0" * 64)))
    dep = deploy_triton(batched.path, repo, name="seg_trt", platform="tensorrt", kind="gpu")
    configs = [repo / n / "config.pbtxt" for n in ("seg_ort", "seg_py", "seg_trt")]
    parsed = parse_model_configs(*configs)
    assert [parsed[str(c)] for c in configs] == ["OK 8", "OK 4", "OK 8"]
    ort_txt, py_txt, trt_txt = map(_text, configs)
    assert 'platform: "onnxruntime_onnx"' in ort_txt and "KIND_GPU" in ort_txt and "count: 2" in ort_txt
    assert 'value: "FP16"' in ort_txt and "int8_calibration_table_name" not in ort_txt
    assert "dims: [ 32, 48, 3 ]" in ort_txt and "dims: [ 32, 48 ]" in ort_txt and "TYPE_UINT8" in ort_txt
    assert "max_queue_delay_microseconds: 100" in ort_txt
    assert 'backend: "python"' in py_txt and (repo / "seg_py" / "1" / "model.py").is_file()
    assert 'key: "8.7"' in trt_txt and 'value: "model_sm89.plan"' in trt_txt
    assert sorted(p.name for p in (repo / "seg_trt" / "1").iterdir()) == ["model_sm87.plan", "model_sm89.plan"]
    assert set(dep.files) >= {"config.pbtxt", "segrt.json"}
    for n in ("seg_ort", "seg_py", "seg_trt"):
        assert json.loads((repo / n / "segrt.json").read_text())["classes"] == list(batched.manifest.classes)
    assert (repo / "seg_ort" / "1" / "model.onnx").read_bytes() == batched.onnx_path().read_bytes()


def test_the_protobuf_check_rejects_unknown_fields_and_wrong_types(tmp_path):
    good = TritonModelConfig(name="m", platform="onnxruntime", max_batch_size=4,
                             inputs=(TensorConfig("frame", "uint8", (H, W, 3)),),
                             outputs=(TensorConfig("mask", "uint8", (H, W)),))
    text = pbtxt_from_config(good)
    files = {"good": text, "unknown": text.replace("max_batch_size", "max_batch_sz"),
             "wrong_type": text.replace("max_batch_size: 4", 'max_batch_size: "four"'),
             "bad_enum": text.replace("KIND_CPU", "KIND_TPU")}
    paths = {}
    for key, body in files.items():
        paths[key] = tmp_path / f"{key}.pbtxt"
        paths[key].write_text(body)
    parsed = parse_model_configs(*paths.values())
    assert parsed[str(paths["good"])] == "OK 4"
    for key in ("unknown", "wrong_type", "bad_enum"):
        assert parsed[str(paths[key])].startswith("ERR"), key
    assert "max_batch_sz" in parsed[str(paths["unknown"])]


def test_refusals_are_one_line_errors(batched, tmp_path):
    with pytest.raises(ConfigError, match="outside the bundle.s batch axis"):
        deploy_triton(batched.path, tmp_path / "r", max_batch=16)
    with pytest.raises(BundleError, match="no fp32 TensorRT engine"):
        deploy_triton(batched.path, tmp_path / "r", platform="tensorrt")
    with pytest.raises(ConfigError, match="TensorRT execution accelerator"):
        deploy_triton(batched.path, tmp_path / "r", kind="cpu", trt_fp16=True)
    with pytest.raises(BundleError, match="no int8 model"):
        deploy_triton(batched.path, tmp_path / "r", precision="int8")
    assert not (tmp_path / "r" / "tiny").exists()


def test_a_static_batch_one_bundle_gets_max_batch_size_zero_and_full_dims(tmp_path):
    from segrt.tools.tiny_model import tiny_bundle

    plain = tiny_bundle(tmp_path / "plain", H, W)
    dep = deploy_triton(plain.path, tmp_path / "repo", name="plain")
    text = (dep.model_dir / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in text and "dims: [ 1, 32, 48, 3 ]" in text and "dynamic_batching" not in text
    assert parse_model_configs(dep.model_dir / "config.pbtxt")[str(dep.model_dir / "config.pbtxt")] == "OK 0"
