"""benchmarks/perf_targets.py: the ratio arithmetic, the interleaving, and the stable output format."""
from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf_targets.py"


@pytest.fixture(scope="module")
def pt():
    spec = importlib.util.spec_from_file_location("perf_targets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_round_ratios_are_ratios_of_per_round_medians(pt):
    rounds = [{"a": [10.0, 12.0, 11.0], "b": [5.0, 5.0, 6.0], "c": [1.0, 1.0, 1.0]},
              {"a": [30.0, 30.0, 30.0], "b": [15.0, 15.0, 15.0], "c": [3.0, 3.0, 3.0]},
              {"a": [1.0]}]  # a round without b does not count
    assert pt.round_ratios(rounds, "a", "b") == pytest.approx([11 / 5, 2.0])
    assert pt.round_ratios(rounds, ("a", "c"), "b") == pytest.approx([12 / 5, 33 / 15])
    assert pt.p50(rounds, "c") == pytest.approx(2.0)  # median of all samples: [1, 1, 1, 3, 3, 3]
    assert pt.p50(rounds, "absent") is None


def test_interleave_rotates_the_order_and_warms_every_variant(pt):
    calls: list[str] = []

    def variant(name: str, ms: float):
        def run() -> float:
            calls.append(name)
            return ms
        return run

    rounds = pt.interleave({"x": variant("x", 1.0), "y": variant("y", 2.0), "z": variant("z", 3.0)},
                           rounds=3, per_round=2, warmup=1, max_time_s=60, say=lambda m: None)
    assert [list(r) for r in rounds] == [["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"]]
    assert all(r["y"] == [2.0, 2.0] for r in rounds)
    # 1 warm-up each, then per round and variant one untimed call + 2 timed ones
    assert len(calls) == 3 + 3 * 3 * 3
    assert calls[:3] == ["x", "y", "z"]


def test_format_value_reports_targets_and_reasons(pt):
    assert pt.format_value("pipeline_vs_backend", 0.95, {}) == "0.950  (target >= 0.9: met)"
    assert pt.format_value("prepost_ms_1080p", 7.5, {}) == "7.50  (target <= 5: NOT met)"
    why = {"int8_infer_p50_ms": "quantize int8 failed: boom"}
    assert pt.format_value("int8_latency_vs_fp32", None, why) == "n/a (quantize int8 failed: boom)"
    assert pt.format_value("torch_eager_p50_ms", None, {}) == "n/a"


@pytest.mark.slow
def test_a_real_run_prints_every_key_in_order_and_one_json_line(tmp_path, capsys, pt):
    rc = pt.main(["--model", "lraspp_mobilenet_v3_large", "--size", "64x128", "--threads", "1", "--rounds", "2",
                  "--per-round", "2", "--warmup", "1", "--pipeline-rounds", "2", "--e2e-frames", "6",
                  "--calib-frames", "8", "--eval-frames", "2", "--workdir", str(tmp_path)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("# segrt perf_targets:")
    keys = [line.split(":", 1)[0] for line in lines[1:-1]]
    assert keys == list(pt.KEYS)
    assert lines[-1].startswith("json: ")
    record = json.loads(lines[-1][len("json: "):])
    assert record["schema"] == pt.SCHEMA and record["size"] == "64x128" and record["threads"] == 1
    for key in ("backend_infer_p50_ms", "pipeline_fps", "torch_eager_p50_ms", "fp16_infer_p50_ms",
                "int8_infer_p50_ms", "prepost_ms_1080p"):
        assert record[key] > 0, key
    for key, ratios in record["per_round"].items():  # each ratio is the median of its per-round ratios
        assert record[key] == pytest.approx(statistics.median(ratios)), key
    assert len(record["per_round"]["pipeline_vs_backend"]) == 2
    assert record["environment"]["libraries"]["onnxruntime"]
    assert (tmp_path / "lraspp_mobilenet_v3_large.fused" / "model.int8.onnx").is_file()
