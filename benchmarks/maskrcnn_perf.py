"""Mask R-CNN performance targets, measured as ratios in one run (issue 18).

    python benchmarks/maskrcnn_perf.py                          # both parts, 320x480, 1 thread
    python benchmarks/maskrcnn_perf.py --part paste --instances 100
    python benchmarks/maskrcnn_perf.py --part ort --size 320x480 --threads 2 --rounds 5

* ``paste_draw_ms_1080p``: the runtime's ``instances_from_outputs`` (map boxes back to the
  frame, resize each 28x28 probability into its box, threshold) plus ``Renderer.render``
  (overlay, contours, boxes, labels, legend) for ``--instances`` detections on a 1920x1080
  frame, model input 320x480 letterboxed; boxes of 2..40% of the frame side, seeded (about
  12 Mpx of masks, 70% of the frame covered). Target <= 5 ms: the median of every frame of
  ``--paste-rounds`` rounds of ``--repeats`` frames, with OpenCV's default thread count (both
  steps split their work across ``segrt.runtime.parallel.parts()`` threads). Each round also
  times one thread (``cv2.setNumThreads(1)``, ``paste_draw_ms_1080p_1thread``) and, with numba
  installed, the OpenCV implementation (``paste_draw_ms_1080p_opencv``, the same pictures here):
  interleaved, so that a shared machine's slow spells fall on all three alike; each round's
  median is printed too.
* ``ort_speedup_vs_torch``: PyTorch eager ``MaskRCNNExport`` (the exported module itself,
  unfused float input, outputs padded to 100) / ONNX Runtime on the exported unfused graph,
  same input, same thread count (``torch.set_num_threads`` and ORT intra-op threads).
  Measured in interleaved rounds (order alternates); the ratio is the median of the
  per-round ratios of medians. Random weights detect a full 100 boxes per image, which is the
  worst case for the RoI heads. Target >= 1.0.

Output: one ``# `` header line, ``key: value`` lines, then ``json: {...}`` with every figure.
Wrap in ``flock /tmp/segrt-bench.lock`` on a shared machine and name the CPU beside figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from segrt.runtime.machine import this_cpu

PASTE_DRAW_TARGET_MS = 5.0  # issue 18: paste + draw of 100 instances at 1080p


def synthetic_outputs(n: int, model_hw: tuple[int, int], rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` detections padded to ``rows`` in the static instance contract, with blob-like masks."""
    rng = np.random.default_rng(seed)
    h, w = model_hw
    side = rng.uniform(0.02, 0.4, (n, 2)) * (w, h)
    x0 = rng.uniform(0, w - side[:, 0])
    y0 = rng.uniform(0, h - side[:, 1])
    boxes = np.zeros((rows, 4), np.float32)
    boxes[:n] = np.stack([x0, y0, x0 + side[:, 0], y0 + side[:, 1]], 1)
    yy, xx = np.mgrid[0:28, 0:28]
    blob = np.exp(-(((xx - 13.5) / 9) ** 2 + ((yy - 13.5) / 11) ** 2)).astype(np.float32)
    masks = np.zeros((rows, 1, 28, 28), np.float32)
    masks[:n, 0] = blob
    scores = np.zeros(rows, np.float32)
    scores[:n] = np.sort(rng.uniform(0.5, 1.0, n))[::-1]
    labels = np.zeros(rows, np.int64)
    labels[:n] = rng.integers(1, 91, n)
    return {"boxes": boxes, "labels": labels, "scores": scores, "masks": masks,
            "num_detections": np.array([n], np.int64)}


def paste_draw(n: int, repeats: int) -> dict:
    """Per-frame paste and draw times (ms lists) of ``repeats`` frames, with the current thread count."""
    from segrt.runtime.instances import INSTANCE_OUTPUTS, instances_from_outputs
    from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette
    from segrt.runtime.preprocess import letterbox_for
    from segrt.runtime.render import Renderer

    classes = ("__background__",) + tuple(f"class{i}" for i in range(1, 91))  # COCO's 91 ids
    manifest = Manifest(name="bench", classes=classes, palette=default_palette(len(classes)),
                        input=InputSpec(name="frame", height=320, width=480, layout="NHWC", dtype="uint8", fused=True),
                        preprocess=PreprocessSpec(resize="letterbox"),
                        output=OutputSpec(kind="instances", names=INSTANCE_OUTPUTS, num_classes=len(classes)))
    outputs = synthetic_outputs(n, (320, 480), 100)
    frame = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    lb = letterbox_for((1920, 1080), (480, 320), "letterbox")
    renderer = Renderer(manifest)
    paste, draw = [], []
    inst = None
    for _ in range(repeats + 2):
        del inst  # as a pipeline would: the last frame's instances are gone before the next paste
        t0 = time.perf_counter()
        inst = instances_from_outputs(outputs, lb, 0.5, names=INSTANCE_OUTPUTS)
        t1 = time.perf_counter()
        renderer.render(frame, inst, lb)
        t2 = time.perf_counter()
        paste.append((t1 - t0) * 1e3)
        draw.append((t2 - t1) * 1e3)
    return {"paste": paste[2:], "draw": draw[2:]}


def paste_draw_figures(n: int, repeats: int, rounds: int) -> dict:
    """:func:`paste_draw` in ``rounds`` interleaved rounds of: OpenCV's thread count, one thread
    (``cv2.setNumThreads(1)``), and (with numba) the OpenCV implementation at OpenCV's thread
    count. Each figure is the median of all its frames; ``*_rounds`` are the rounds' medians (the
    spread a shared machine adds)."""
    import cv2

    from segrt.runtime import kernels, parallel

    threads = cv2.getNumThreads()
    kinds = {"": (threads, True), "_1thread": (1, True)}
    if kernels.enabled():
        kinds["_opencv"] = (threads, False)
    frames: dict[str, dict[str, list]] = {k: {"paste": [], "draw": [], "total": []} for k in kinds}
    rounds_total: dict[str, list] = {k: [] for k in kinds}
    enabled = kernels.enabled
    try:
        for _ in range(rounds):
            for kind, (count, compiled) in kinds.items():
                cv2.setNumThreads(count)
                kernels.enabled = enabled if compiled else (lambda: False)
                got = paste_draw(n, repeats)
                total = [p + d for p, d in zip(got["paste"], got["draw"])]
                for key, values in (("paste", got["paste"]), ("draw", got["draw"]), ("total", total)):
                    frames[kind][key] += values
                rounds_total[kind].append(round(statistics.median(total), 3))
    finally:
        cv2.setNumThreads(threads)
        kernels.enabled = enabled
    result = {"instances": n, "threads": parallel.parts(), "compiled": kernels.enabled(),
              "frames_per_figure": rounds * repeats}
    for kind in kinds:
        result[f"paste_draw_ms_1080p{kind}"] = round(statistics.median(frames[kind]["total"]), 3)
        result[f"paste_ms{kind}"] = round(statistics.median(frames[kind]["paste"]), 3)
        result[f"draw_ms{kind}"] = round(statistics.median(frames[kind]["draw"]), 3)
        result[f"paste_draw_ms_1080p{kind}_rounds"] = rounds_total[kind]
    if "_opencv" in kinds:
        result["compiled_speedup_vs_opencv"] = round(result["paste_draw_ms_1080p_opencv"] / result["paste_draw_ms_1080p"], 2)
    result["target_ms"] = PASTE_DRAW_TARGET_MS
    result["target_met"] = result["paste_draw_ms_1080p"] <= PASTE_DRAW_TARGET_MS
    return result


def ort_vs_torch(size: tuple[int, int], threads: int, rounds: int, per_round: int, workdir: Path) -> dict:
    import onnxruntime as ort
    import torch

    from segrt.export.api import export_bundle
    from segrt.export.maskrcnn import MaskRCNNExport
    from segrt.export.zoo import get_entry
    from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    torch.manual_seed(0)
    bundle = export_bundle("maskrcnn_resnet50_fpn", workdir / "mrcnn", size=size, fuse=False, verify=False)
    torch.manual_seed(0)
    net = get_entry("maskrcnn_resnet50_fpn").build()
    module = MaskRCNNExport(net, fused=False).eval()
    torch.set_num_threads(threads)
    h, w = size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    xt = torch.from_numpy(x)
    backend = OnnxRuntimeBackend(bundle.onnx_path("fp32"), threads=threads).open()
    name = bundle.manifest.input.name

    def run_torch():
        with torch.inference_mode():
            module(xt)

    def run_ort():
        backend.infer({name: x})

    ratios, t_torch, t_ort = [], [], []
    for r in range(rounds):
        block = {}
        for label, fn in (("torch", run_torch), ("ort", run_ort))[:: 1 if r % 2 == 0 else -1]:
            fn()  # untimed: the other runtime's threads go quiet
            times = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            block[label] = statistics.median(times)
        t_torch.append(block["torch"])
        t_ort.append(block["ort"])
        ratios.append(block["torch"] / block["ort"])
    k = int(backend.infer({name: x})["num_detections"][0])
    backend.close()
    return {"size": f"{h}x{w}", "threads": threads, "detections": k, "ort_version": ort.__version__,
            "torch_version": torch.__version__, "torch_ms": round(statistics.median(t_torch), 1),
            "ort_ms": round(statistics.median(t_ort), 1),
            "ort_speedup_vs_torch": round(statistics.median(ratios), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("all", "paste", "ort"), default="all")
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=30, help="frames per round of the paste part")
    ap.add_argument("--paste-rounds", type=int, default=5, help="interleaved rounds of the paste part")
    ap.add_argument("--size", default="320x480")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    result = {"cpu": this_cpu().describe()}
    print(f"# maskrcnn_perf on {result['cpu']}")
    if args.part in ("all", "paste"):
        p = result["paste"] = paste_draw_figures(args.instances, args.repeats, args.paste_rounds)
        impl = "numba kernels" if p["compiled"] else "OpenCV (numba not installed, or SEGRT_NO_JIT set)"
        print(f"paste_draw_ms_1080p: {p['paste_draw_ms_1080p']} ({args.instances} instances; "
              f"paste {p['paste_ms']} + draw {p['draw_ms']}; {p['threads']} thread(s), {impl}; "
              f"rounds {p['paste_draw_ms_1080p_rounds']})")
        print(f"paste_draw_ms_1080p_1thread: {p['paste_draw_ms_1080p_1thread']} "
              f"(paste {p['paste_ms_1thread']} + draw {p['draw_ms_1thread']})")
        if "paste_draw_ms_1080p_opencv" in p:
            print(f"paste_draw_ms_1080p_opencv: {p['paste_draw_ms_1080p_opencv']} (paste {p['paste_ms_opencv']} + "
                  f"draw {p['draw_ms_opencv']}, the same pictures without numba): compiled is "
                  f"{p['compiled_speedup_vs_opencv']}x faster")
        print(f"target paste + draw <= {PASTE_DRAW_TARGET_MS:g} ms: {'MET' if p['target_met'] else 'NOT MET'} "
              f"({p['paste_draw_ms_1080p']} ms, median of {p['frames_per_figure']} frames in {args.paste_rounds} "
              f"rounds, on {result['cpu']})")
    if args.part in ("all", "ort"):
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            result["ort"] = ort_vs_torch((h, w), args.threads, args.rounds, args.per_round, Path(tmp))
        o = result["ort"]
        print(f"ort_speedup_vs_torch: {o['ort_speedup_vs_torch']} (torch {o['torch_ms']} ms / ORT {o['ort_ms']} ms, "
              f"{o['size']}, {o['threads']} thread(s), {o['detections']} detections)")
    print("json: " + json.dumps(result))


if __name__ == "__main__":
    main()
