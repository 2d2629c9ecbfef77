"""Manifest validation: round trips, clear errors, newer schemas refused."""
from __future__ import annotations

import json

import pytest

from segrt.errors import ManifestError
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import (SCHEMA_VERSION, Artifact, EngineRecord, InputSpec, Manifest,
                                    PreprocessSpec, ShapeRange, default_palette)
from segrt.tools.tiny_model import tiny_bundle, tiny_manifest


def test_round_trip_is_exact():
    m = tiny_manifest().with_artifact(Artifact("fp32", "model.onnx", "ab" * 32, accuracy={"agreement": 1.0}))
    m = m.with_engine(EngineRecord("fp16", "model.fp16.orin.trt10.3.engine", "cd" * 32, "10.3.0",
                                   "Orin", (8, 7), "ab" * 32, {"workspace_gib": 2}))
    again = Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    assert again.engines[0].compute_capability == (8, 7)


def test_newer_schema_is_refused_with_upgrade_hint():
    d = tiny_manifest().to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ManifestError, match="newer than this segrt") as info:
        Manifest.from_dict(d)
    assert "pip install -U segrt" in str(info.value)


@pytest.mark.parametrize("version", [0, -3])
def test_schema_version_below_one_is_refused(version):
    d = tiny_manifest().to_dict()
    d["schema_version"] = version
    with pytest.raises(ManifestError, match=f"schema_version {version} is not a segrt manifest version") as info:
        Manifest.from_dict(d)
    assert "\n" not in str(info.value) and "re-export" in str(info.value)


@pytest.mark.parametrize("path, value, match", [
    (("input", "layout"), "NCWH", "input.layout"),
    (("input", "height"), 0, "input.height"),
    (("preprocess", "std"), [1, 0, 1], "preprocess.std"),
    (("preprocess", "resize"), "crop", "preprocess.resize"),
    (("output", "kind"), "boxes", "output.kind"),
])
def test_bad_fields_name_the_field(path, value, match):
    d = tiny_manifest().to_dict()
    d[path[0]][path[1]] = value
    with pytest.raises(ManifestError, match=match):
        Manifest.from_dict(d)


def test_missing_field_and_palette_mismatch():
    d = tiny_manifest().to_dict()
    del d["input"]
    with pytest.raises(ManifestError, match="missing field 'input'"):
        Manifest.from_dict(d)
    d = tiny_manifest().to_dict()
    d["palette"] = d["palette"][:-1]
    with pytest.raises(ManifestError, match="palette"):
        Manifest.from_dict(d)


def test_artifact_path_must_stay_inside_bundle():
    with pytest.raises(ManifestError, match="inside the bundle"):
        Artifact("fp32", "../elsewhere/model.onnx", "00")
    with pytest.raises(ManifestError, match="inside the bundle"):
        Artifact("fp32", "/abs/model.onnx", "00")


def test_shape_range_order_is_checked():
    ShapeRange((1, 128, 128), (1, 256, 256), (4, 512, 512))
    with pytest.raises(ManifestError, match="min <= opt <= max"):
        ShapeRange((1, 256, 256), (1, 128, 128), (1, 512, 512))


def test_preprocess_defaults_are_imagenet_rgb():
    p = PreprocessSpec()
    assert p.color_order == "RGB" and p.mean[0] == pytest.approx(123.675)
    assert InputSpec("frame", 8, 16).shape == (1, 8, 16, 3)
    assert InputSpec("input", 8, 16, layout="NCHW", dtype="float32", fused=False).shape == (1, 3, 8, 16)


def test_palette_is_distinct():
    pal = default_palette(21)
    assert len(set(pal)) == 21 and pal[0] == (0, 0, 0)


def test_bundle_open_errors_are_actionable(tmp_path):
    from segrt.errors import BundleError
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.open(tmp_path / "nope")
    with pytest.raises(BundleError, match="no segrt.json"):
        Bundle.open(tmp_path)
    (tmp_path / "segrt.json").write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable manifest"):
        Bundle.open(tmp_path)


def test_bundle_checksum_and_missing_precision(tmp_path):
    from segrt.errors import BundleError
    b = tiny_bundle(tmp_path / "b")
    assert b.onnx_path("fp32", verify=True).name == "model.onnx"
    with pytest.raises(BundleError, match="segrt quantize"):
        b.onnx_path("int8")
    with open(b.path / "model.onnx", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(BundleError, match="checksum"):
        b.onnx_path("fp32", verify=True)
    assert Bundle.open(b.path / "segrt.json").manifest == b.manifest


def test_plain_json_turns_numpy_scalars_tuples_and_mappings_into_json_types():
    import json
    import math
    import types

    import numpy as np

    from segrt.runtime.manifest import plain_json

    data = types.MappingProxyType({1: (np.float32(0.5), np.int64(3)), "x": [np.bool_(True), float("nan")]})
    out = plain_json(data)
    assert out == {"1": [0.5, 3], "x": [True, out["x"][1]]} and math.isnan(out["x"][1])
    assert type(out["1"][1]) is int and type(out["x"][0]) is bool
    strict = plain_json(data, nonfinite_as_none=True)
    assert strict["x"][1] is None
    json.dumps(strict, allow_nan=False)  # strict JSON: raises on NaN
