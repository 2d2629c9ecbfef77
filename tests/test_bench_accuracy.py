"""Accuracy beside speed: the manifest's quantization reports appear in rows, table, JSON and CSV."""
from __future__ import annotations

import csv

import pytest

from _bench_helpers import QUICK, static_bundle
from segrt.calibration.api import quantize_bundle
from segrt.runtime.bundle import Bundle
from segrt.tools.bench import bench_bundles
from segrt.tools.bench import format_table, write_csv


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    path = tmp_path_factory.mktemp("acc") / "tiny"
    static_bundle(path)
    # a random-weight net on 4 frames: too little evidence for a real gate, accepted explicitly
    quantize_bundle(path, "fp16", eval_frames=4, progress=False, allow_small_eval=True)
    quantize_bundle(path, "int8", calib="synthetic://?size=320x240&frames=40&seed=1", calib_frames=8,
                    eval_frames=4, progress=False, enforce_gate=False)
    return Bundle.open(path)


def test_rows_carry_the_manifest_accuracy(quantized, tmp_path):
    res = bench_bundles([quantized.path], precisions="fp32,fp16,int8", e2e=False, **QUICK)
    rows = {r.precision: r for r in res.rows}
    assert all(r.ok for r in rows.values())
    for p in ("fp16", "int8"):
        report = quantized.manifest.artifacts[p].accuracy
        assert rows[p].accuracy["agreement"] == report["agreement"]
        assert rows[p].accuracy["miou_vs_labels"] == report["miou_vs_labels"]
    # FP32 is the reference: agreement 1, mIoU vs labels from the first report that measured it
    fp32 = rows["fp32"].accuracy
    assert fp32["reference"] and fp32["agreement"] == 1.0 and fp32["from_report"] == "fp16"
    assert fp32["miou_vs_labels"] == quantized.manifest.artifacts["fp16"].accuracy["fp32_miou_vs_labels"]

    text = format_table(res)
    int8_line = next(l for l in text.splitlines() if l.startswith("tiny") and " int8 " in l and l.endswith("ok"))
    agreement = quantized.manifest.artifacts['int8'].accuracy['agreement']
    # one unit everywhere: percent, as segrt quantize prints it, with the unit in the header
    assert f" {100 * agreement:.3f} " in int8_line if agreement >= 0.99 else f" {100 * agreement:.2f} " in int8_line
    assert "agree %" in text and "mIoU %" in text
    fp32_line = next(l for l in text.splitlines() if l.startswith("tiny") and " fp32 " in l)
    assert " 100.000 " in fp32_line

    with open(write_csv(res, tmp_path / "b.csv")) as f:
        by_prec = {r["precision"]: r for r in csv.DictReader(f)}
    assert float(by_prec["int8"]["accuracy_agreement_pct"]) == pytest.approx(100 * agreement, abs=1e-3)
