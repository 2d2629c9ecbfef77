"""Weights loading: wrappers, prefixes, strictness and one-line mismatch messages."""
from __future__ import annotations

import pytest
import torch

from segrt.errors import WeightsError
from segrt.export.weights import load_weights, read_state_dict

from _export_helpers import cli, tiny_unet


def _trained(num_classes=3):
    torch.manual_seed(123)
    net = tiny_unet(num_classes)
    for p in net.parameters():
        torch.nn.init.normal_(p, 0.0, 0.2)
    return net


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("wrap, expect_wrapper, expect_prefix", [
    (lambda sd: sd, None, None),
    (lambda sd: {"state_dict": sd, "epoch": 7}, "state_dict", None),
    (lambda sd: {"model": sd, "optimizer": {"lr": 0.1}}, "model", None),
    (lambda sd: {"module." + k: v for k, v in sd.items()}, None, "module."),
    (lambda sd: {"state_dict": {"model." + k: v for k, v in sd.items()}}, "state_dict", "model."),
    (lambda sd: {"module._orig_mod." + k: v for k, v in sd.items()}, None, "module._orig_mod."),
])
def test_wrappers_and_prefixes_load_exactly(tmp_path, wrap, expect_wrapper, expect_prefix):
    src = _trained()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(src.state_dict()), path)
    dst = tiny_unet()
    assert not _same(src, dst)
    info = load_weights(dst, path)
    assert _same(src, dst)
    assert info.wrapper == expect_wrapper and info.stripped_prefix == expect_prefix
    assert len(info.sha256) == 64 and info.tensors == len(src.state_dict())


def test_shape_mismatch_names_the_file_the_key_and_the_class_count(tmp_path):
    path = tmp_path / "five.pth"
    torch.save(tiny_unet(5).state_dict(), path)
    with pytest.raises(WeightsError) as err:
        load_weights(tiny_unet(3), path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "head.weight is [5, 4, 1, 1] in the file, [3, 4, 1, 1] in the model" in msg
    assert "--num-classes 5" in msg


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    sd = _trained().state_dict()
    sd.pop("head.bias")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        load_weights(tiny_unet(), path)
    msg = str(err.value)
    assert "model keys missing: head.bias" in msg and "unexpected keys: extra.weight" in msg


def test_aux_classifier_keys_are_skipped_for_torchvision_models(tmp_path):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large, fcn_resnet50

    from segrt.export.zoo import get_entry

    # A torchvision-style training checkpoint carries the auxiliary head our export model lacks.
    torch.manual_seed(0)
    with_aux = fcn_resnet50(weights=None, weights_backbone=None, num_classes=4, aux_loss=True)
    path = tmp_path / "fcn_aux.pth"
    torch.save({"model": with_aux.state_dict()}, path)
    net = get_entry("fcn_resnet50").build(4)
    info = load_weights(net, path)
    assert info.skipped_keys and all(k.startswith("aux_classifier.") for k in info.skipped_keys)
    assert torch.equal(net.classifier[4].weight, with_aux.classifier[4].weight)
    del lraspp_mobilenet_v3_large


def test_not_a_checkpoint_and_pickled_models_are_refused(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    with pytest.raises(WeightsError, match="notes.pth is not a"):
        read_state_dict(text)
    whole = tmp_path / "whole.pth"
    torch.save(tiny_unet(), whole)  # a pickled nn.Module, not a state_dict
    with pytest.raises(WeightsError, match="whole.pth holds pickled Python objects"):
        read_state_dict(whole)
    empty = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "lr": 0.1}, empty)
    with pytest.raises(WeightsError, match="has no state_dict .top-level keys: epoch, lr"):
        read_state_dict(empty)
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_cli_weights_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"\x00\x01 not a zip or pickle")
    rc, out, err = cli(capsys, "export", "unet", "--size", "32x32", "--weights", str(bad), "-o", str(tmp_path / "b"))
    assert rc == 2
    assert err.strip().count("\n") == 0 and "garbage.pth is not a PyTorch checkpoint" in err
    assert "Traceback" not in err
    assert not (tmp_path / "b").exists()

    wrong = tmp_path / "wrong.pth"
    torch.save(tiny_unet(3).state_dict(), wrong)  # a different U-Net than the zoo's
    rc, out, err = cli(capsys, "export", "unet", "--size", "32x32", "--weights", str(wrong), "-o", str(tmp_path / "b"))
    assert rc == 2 and "wrong.pth does not match the model" in err and "shape mismatches" in err
    assert not (tmp_path / "b").exists()


def test_trained_weights_go_into_the_bundle_and_the_manifest(tmp_path, capsys):
    src = _trained(4)
    ckpt = tmp_path / "unet4.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, ckpt)
    user = tmp_path / "nets.py"
    user.write_text("from segrt.export.models.unet import UNet\n"
                    "def small(num_classes=3):\n    return UNet(num_classes, depth=2, base_width=4)\n")
    rc, out, err = cli(capsys, "export", f"{user}:small", "--num-classes", "4", "--size", "32x32",
                       "--weights", str(ckpt), "-o", str(tmp_path / "b"))
    assert rc == 0, err
    assert "random init" not in out
    from segrt.runtime.bundle import Bundle
    from segrt.runtime.fsutil import sha256_file

    m = Bundle.open(tmp_path / "b").manifest
    w = m.source["weights"]
    assert w["sha256"] == sha256_file(ckpt) and w["wrapper"] == "state_dict" and w["stripped_prefix"] == "module."
    assert m.source["random_init"] is False and m.output.num_classes == 4


def test_no_weights_warns_that_accuracy_means_nothing(tmp_path, capsys, caplog):
    rc, out, err = cli(capsys, "export", "unet", "--size", "32x32", "-o", str(tmp_path / "b"))
    assert rc == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("randomly initialised" in w and "means nothing" in w for w in warned)
    assert "random init" in out
