"""Model sources besides the zoo: package.module:factory, file.py:factory, and .onnx import with a spec."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from segrt.errors import ConfigError, ExportError, ModelNotFoundError
from segrt.export.api import export_bundle
from segrt.export.verify import normalise_frames, sample_frames
from segrt.tools.tiny_model import reference_logits, tiny_segmentation_onnx

from _export_helpers import cli, run_onnx, write_user_module


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    write_user_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "user_nets.py"


def test_module_factory_with_num_classes_and_class_names(tmp_path, user_module):
    names = tmp_path / "names.txt"
    names.write_text("# ours\nbackground\nlane\n\ncone\ncurb\n")
    b = export_bundle("user_nets:build", tmp_path / "b", classes=names, size="32x64")
    m = b.manifest
    assert m.classes == ("background", "lane", "cone", "curb") and m.output.num_classes == 4
    assert m.source["kind"] == "factory" and m.source["factory"] == "user_nets:build"
    assert m.name == "build" and (m.input.height, m.input.width) == (32, 64)
    assert m.export["verification"]["passed"]


def test_factory_without_num_classes_infers_classes_from_its_output(tmp_path, user_module):
    b = export_bundle("user_nets:build_fixed", tmp_path / "b", size=(32, 32))
    assert b.manifest.classes == tuple(f"class_{i}" for i in range(5))
    with pytest.raises(ConfigError, match="build_fixed takes no num_classes"):
        export_bundle("user_nets:build_fixed", tmp_path / "c", num_classes=3, size=(32, 32))


def test_file_py_factory(tmp_path, user_module):
    b = export_bundle(f"{user_module}:build", tmp_path / "b", num_classes=2, size=(32, 32))
    assert b.manifest.classes == ("class_0", "class_1")


def test_factory_errors_are_named(tmp_path, user_module):
    with pytest.raises(ModelNotFoundError, match="user_nets has no callable 'biuld'.*did you mean build"):
        export_bundle("user_nets:biuld", tmp_path / "b")
    with pytest.raises(ModelNotFoundError, match="returned int, not a torch.nn.Module"):
        export_bundle("user_nets:not_a_model", tmp_path / "b")
    with pytest.raises(ModelNotFoundError, match="cannot import no_such_pkg_xyz"):
        export_bundle("no_such_pkg_xyz.nets:build", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_unsupported_operator_names_the_op(tmp_path, user_module):
    with pytest.raises(ExportError) as err:
        export_bundle("user_nets:bad_op", tmp_path / "b", size=(8, 8))
    assert "linalg_cholesky" in str(err.value) and "torchscript:" in str(err.value) and "dynamo:" in str(err.value)
    assert not (tmp_path / "b").exists()


def _write_onnx(path, model):
    onnx.save(model, str(path))
    return path


def test_onnx_import_fuses_an_unfused_graph_and_keeps_its_numbers(tmp_path, capsys):
    src = _write_onnx(tmp_path / "tiny.onnx", tiny_segmentation_onnx(32, 48, fused=False))
    names = tmp_path / "names.txt"
    names.write_text("background\nred\ngreen\nblue\n")
    rc, out, err = cli(capsys, "export", str(src), "--classes", str(names), "--mean", "127.5,127.5,127.5",
                       "--std", "127.5 127.5 127.5", "-o", str(tmp_path / "b"))
    assert rc == 0, err
    assert "mask agreement 100.000%" in out and str(tmp_path / "b") in out
    from segrt.runtime.bundle import Bundle

    b = Bundle.open(tmp_path / "b")
    m = b.manifest
    assert m.source["kind"] == "onnx" and m.export["fused_by_segrt"] is True
    assert m.classes == ("background", "red", "green", "blue") and (m.input.height, m.input.width) == (32, 48)
    assert m.input.name == "frame" and m.output.kind == "mask"
    for _, frame in sample_frames(32, 48):
        (mask,) = run_onnx(b.onnx_path("fp32"), {"frame": frame})
        np.testing.assert_array_equal(mask, reference_logits(frame).argmax(axis=1).astype(np.uint8))


def test_onnx_import_unfused_kept_unfused_and_fused_kept_fused(tmp_path):
    src = _write_onnx(tmp_path / "tiny.onnx", tiny_segmentation_onnx(32, 48, fused=False))
    b = export_bundle(src, tmp_path / "plain", fuse=False, spec={"mean": (127.5,) * 3, "std": (127.5,) * 3})
    assert b.manifest.input.name == "input" and b.manifest.output.kind == "logits"
    assert b.manifest.classes == tuple(f"class_{i}" for i in range(4))  # from the graph's static channels
    frame = sample_frames(32, 48, kinds=("shapes",))[0][1]
    (logits,) = run_onnx(b.onnx_path("fp32"), {"input": normalise_frames(frame, (127.5,) * 3, (127.5,) * 3, "RGB")})
    np.testing.assert_allclose(logits, reference_logits(frame), atol=1e-5)

    fsrc = _write_onnx(tmp_path / "tiny_fused.onnx", tiny_segmentation_onnx(32, 48, fused=True))
    with pytest.raises(ConfigError, match="cannot tell the number of classes"):
        export_bundle(fsrc, tmp_path / "f")
    fb = export_bundle(fsrc, tmp_path / "f", num_classes=4, spec={"onnx_fused": True})
    assert fb.manifest.export["imported_io"] == "fused" and fb.manifest.export["fused_by_segrt"] is False
    (mask,) = run_onnx(fb.onnx_path("fp32"), {"frame": frame})
    np.testing.assert_array_equal(mask, reference_logits(frame).argmax(axis=1).astype(np.uint8))
    with pytest.raises(ConfigError, match="already fused"):
        export_bundle(fsrc, tmp_path / "g", num_classes=4, fuse=False)
    with pytest.raises(ConfigError, match="declared unfused"):
        export_bundle(fsrc, tmp_path / "g", num_classes=4, spec={"onnx_fused": False})


def test_onnx_import_checks_the_spec_against_the_graph(tmp_path):
    src = _write_onnx(tmp_path / "tiny.onnx", tiny_segmentation_onnx(32, 48, fused=False))
    with pytest.raises(ConfigError, match="static input size 32x48, not 64x64"):
        export_bundle(src, tmp_path / "b", size=(64, 64))
    with pytest.raises(ConfigError, match="outputs 4 classes but 3 were given"):
        export_bundle(src, tmp_path / "b", classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match="--dynamic needs symbolic"):
        export_bundle(src, tmp_path / "b", dynamic=True)
    assert not (tmp_path / "b").exists()


def test_corrupt_and_truncated_onnx_fail_with_the_file_name(tmp_path, capsys):
    good = tiny_segmentation_onnx(32, 48, fused=False).SerializeToString()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good[: len(good) // 2])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe this is no protobuf" * 10)
    for path in (trunc, junk):
        rc, out, err = cli(capsys, "export", str(path), "--num-classes", "4", "-o", str(tmp_path / "b"))
        assert rc == 2 and err.count("\n") == 1 and path.name in err and "corrupt or truncated" in err, err
        assert "Traceback" not in err and not (tmp_path / "b").exists()


def test_exporter_fallback_is_recorded_and_opset_is_honoured(tmp_path, user_module):
    b = export_bundle("user_nets:pooled", tmp_path / "auto", size=(16, 16))
    ex = b.manifest.export
    assert ex["requested"] == "auto" and ex["exporter"] == "torchscript"
    assert [a["exporter"] for a in ex["attempts"]] == ["dynamo", "torchscript"]
    assert "wrote opset 18, not the requested 17" in ex["fallback_reason"]
    assert onnx.load(str(b.onnx_path("fp32"))).opset_import[0].version == 17
    with pytest.raises(ExportError, match="dynamo exporter wrote opset 18"):
        export_bundle("user_nets:pooled", tmp_path / "dyn", size=(16, 16), exporter="dynamo")
    b18 = export_bundle("user_nets:pooled", tmp_path / "o18", size=(16, 16), opset=18)
    assert b18.manifest.export["exporter"] == "dynamo" and b18.manifest.export["fallback_reason"] is None
    assert onnx.load(str(b18.onnx_path("fp32"))).opset_import[0].version == 18
