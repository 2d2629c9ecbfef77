"""``segrt eval`` against the backend's inference alone, on the same frames (prints; asserts nothing).

    flock /tmp/segrt-bench.lock python benchmarks/eval_speed.py [--frames 500] [--size 512x1024]
        [--model lraspp_mobilenet_v3_large] [--threads 2]

Writes a VOC-layout set of ``--frames`` JPEG images and palette-PNG labels at ``--size`` into a
temporary folder, exports the model (random weights: the numbers are about speed, not accuracy),
then times, in one run:

* inference alone: ``backend.infer`` on preprocessed tensors already in memory (8 distinct
  frames, cycled ``--frames`` times), before and after the eval; their mean is the baseline;
* ``evaluate_bundle`` over the whole set: reading and decoding images and labels (prefetched on
  a helper thread), preprocessing, the same inference, resizing to the label and the bincount.

The issue's target is eval <= 1.15x inference alone. On a shared machine the two inference-alone
runs can differ by more than that (other load comes and goes), so the script also prints eval's
time over its own backend time, measured on the same frames at the same moment; with the one-thread
mode that ratio is the whole cost of reading, preprocessing and scoring.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segrt.calibration.dataset_eval import evaluate_bundle
from segrt.runtime.backends.select import backend_for_bundle
from segrt.runtime.class_presets import voc_palette
from segrt.runtime.preprocess import Preprocessor
from segrt.tools.envinfo import cpu_info


def write_voc(root: Path, n: int, h: int, w: int) -> None:
    base = root / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    palette = [v for c in voc_palette(256) for v in c]
    ids = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3, dtype=np.uint8)
        lab = np.zeros((h, w), np.uint8)
        for _ in range(6):  # a few coloured blocks, each its class
            y, x = int(rng.integers(0, h - 64)), int(rng.integers(0, w - 64))
            bh, bw = int(rng.integers(32, h // 2)), int(rng.integers(32, w // 2))
            c = int(rng.integers(1, 21))
            img[y:y + bh, x:x + bw] = np.array(palette[3 * c:3 * c + 3][::-1], np.uint8)
            lab[y:y + bh, x:x + bw] = c
        lab[:, :4] = 255
        name = f"{i:06d}"
        cv2.imwrite(str(base / "JPEGImages" / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        Image.frombytes("P", (w, h), lab.tobytes()).save(base / "SegmentationClass" / f"{name}.png")
        ids.append(name)
    (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids) + "\n")


def infer_alone(bundle, frames: list[np.ndarray], n: int, threads: int | None) -> float:
    """Seconds for ``n`` backend calls on preprocessed tensors (after 3 warm-up calls)."""
    pre = Preprocessor(bundle.manifest)
    tensors = [pre(f)[0].copy() for f in frames]
    name = bundle.manifest.input.name
    with backend_for_bundle(bundle, backend="onnxruntime", threads=threads) as be:
        for t in tensors[:3]:
            be.infer({name: t})
        t0 = time.perf_counter()
        for i in range(n):
            be.infer({name: tensors[i % len(tensors)]})
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--size", default="512x1024", help="HxW of frames, labels and model")
    ap.add_argument("--model", default="lraspp_mobilenet_v3_large")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    from segrt.export.api import export_bundle

    cpu = cpu_info()
    print(f"# {cpu.get('model', 'cpu')}, {cpu.get('logical_cores', '?')} logical cores; {args.model} "
          f"(random weights) {h}x{w} fused; {args.frames} frames")
    with tempfile.TemporaryDirectory(prefix="segrt-eval-speed-") as tmp:
        root = Path(tmp)
        write_voc(root / "voc", args.frames, h, w)
        bundle = export_bundle(args.model, root / "bundle", size=(h, w), classes="voc", verify=False)
        frames = [cv2.imread(str(p)) for p in sorted((root / "voc/VOC2012/JPEGImages").glob("*.jpg"))[:8]]
        uri = f"voc://{root / 'voc'}"
        before = infer_alone(bundle, frames, args.frames, args.threads)
        timed = {}
        for prefetch in (True, False):
            t0 = time.perf_counter()
            report = evaluate_bundle(bundle, uri, threads=args.threads, progress=False, store=False,
                                     prefetch=prefetch)
            timed[prefetch] = (time.perf_counter() - t0, report)
        after = infer_alone(bundle, frames, args.frames, args.threads)
    alone = (before + after) / 2
    n = args.frames
    print(f"inference alone   {1e3 * alone / n:8.1f} ms/frame  (before {1e3 * before / n:.1f}, "
          f"after {1e3 * after / n:.1f})")
    for prefetch, (eval_s, report) in timed.items():
        what = "prefetch thread" if prefetch else "one thread     "
        print(f"segrt eval, {what} {1e3 * eval_s / n:8.1f} ms/frame  (of which backend "
              f"{report.runs[0].infer_ms:.1f}); ratio to inference alone {eval_s / alone:.3f}  (target <= 1.15); "
              f"to its own backend time {1e3 * eval_s / n / report.runs[0].infer_ms:.3f}")
    print(f"mIoU {100 * report.runs[0].result.miou:.2f} (random weights: meaningless)")


if __name__ == "__main__":
    main()
