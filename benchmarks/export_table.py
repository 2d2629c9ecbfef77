"""Export every zoo model and tabulate: export seconds, verification numbers, ONNX Runtime vs PyTorch latency.

    python benchmarks/export_table.py                       # all zoo models, default bench sizes
    python benchmarks/export_table.py --models unet lraspp_mobilenet_v3_large --size 256x512
    python benchmarks/export_table.py --compare-exporters --json out.json

For each model: ``export_bundle`` (fused graph, ``--exporter auto``) into a temp folder; the
export seconds (torch.onnx + graph passes), the verification numbers from the manifest, then
the latency of the bundle's ``model.onnx`` in ONNX Runtime and of the same fused module in
PyTorch eager, measured in this one run, same thread count, same uint8 input, after warm-up
(median and p90 of ``--iters`` runs). Heavy models run at a smaller size (stated in the
table). On a shared machine use ``--threads 1``: with other processes on the cores, PyTorch's
2-thread OpenMP runs slow down 3-5x (LR-ASPP 160 ms at 1 thread vs 780 ms at 2 under load
~6), ONNX Runtime's far less, which inflates the ratio. ``--compare-exporters`` also exports each semantic model with both exporters and
reports export time, node count and ORT latency per exporter; the graph-pass study reports
node counts after onnxscript's optimizer and after ONNX Runtime's offline basic optimisation.
Randomly initialised weights: latency is what matters here; Mask R-CNN's detection count
(and thus its post-NMS cost) depends on the weights.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Bench sizes (H, W): real-time nets at the zoo default, heavy backbones smaller to keep the run in minutes.
BENCH_SIZES = {
    "lraspp_mobilenet_v3_large": (256, 512),
    "deeplabv3_mobilenet_v3_large": (256, 512),
    "unet": (256, 512),
    "deeplabv3plus_mobilenet_v3_large": (256, 512),
    "demo_unet": None,  # its own size
    "fcn_resnet50": (128, 256),
    "fcn_resnet101": (128, 256),
    "deeplabv3_resnet50": (128, 256),
    "deeplabv3_resnet101": (128, 256),
    "deeplabv3plus_resnet50": (128, 256),
    "maskrcnn_resnet50_fpn": (128, 160),
    "maskrcnn_resnet50_fpn_v2": (128, 160),
}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_fn(fn, warmup: int, iters: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return {"median_ms": statistics.median(times), "p90_ms": _pct(times, 90), "n": iters}


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def torch_module_for(entry, h: int, w: int):
    """The same fused module the exporter traces (rebuilt with the exporter's seed)."""
    import torch

    from segrt.export.api_torch import SEED
    from segrt.export.fuse import FusedSegmentation, SemanticLogits
    from segrt.export.maskrcnn import MaskRCNNExport

    torch.manual_seed(SEED)
    net = entry.build()
    if entry.weights is not None:
        from segrt.export.weights import load_weights

        load_weights(net, entry.weights)
    if entry.family == "instances":
        return MaskRCNNExport(net).eval()
    return FusedSegmentation(SemanticLogits(net), entry.mean, entry.std, entry.color_order, entry.num_classes).eval()


def ort_basic_nodes(path: Path, workdir: Path) -> int:
    """Node count after ONNX Runtime's offline basic optimisation of the bundle graph."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    out = workdir / "ort_basic.onnx"
    so.optimized_model_filepath = str(out)
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    n = len(onnx.load(str(out)).graph.node)
    out.unlink()
    return n


def bench_model(name: str, size, args, workdir: Path) -> dict:
    import onnx
    import torch

    from segrt.export.api import export_bundle
    from segrt.export.zoo import get_entry

    entry = get_entry(name)
    h, w = size or entry.input_size
    row: dict = {"model": name, "family": entry.family, "size": f"{h}x{w}"}
    out = workdir / name
    bundle = export_bundle(name, out, size=(h, w), exporter=args.exporter)
    ex = bundle.manifest.export
    v = ex["verification"]
    onnx_path = bundle.onnx_path("fp32")
    row.update(exporter=ex["exporter"], export_s=ex["seconds"], verify_s=v["seconds"],
               nodes=len(onnx.load(str(onnx_path)).graph.node), ort_basic_nodes=ort_basic_nodes(onnx_path, workdir),
               passes=ex["passes"])
    if entry.family == "instances":
        row.update(max_abs_diff=v["box_max_abs_diff_px"], diff_unit="box px",
                   agreement_pct=v["matched_pct"], agreement_unit="detections matched",
                   detections=v["detections_compared"])
    else:
        row.update(max_abs_diff=v["max_abs_diff"], diff_unit="logits", agreement_pct=v["mask_agreement_pct"],
                   agreement_unit="mask pixels")
    frame = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    heavy = entry.family == "instances" or "resnet" in name
    iters = max(2, args.iters // 3) if heavy else args.iters
    sess = ort_session(onnx_path, args.threads)
    in_name = sess.get_inputs()[0].name
    row["ort"] = time_fn(lambda: sess.run(None, {in_name: frame}), args.warmup, iters)
    module = torch_module_for(entry, h, w)
    x = torch.from_numpy(frame)
    with torch.no_grad():
        row["torch"] = time_fn(lambda: module(x), args.warmup, iters)
    row["speedup"] = row["torch"]["median_ms"] / row["ort"]["median_ms"]
    sess = module = None  # free the heavy models before the exporter comparison

    if args.compare_exporters and entry.family == "semantic":
        row["exporters"] = {}
        for exp in ("torchscript", "dynamo"):
            d = workdir / f"{name}-{exp}"
            try:
                b = export_bundle(name, d, size=(h, w), exporter=exp)
            except Exception as exc:  # noqa: BLE001 - record and go on
                row["exporters"][exp] = {"error": str(exc)[:200]}
                continue
            p = b.onnx_path("fp32")
            s = ort_session(p, args.threads)
            row["exporters"][exp] = {
                "export_s": b.manifest.export["seconds"], "nodes": len(onnx.load(str(p)).graph.node),
                "max_abs_diff": b.manifest.export["verification"]["max_abs_diff"],
                "ort": time_fn(lambda s=s: s.run(None, {in_name: frame}), args.warmup, iters)}
            s = None
    return row


def environment(threads: int) -> dict:
    import onnx
    import onnxruntime
    import torch

    from segrt.runtime.machine import this_cpu

    return {"cpu": this_cpu().describe(), "cores": os.cpu_count(), "threads": threads, "loadavg_start": os.getloadavg()[0],
            "python": sys.version.split()[0],
            "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def format_table(rows: list[dict], env: dict) -> str:
    lines = [f"# export table ({env['cpu']}, {env['threads']} threads, torch {env['torch']}, "
             f"onnxruntime {env['onnxruntime']}; fused uint8 graphs, random init; load average "
             f"{env['loadavg_start']:.1f} at start, {env.get('loadavg_end', float('nan')):.1f} at end)", "",
             "| model | size | exporter | export s | max abs diff | agreement | nodes (ORT basic) | "
             "ORT ms | PyTorch ms | PyTorch/ORT |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r.get('size', '')} | FAILED: {r['error'][:120]} |||||||")
            continue
        lines.append(
            f"| {r['model']} | {r['size']} | {r['exporter']} | {r['export_s']:.1f} | "
            f"{r['max_abs_diff']:.2g} ({r['diff_unit']}) | {r['agreement_pct']:.2f}% {r['agreement_unit']} | "
            f"{r['nodes']} ({r['ort_basic_nodes']}) | {r['ort']['median_ms']:.1f} | {r['torch']['median_ms']:.1f} | "
            f"{r['speedup']:.2f}x |")
    cmp = [r for r in rows if r.get("exporters")]
    if cmp:
        lines += ["", "| model | exporter | export s | nodes | max abs diff | ORT ms |", "|---|---|---|---|---|---|"]
        for r in cmp:
            for exp, e in r["exporters"].items():
                if "error" in e:
                    lines.append(f"| {r['model']} | {exp} | FAILED: {e['error'][:100]} ||||")
                else:
                    lines.append(f"| {r['model']} | {exp} | {e['export_s']:.1f} | {e['nodes']} | "
                                 f"{e['max_abs_diff']:.2g} | {e['ort']['median_ms']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", help="zoo names (default: every available zoo model)")
    ap.add_argument("--size", help="HxW for every model (default: per-model bench sizes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--exporter", default="auto")
    ap.add_argument("--compare-exporters", action="store_true")
    ap.add_argument("--json", help="write the rows and environment here")
    args = ap.parse_args(argv)

    import logging

    import torch

    from segrt.export.spec import parse_size
    from segrt.export.zoo import list_entries

    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    names = args.models or [e.name for e in list_entries() if not e.unavailable]
    env = environment(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="segrt-export-table-") as tmp:
        for name in names:
            size = parse_size(args.size) if args.size else BENCH_SIZES.get(name)
            t = time.perf_counter()
            try:
                row = bench_model(name, size, args, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one failing model must not hide the others
                row = {"model": name, "error": f"{type(exc).__name__}: {exc}"}
            row["wall_s"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "passes"}, default=str), file=sys.stderr, flush=True)
    env["loadavg_end"] = os.getloadavg()[0]  # other work on the machine skews latency, PyTorch's most
    print(format_table(rows, env))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
