"""A real bench run on the tiny bundle: rows, skip reasons, sizes, and all four outputs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from _bench_helpers import QUICK, dynamic_bundle, static_bundle
from segrt.errors import BundleError, ConfigError
from segrt.tools.bench import ALL_STAGES, BenchResult, bench_bundles
from segrt.tools.bench import JSON_SCHEMA, STAT_FIELDS, compare, csv_columns, format_table, load_json, write_all


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return static_bundle(root / "tiny"), dynamic_bundle(root / "dyn")


@pytest.fixture(scope="module")
def result(bundles) -> BenchResult:
    static, _ = bundles
    return bench_bundles([static.path], precisions="fp32,fp16", backends="onnxruntime,tensorrt", **QUICK)


def _row(result, precision, backend):
    (row,) = [r for r in result.rows if (r.precision, r.backend) == (precision, backend)]
    return row


def test_every_requested_cell_is_a_row_in_order(result):
    assert [(r.precision, r.backend) for r in result.rows] == [
        ("fp32", "onnxruntime"), ("fp32", "tensorrt"), ("fp16", "onnxruntime"), ("fp16", "tensorrt")]
    assert all(r.model == "tiny" for r in result.rows)


def test_onnxruntime_cell_has_sane_statistics(result):
    row = _row(result, "fp32", "onnxruntime")
    assert row.ok and row.reason == ""
    inf = row.stages["infer"]
    assert inf.stats.count >= QUICK["iters"] or inf.stop == "time"
    assert 0 < inf.stats.min <= inf.stats.p50 <= inf.stats.p90 <= inf.stats.p99 <= inf.stats.max
    assert inf.stop in ("stable", "time")
    # ONNX Runtime on the CPU reports compute only; no transfer stages are invented
    assert "h2d" not in row.stages and "d2h" not in row.stages
    comp = row.stages["compute"].stats
    assert comp.count == inf.stats.count and comp.p50 <= inf.stats.p50
    for stage in ("pre", "post"):
        assert row.stages[stage].stats.count >= 3 and row.stages[stage].stats.p50 > 0
    assert row.throughput_fps == pytest.approx(1e3 / inf.stats.mean)
    assert row.input_shape == (1, 32, 48, 3)
    assert row.backend_info["backend"] == "onnxruntime"
    assert row.e2e is not None and row.e2e.frames == QUICK["e2e_frames"] and row.e2e.fps > 0
    assert set(row.e2e.stages) >= {"capture", "pre", "infer", "post", "e2e"}


def test_tensorrt_is_skipped_here_with_its_reason(result):
    import importlib.util
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed on this machine")
    row = _row(result, "fp32", "tensorrt")
    assert row.status == "skipped" and not row.stages
    assert "TensorRT" in row.reason and "not installed" in row.reason


def test_missing_precision_is_skipped_with_its_reason(result):
    for backend in ("onnxruntime", "tensorrt"):
        row = _row(result, "fp16", backend)
        assert row.status == "skipped"
        assert "has no fp16 model" in row.reason and "segrt quantize" in row.reason


def test_table_shows_numbers_and_skip_reasons(result):
    text = format_table(result)
    assert "skipped: bundle" in text and "has no fp16 model" in text
    p50 = _row(result, "fp32", "onnxruntime").stages["infer"].stats.p50
    line = next(l for l in text.splitlines() if l.startswith("tiny") and "onnxruntime" in l and " ok" in l)
    assert "1x32x48x3" in line
    assert any(abs(float(tok) - p50) <= 0.01 * p50 + 1e-3 for tok in line.split()[4:10] if tok[0].isdigit())


def test_all_four_outputs_are_written_and_well_formed(result, tmp_path):
    paths = write_all(result, tmp_path / "out")
    assert {k: p.name for k, p in paths.items()} == {"json": "bench.json", "csv": "bench.csv",
                                                     "png": "bench.png", "table": "bench.txt"}
    # JSON: schema tag, environment, settings and every row with its stage statistics
    data = load_json(paths["json"])
    assert data["schema"] == JSON_SCHEMA
    assert data["environment"]["libraries"]["onnxruntime"]
    assert data["environment"]["cpu"]["logical_cores"] >= 1
    assert data["settings"]["iters"] == QUICK["iters"] and data["settings"]["min_samples"] == 3
    rows = data["rows"]
    assert len(rows) == 4
    ok = rows[0]
    assert set(ok) >= {"model", "bundle", "precision", "backend", "status", "reason", "input_shape", "stages",
                       "throughput_fps", "e2e", "accuracy", "backend_info"}
    for stage in ("infer", "compute", "pre", "post"):
        assert set(ok["stages"][stage]) == set(STAT_FIELDS) | {"stop"}
    assert rows[1]["status"] == "skipped" and rows[1]["stages"] == {}
    assert BenchResult.from_dict(data).to_dict() == data  # lossless round trip
    # CSV: the documented columns, one line per cell, numbers where measured
    with open(paths["csv"]) as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == csv_columns()
        lines = list(reader)
    assert len(lines) == 4
    assert float(lines[0]["infer_p50"]) == pytest.approx(ok["stages"]["infer"]["p50"])
    assert lines[1]["infer_p50"] == "" and lines[1]["status"] == "skipped"
    assert set(f"{s}_p50" for s in ALL_STAGES) <= set(reader.fieldnames)
    # PNG: a real image of a plausible size
    import matplotlib.image as mpimg
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(paths["png"])
    assert img.shape[0] > 300 and img.shape[1] > 600 and float(np.std(img)) > 0.01
    # the text table is the terminal table
    assert paths["table"].read_text().strip() == format_table(result).strip()


def test_a_run_compared_with_itself_has_no_regression(result):
    comps = compare(result, result.to_dict())
    assert comps and all(c.verdict == "within noise" for c in comps)
    assert {c.metric for c in comps} == {"infer", "pre", "post", "e2e_fps"}


def test_dynamic_bundle_runs_at_the_requested_size(bundles):
    static, dynamic = bundles
    res = bench_bundles([static.path, dynamic.path], size=(48, 64), e2e=False, **{**QUICK, "iters": 4})
    stat, dyn = res.rows
    assert stat.ok and stat.input_shape == (1, 32, 48, 3) and "static export: fixed at 32x48" in stat.note
    assert dyn.ok and dyn.input_shape == (1, 48, 64, 3) and "48x64" in dyn.note
    assert stat.e2e is None and dyn.e2e is None


def test_size_outside_the_exported_range_is_skipped(bundles):
    _, dynamic = bundles
    (row,) = bench_bundles([dynamic.path], size=(128, 128), e2e=False, **QUICK).rows
    assert row.status == "skipped" and "outside the exported range 16x16..64x96" in row.reason


def test_bad_arguments_fail_before_measuring(bundles, tmp_path):
    static, _ = bundles
    with pytest.raises(ConfigError, match="unknown precision"):
        bench_bundles([static.path], precisions="fp64", **QUICK)
    with pytest.raises(ConfigError, match="unknown backend"):
        bench_bundles([static.path], backends="auto", **QUICK)
    with pytest.raises(BundleError):
        bench_bundles([static.path, tmp_path / "nope"], **QUICK)


def test_cli_writes_outputs_and_compares(bundles, tmp_path, capsys):
    from segrt.tools.cli import main

    static, _ = bundles
    args = ["bench", str(static.path), "--iters", "5", "--warmup", "1", "--max-time", "0.3",
            "--e2e-frames", "5", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "Inference latency" in out and "bench.json" in out
    for name in ("bench.json", "bench.csv", "bench.png", "bench.txt"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    rc = main(args + ["--no-e2e", "--out", str(tmp_path / "b"), "--compare", str(tmp_path / "a" / "bench.json")])
    out = capsys.readouterr().out
    assert "Comparison with baseline" in out
    assert rc == (1 if "REGRESSION" in out else 0)
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["rows"][0]["e2e"] is None


def test_cli_rejects_a_bad_size_and_a_missing_baseline(bundles, tmp_path, capsys):
    from segrt.tools.cli import main

    static, _ = bundles
    assert main(["bench", str(static.path), "--size", "big"]) == 2
    assert "--size 'big' is not HxW" in capsys.readouterr().err
    assert main(["bench", str(static.path), "--compare", str(tmp_path / "none.json")]) == 2
    assert "cannot read benchmark JSON" in capsys.readouterr().err


def test_static_batch_feeds_every_slot_and_counts_every_image(tmp_path):
    from _bench_helpers import batched_bundle

    b = batched_bundle(tmp_path / "b2", batch=2)
    (row,) = bench_bundles([b.path], e2e=False, **QUICK).rows
    assert row.ok and row.input_shape == (2, 32, 48, 3)
    assert row.throughput_fps == pytest.approx(2 * 1e3 / row.stages["infer"].stats.mean)


def test_bundle_labels_are_unique_and_path_derived(tmp_path):
    from segrt.tools.bench import bundle_labels

    paths = [tmp_path / "x" / "a" / "demo", tmp_path / "y" / "a" / "demo", tmp_path / "z" / "other",
             tmp_path / "z" / "other"]
    assert bundle_labels(paths) == ["x/a/demo", "y/a/demo", "other", "other #2"]


def test_two_bundles_of_one_model_stay_two_rows_and_two_bars(tmp_path):
    a, b = static_bundle(tmp_path / "a" / "tiny"), static_bundle(tmp_path / "b" / "tiny")
    assert a.manifest.name == b.manifest.name == "tiny"
    res = bench_bundles([a.path, b.path], e2e=False, **QUICK)
    assert [r.name for r in res.rows] == ["a/tiny", "b/tiny"] and len({r.key for r in res.rows}) == 2
    text = format_table(res)
    assert any(l.startswith("a/tiny ") for l in text.splitlines())
    assert any(l.startswith("b/tiny ") for l in text.splitlines())
    again = BenchResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert [r.name for r in again.rows] == ["a/tiny", "b/tiny"]
    comps = [c for c in compare(res, res.to_dict()) if c.metric == "infer"]
    assert sorted(c.model for c in comps) == ["a/tiny", "b/tiny"]


def test_every_cell_failing_exits_2_and_writes_no_result(tmp_path, capsys):
    from segrt.tools.cli import main

    bundle = static_bundle(tmp_path / "tiny")
    manifest = json.loads((bundle.path / "segrt.json").read_text())
    manifest["input"]["height"] = 40  # the ONNX is 32 rows high: every backend call fails
    (bundle.path / "segrt.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    rc = main(["bench", str(bundle.path), "--iters", "3", "--warmup", "1", "--no-e2e", "--no-progress",
               "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 2
    assert "no cell was measured (1 failed, 0 skipped)" in cap.err and "failed.txt" in cap.err
    assert "1 of 1 cells FAILED" in cap.out and "failed: failed" not in cap.out
    assert sorted(p.name for p in out.iterdir()) == ["bench-failed.txt"]
    text = (out / "bench-failed.txt").read_text()
    assert text.startswith("NO CELL WAS MEASURED") and "ONNX Runtime failed" in text


def test_chart_draws_the_baseline(result, tmp_path):
    pytest.importorskip("matplotlib")
    import cv2

    plain = write_all(result, tmp_path / "plain")["png"]
    with_base = write_all(result, tmp_path / "base", baseline=result.to_dict())["png"]
    a, b = cv2.imread(str(plain)), cv2.imread(str(with_base))
    assert a.shape == b.shape and not np.array_equal(a, b)
    top = slice(0, a.shape[0] // 3)  # the inference bars
    black = [int((img[top] < 40).all(axis=2).sum()) for img in (a, b)]
    assert black[1] > black[0] + 20  # the baseline's black line across the bar
