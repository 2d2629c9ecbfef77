"""Small things a new user hits in the first hour (issue 16, item 7), each pinned down by a real run."""
from __future__ import annotations

import re

import cv2
import numpy as np
import onnx
import pytest
from onnx.external_data_helper import convert_model_to_external_data

from segrt.errors import first_line
from segrt.export.api import export_bundle
from segrt.runtime.sinks import ImageFolderSink
from segrt.tools.tiny_model import tiny_bundle, tiny_segmentation_onnx

from _export_helpers import cli, write_user_module


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("first_hour"), 48, 64, fused=True)


def test_folder_sink_keeps_the_source_image_names(bundle, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("street.jpg", "crossing_2.png", "a.png"):
        cv2.imwrite(str(src / name), np.full((40, 60, 3), 90, np.uint8))
    rc, _, err = cli(capsys, "run", str(bundle.path), "--source", str(src), "--sink", str(tmp_path / "out") + "/")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "crossing_2.png", "street.png"]
    # Frames without a name (video, synthetic) are still numbered.
    rc, _, err = cli(capsys, "run", str(bundle.path), "--source", "synthetic://?size=64x48&frames=2",
                     "--sink", str(tmp_path / "synth") + "/")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "synth").iterdir()) == ["frame_000000.png",
                                                                                   "frame_000001.png"]


def test_folder_sink_never_overwrites_within_a_run(tmp_path):
    sink = ImageFolderSink(tmp_path / "out")
    img = np.zeros((8, 8, 3), np.uint8)
    with sink:
        for name in ("x", "x", "x_1"):  # a glob over two folders can hold x.png twice
            sink.write(img, name)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png", "x_1.png", "x_1_1.png"]


def test_an_existing_video_is_refused_unless_overwrite(bundle, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"my precious recording")
    args = ["run", str(bundle.path), "--source", "synthetic://?size=64x48&frames=3", "--sink", str(out)]
    rc, _, err = cli(capsys, *args)
    assert rc == 2 and err.count("\n") == 1 and "already exists" in err and "--overwrite" in err, err
    assert out.read_bytes() == b"my precious recording"
    assert not [p for p in tmp_path.iterdir() if p.name != "out.mp4"]  # no temporary file left either
    rc, _, err = cli(capsys, *args, "--overwrite")
    assert rc == 0, err
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_a_file_py_factory_bundle_is_named_after_the_file(tmp_path, monkeypatch):
    path = write_user_module(tmp_path, "road_net")
    b = export_bundle(f"{path}:build", tmp_path / "b", num_classes=2, size=(32, 32))
    assert b.manifest.name == "road_net"
    named = export_bundle(f"{path}:build", tmp_path / "c", num_classes=2, size=(32, 32), name="lanes")
    assert named.manifest.name == "lanes"


def test_verbose_keeps_the_exit_code_and_adds_the_traceback(bundle, capsys):
    rc, _, err = cli(capsys, "-v", "run", str(bundle.path), "--source", "/no/such/video.mp4")
    assert rc == 2
    assert "Traceback (most recent call last)" in err and "SourceError" in err
    assert err.rstrip().splitlines()[-1].startswith("segrt run: error: ") and "no such file" in err


def test_first_line_strips_ansi_and_cuts_at_a_word_boundary():
    text = "\x1b[1mWeights only load failed.\x1b[0m This file can still be loaded " + "abcdefgh " * 40 + "\nmore"
    line = first_line(RuntimeError(text), 80)
    assert "\x1b" not in line and "[1m" not in line
    assert line.endswith(" ...") and len(line) <= 84
    assert re.fullmatch(r"[\w .]+ \.\.\.", line) and line[:-4].split()[-1] in ("abcdefgh", "loaded")
    assert first_line(ValueError("")) == "ValueError"
    assert first_line("short\nsecond") == "short"


class NotATensor:
    pass


def test_a_torch_error_reaches_the_user_without_colour_codes(tmp_path, capsys):
    import torch

    path = write_user_module(tmp_path, "nets_for_weights")
    ckpt = tmp_path / "pickled.pth"
    torch.save({"model": NotATensor()}, ckpt)
    rc, _, err = cli(capsys, "export", f"{path}:build", "--weights", str(ckpt), "-o", str(tmp_path / "b"))
    assert rc == 2 and "holds pickled Python objects" in err
    assert "\x1b" not in err and err.count("\n") == 1


def test_help_shows_defaults_and_never_none(capsys):
    for verb in ("run", "build"):
        with pytest.raises(SystemExit):
            cli(capsys, verb, "--help")
        text = " ".join(capsys.readouterr().out.split())
        assert "None" not in text
        if verb == "run":
            for shown in ("(default: auto)", "(default: fp32)", "(default: overlay)", "(default: --legend)",
                          "(default null://)", "(default 0.5)"):
                assert shown in text, shown
        else:
            for shown in ("(default: fp16)", "(default: entropy)", "(default: 200)", "(default: none)"):
                assert shown in text, shown


def test_onnx_with_external_data_outside_its_folder_is_refused_with_the_reason(tmp_path, capsys):
    model = tiny_segmentation_onnx(32, 48, fused=False)
    folder = tmp_path / "model"
    folder.mkdir()
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save(model, str(folder / "ok.onnx"))
    (tmp_path / "elsewhere.bin").write_bytes((folder / "weights.bin").read_bytes())
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.bin"
    evil = folder / "evil.onnx"
    evil.write_bytes(model.SerializeToString())
    rc, _, err = cli(capsys, "export", str(evil), "--num-classes", "4", "-o", str(tmp_path / "b"))
    assert rc == 2 and err.count("\n") == 1, err
    assert "evil.onnx refused" in err and "'../elsewhere.bin'" in err and "outside the model's folder" in err
    assert "corrupt or truncated" not in err and not (tmp_path / "b").exists()
    rc, _, err = cli(capsys, "export", str(folder / "ok.onnx"), "--num-classes", "4", "-o", str(tmp_path / "c"))
    assert rc == 0, err  # external data inside the folder is fine
