"""`segrt export` on bad input: one line naming the file and the fix, exit 2, no traceback, no partial bundle."""
from __future__ import annotations

import json

import pytest

from segrt.runtime.bundle import Bundle
from segrt.runtime.fsutil import sha256_file

from _export_helpers import cli, write_user_module


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    write_user_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))


def _one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("segrt export: error: ") and "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


def test_success_prints_verification_numbers_and_bundle_path(tmp_path, capsys, user_module):
    rc, out, err = cli(capsys, "export", "user_nets:build", "--size", "32x32", "-o", str(tmp_path / "b"))
    assert rc == 0, err
    assert "max abs logits diff" in out and "mask agreement 100.000%" in out
    assert out.strip().splitlines()[-1] == f"bundle     {tmp_path / 'b'}"
    b = Bundle.open(tmp_path / "b")
    assert b.onnx_path("fp32", verify=True).name == "model.onnx"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model.onnx", "segrt.json"]


def test_unknown_model_suggests(tmp_path, capsys):
    rc, _, err = cli(capsys, "export", "deeplabv3_resnet5O", "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "unknown model 'deeplabv3_resnet5O'", "did you mean deeplabv3_resnet50")
    assert not (tmp_path / "b").exists()


def test_bad_size_and_flags(tmp_path, capsys):
    rc, _, err = cli(capsys, "export", "unet", "--size", "256by512", "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "--size '256by512' is not HxW")
    rc, _, err = cli(capsys, "export", "unet", "--size", "100x100", "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "100x100 is not a multiple of 16", "--size")
    rc, _, err = cli(capsys, "export", "unet", "--mean", "1,2", "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "--mean '1,2' is not three numbers")
    rc, _, err = cli(capsys, "export", "unet", "--classes", str(tmp_path / "none.txt"), "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "none.txt does not exist")
    rc, _, err = cli(capsys, "export", "maskrcnn_resnet50_fpn", "--size", "100x160", "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "not a multiple of 32")
    assert not (tmp_path / "b").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, _, err = cli(capsys, "export", "unet", "--size", "32x32", "-o", str(blocker / "bundle"))
    _one_line_error(rc, err, "a_file/bundle", "not writable", "-o")
    rc, _, err = cli(capsys, "export", "unet", "--size", "32x32", "-o", str(blocker))
    _one_line_error(rc, err, "is a file, not a folder")
    busy = tmp_path / "photos"
    busy.mkdir()
    (busy / "cat.jpg").write_bytes(b"jpg")
    rc, _, err = cli(capsys, "export", "unet", "--size", "32x32", "-o", str(busy))
    _one_line_error(rc, err, "is not empty and is not a bundle")
    assert [p.name for p in busy.iterdir()] == ["cat.jpg"]


def test_op_that_fails_to_export(tmp_path, capsys, user_module):
    rc, _, err = cli(capsys, "export", "user_nets:bad_op", "--size", "8x8", "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "ONNX export failed at operator aten", "linalg_cholesky")
    assert not (tmp_path / "b").exists()


def test_verification_failure_writes_no_bundle(tmp_path, capsys, user_module):
    # The trace freezes the branch the all-zero example takes; eager takes the other on real frames.
    rc, _, err = cli(capsys, "export", "user_nets:branchy", "--size", "16x16", "-o", str(tmp_path / "b"))
    _one_line_error(rc, err, "model.onnx: ONNX Runtime disagrees with PyTorch: max abs logits diff")
    assert not (tmp_path / "b").exists()


def test_failed_reexport_leaves_the_previous_bundle_valid(tmp_path, capsys, user_module):
    out = tmp_path / "b"
    rc, _, err = cli(capsys, "export", "user_nets:build", "--size", "32x32", "-o", str(out))
    assert rc == 0, err
    before = sha256_file(out / "model.onnx")
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    rc, _, err = cli(capsys, "export", "user_nets:build", "--size", "32x32", "--weights", str(bad), "-o", str(out))
    _one_line_error(rc, err, "bad.pth is not a PyTorch checkpoint")
    rc, _, err = cli(capsys, "export", "user_nets:branchy", "--size", "16x16", "-o", str(out))
    assert rc == 2
    b = Bundle.open(out)
    assert b.onnx_path("fp32", verify=True) and sha256_file(out / "model.onnx") == before
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "segrt.json"]  # no temp leftovers
    # A successful re-export replaces it, with the new size.
    rc, _, err = cli(capsys, "export", "user_nets:build", "--size", "64x32", "--no-fuse", "-o", str(out))
    assert rc == 0, err
    m = Bundle.open(out).manifest
    assert (m.input.height, m.input.width, m.output.kind) == (64, 32, "logits")


def test_bundle_from_a_newer_segrt_is_not_overwritten(tmp_path, capsys, user_module):
    out = tmp_path / "b"
    rc, _, err = cli(capsys, "export", "user_nets:build", "--size", "32x32", "-o", str(out))
    assert rc == 0
    data = json.loads((out / "segrt.json").read_text())
    data["schema_version"] = 99
    (out / "segrt.json").write_text(json.dumps(data))
    rc, _, err = cli(capsys, "export", "user_nets:build", "--size", "32x32", "-o", str(out))
    _one_line_error(rc, err, "newer segrt", "schema_version 99", "upgrade segrt")
    assert json.loads((out / "segrt.json").read_text())["schema_version"] == 99
