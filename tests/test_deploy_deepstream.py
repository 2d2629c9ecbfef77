"""``segrt deploy deepstream``: configs checked key by key against NVIDIA's tables, and a variant graph
whose masks (fed what nvinfer feeds) equal the bundle's FP32 masks.

The key tables below are transcribed from NVIDIA's documentation: Gst-nvinfer, "Gst-nvinfer Property
Group Supported Keys" (https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html),
and the deepstream-app reference application's configuration groups
(https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_ref_app_deepstream.html).
"""
from __future__ import annotations

import configparser

import numpy as np
import onnxruntime as ort
import pytest

from segrt.deploy.deepstream import deploy_deepstream
from segrt.errors import ConfigError
from segrt.export.deepstream_graph import INPUT_NAME, nvinfer_input_from_frames, nvinfer_normalisation
from segrt.tools.tiny_model import reference_mask, tiny_bundle

from _export_helpers import cli
from _triton_helpers import batched_tiny_bundle

H, W = 32, 48


def _int(v):
    return int(v)


def _bool(v):
    assert v in ("0", "1", "true", "false"), v
    return v


def _floats(v):
    return [float(x) for x in v.split(";")]


def _ints(v):
    return [int(x) for x in v.split(";")]


#: nvinfer [property] keys: value parser (raises on a wrong type), allowed values where the table lists them
NVINFER_KEYS = {
    "gpu-id": (_int, None), "net-scale-factor": (float, None), "offsets": (_floats, None),
    "model-color-format": (_int, {0, 1, 2}), "onnx-file": (str, None), "model-engine-file": (str, None),
    "labelfile-path": (str, None), "batch-size": (_int, None), "network-mode": (_int, {0, 1, 2, 3}),
    "network-type": (_int, {0, 1, 2, 3, 100}), "process-mode": (_int, {1, 2}), "gie-unique-id": (_int, None),
    "interval": (_int, None), "infer-dims": (_ints, None), "output-blob-names": (str, None),
    "num-detected-classes": (_int, None), "segmentation-threshold": (float, None),
    "segmentation-output-order": (_int, {0, 1}), "output-tensor-meta": (_bool, None),
    "int8-calib-file": (str, None),
}
APP_KEYS = {
    "application": {"enable-perf-measurement": _bool, "perf-measurement-interval-sec": _int},
    "tiled-display": {"enable": _bool, "rows": _int, "columns": _int, "width": _int, "height": _int, "gpu-id": _int},
    "source": {"enable": _bool, "type": _int, "uri": str, "num-sources": _int, "gpu-id": _int},
    "streammux": {"gpu-id": _int, "batch-size": _int, "batched-push-timeout": _int, "width": _int, "height": _int,
                  "live-source": _bool},
    "primary-gie": {"enable": _bool, "gpu-id": _int, "batch-size": _int, "gie-unique-id": _int, "config-file": str},
    "segvisual": {"enable": _bool, "gpu-id": _int, "batch-size": _int, "width": _int, "height": _int},
    "sink": {"enable": _bool, "type": _int, "container": _int, "codec": _int, "sync": _bool, "output-file": str,
             "gpu-id": _int},
}


def _read(path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # keys are case sensitive in GLib key files
    assert cp.read(path) == [str(path)]
    return cp


@pytest.fixture()
def batched(tmp_path):
    return batched_tiny_bundle(tmp_path / "tiny", H, W, 4)


def test_configs_follow_nvidias_key_tables(batched, tmp_path, capsys):
    out = tmp_path / "ds"
    rc, text, err = cli(capsys, "deploy", "deepstream", str(batched.path), "-o", str(out), "--sources", "3",
                        "--precision", "fp32")
    assert rc == 0, err
    prop = _read(out / "config_infer_segrt.txt")
    assert prop.sections() == ["property"]
    values = {}
    for key, raw in prop["property"].items():
        assert key in NVINFER_KEYS, f"{key} is not an nvinfer key"
        parse, allowed = NVINFER_KEYS[key]
        values[key] = parse(raw)
        if allowed is not None:
            assert values[key] in allowed, key
    assert values["network-type"] == 2 and values["network-mode"] == 0 and values["batch-size"] == 3
    assert values["infer-dims"] == [3, H, W] and values["num-detected-classes"] == 4
    assert values["model-engine-file"] == "model.deepstream.onnx_b3_gpu0_fp32.engine"
    assert (out / values["onnx-file"]).is_file() and (out / values["labelfile-path"]).is_file()
    assert (out / "labels.txt").read_text().split() == list(batched.manifest.classes)
    assert len(values["offsets"]) == 3 and "int8-calib-file" not in values
    app = _read(out / "deepstream_app.txt")
    sources = [s for s in app.sections() if s.startswith("source")]
    assert len(sources) == 3
    for section in app.sections():
        table = APP_KEYS[section.rstrip("0123456789")]
        for key, raw in app[section].items():
            assert key in table, f"[{section}] {key}"
            table[key](raw)
    assert int(app["streammux"]["batch-size"]) == 3 and int(app["primary-gie"]["batch-size"]) == 3
    assert app["primary-gie"]["config-file"] == "config_infer_segrt.txt"
    assert int(app["sink0"]["type"]) == 3 and app["sink0"]["output-file"].endswith(".mp4")
    assert int(app["tiled-display"]["rows"]) * int(app["tiled-display"]["columns"]) >= 3


def test_the_variant_graph_fed_like_nvinfer_gives_the_bundles_fp32_masks(batched, tmp_path):
    dep = deploy_deepstream(batched.path, tmp_path / "ds", sources=4)
    assert dep.check["pixels_differing"] == 0 and dep.check["pixels_compared"] > 0
    m = batched.manifest
    norm = nvinfer_normalisation(m.preprocess.mean, m.preprocess.std, m.preprocess.color_order)
    sess = ort.InferenceSession(str(tmp_path / "ds" / "model.deepstream.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (4, H, W, 3), dtype=np.uint8)
    got = sess.run(None, {INPUT_NAME: nvinfer_input_from_frames(frames, norm)})[0]
    assert got.dtype == np.int32 and got.shape == (4, H, W, 1)
    for i in range(4):
        np.testing.assert_array_equal(got[i, ..., 0], reference_mask(frames[i:i + 1])[0])


def test_more_sources_than_the_batch_axis_is_refused(tmp_path):
    plain = tiny_bundle(tmp_path / "plain", H, W)
    with pytest.raises(ConfigError, match="--max-batch 2"):
        deploy_deepstream(plain.path, tmp_path / "ds", sources=2)
    assert not (tmp_path / "ds").exists()


def test_deploy_targets_need_no_torch(batched, tmp_path):
    import subprocess
    import sys

    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision'):
            raise ImportError('torch is blocked: ' + name)
sys.meta_path.insert(0, Block())
from segrt.deploy.deepstream import deploy_deepstream
from segrt.deploy.triton_repo import deploy_triton
deploy_deepstream({str(batched.path)!r}, {str(tmp_path / 'ds')!r}, sources=2)
deploy_triton({str(batched.path)!r}, {str(tmp_path / 'repo')!r}, platform='python')
print('no torch needed')
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no torch needed" in out.stdout
