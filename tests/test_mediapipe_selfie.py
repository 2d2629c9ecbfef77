"""MediaPipe Selfie Segmentation: the pinned weights, the PyTorch port against the TFLite interpreter on
real photos (scikit-image's), and the whole chain (fused export, FP16, INT8 on real frames, run, eval)."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from segrt.calibration.api import quantize_bundle
from segrt.calibration.dataset_eval import evaluate_bundle
from segrt.export.api import export_bundle
from segrt.export.mediapipe_fetch import TFLITE_SHA256, ensure_pinned_tflite
from segrt.export.mediapipe_verify import PHOTOS, photo_frames, sample_photos, verify_against_tflite
from segrt.export.models.mediapipe_selfie import SelfieSegmentation, state_dict_from_tflite
from segrt.runtime.backends.select import backend_for_bundle
from segrt.runtime.fsutil import sha256_file
from segrt.runtime.pipeline import Pipeline
from segrt.runtime.postprocess import MaskDecoder
from segrt.runtime.preprocess import Preprocessor
from segrt.tools.cli import main

VARIANTS = [("selfie_segmentation.tflite", 256, 256), ("selfie_segmentation_landscape.tflite", 144, 256)]


@pytest.fixture(scope="module")
def tflite_files():
    return {name: ensure_pinned_tflite(name) for name in TFLITE_SHA256}  # fetched with pip the first time


def test_pinned_files_are_checked(tflite_files):
    for name, path in tflite_files.items():
        assert sha256_file(path) == TFLITE_SHA256[name]


@pytest.mark.parametrize("name,h,w", VARIANTS)
def test_port_matches_the_tflite_interpreter_on_real_photos(tflite_files, name, h, w):
    net = SelfieSegmentation().eval()
    net.load_state_dict(state_dict_from_tflite(tflite_files[name]), strict=True)
    report = verify_against_tflite(net, tflite_files[name], h, w)
    assert [r["image"] for r in report["images"]] == list(PHOTOS)
    assert report["max_abs_prob_diff"] <= 1e-3
    assert report["mask_agreement"] >= 0.999
    astronaut = report["images"][0]
    assert 0.2 < astronaut["person_fraction"] < 0.9  # a real person is found, not an empty mask


def _labelled(bundle, frames, root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pre, dec = Preprocessor(bundle.manifest), MaskDecoder(bundle.manifest)
    with backend_for_bundle(bundle, backend="onnxruntime") as be:
        for i, f in enumerate(frames):
            mask = dec.decode(be.infer({bundle.manifest.input.name: pre(f)[0]}))
            label = cv2.resize(mask, (f.shape[1], f.shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
            cv2.imwrite(str(root / "images" / f"{i:03d}.png"), f)  # lossless: FP32 scores exactly 1
            cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), label)
    return root


def test_whole_chain_on_real_frames(tflite_files, tmp_path):
    bundle = export_bundle("mediapipe_selfie", tmp_path / "b")
    m = bundle.manifest
    assert m.classes == ("background", "person") and m.input.fused and m.output.kind == "mask"
    assert m.export["tflite_reference"]["passed"] and m.source["random_init"] is False
    # fused: the bundle's mask is MediaPipe's probability thresholded at 0.5
    net = SelfieSegmentation().eval()
    net.load_state_dict(state_dict_from_tflite(tflite_files["selfie_segmentation.tflite"]))
    photo = sample_photos()[0][1]
    with backend_for_bundle(bundle, backend="onnxruntime") as be:
        tensor, _ = Preprocessor(m)(photo)
        mask = MaskDecoder(m).decode(be.infer({"frame": tensor}))
    x = torch.from_numpy(tensor[..., ::-1].astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        want = (net.probability(x)[0, 0] > 0.5).numpy()
    assert np.mean(mask.astype(bool) == want) >= 0.999

    frames = photo_frames(12)
    data = _labelled(bundle, frames, tmp_path / "frames")
    fp16 = quantize_bundle(bundle, "fp16", eval_source=str(data), eval_frames=12, progress=False,
                           enforce_gate=False)
    int8 = quantize_bundle(bundle, "int8", calib=str(data), calib_frames=12, eval_source=str(data),
                           eval_frames=12, progress=False, enforce_gate=False)
    assert fp16.accuracy.agreement > 0.999  # FP16 passes its own gate on real frames
    assert int8.accuracy.agreement > 0.85  # INT8 (min-max, 12 frames) does not: ~90% here, recorded as failed
    assert fp16.passed and not int8.passed

    video = tmp_path / "frames.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (480, 360))
    for f in frames:
        writer.write(f)
    writer.release()
    summary = Pipeline(bundle, str(video), str(tmp_path / "run.mp4"), precision="int8").run()
    assert summary.frames == len(frames)

    report = evaluate_bundle(bundle, str(data), precisions="fp32,fp16,int8", backend="onnxruntime", progress=False)
    by = {r.precision: r.result for r in report.runs}
    assert by["fp32"].miou == pytest.approx(1.0)  # the labels are FP32's own masks
    assert by["fp16"].miou > 0.99 and by["int8"].miou > 0.75


def test_tflite_file_as_weights(tflite_files, tmp_path):
    mine = tmp_path / "my_selfie.tflite"
    shutil.copy(tflite_files["selfie_segmentation_landscape.tflite"], mine)
    bundle = export_bundle("mediapipe_selfie_landscape", tmp_path / "b", weights=str(mine), verify=False)
    assert bundle.manifest.source["weights"]["path"] == str(mine)
    assert (bundle.manifest.input.height, bundle.manifest.input.width) == (144, 256)


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch):
    from segrt.export.zoo import reset_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    reset_cache()  # the zoo entries name the cache path
    yield
    monkeypatch.undo()
    reset_cache()


def test_offline_says_how_to_pass_a_tflite(tmp_path, monkeypatch, capsys, empty_cache):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as if PyPI were unreachable
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    rc = main(["export", "mediapipe_selfie", "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err
    assert "mediapipe==0.10.21" in err and "--weights" in err and "selfie_segmentation.tflite" in err
