"""MediaPipe Selfie Segmentation through the whole chain on real photos (prints the note's table).

    flock /tmp/segrt-bench.lock python benchmarks/mediapipe_chain.py [--frames 40] [--out DIR]

1. ``segrt export mediapipe_selfie`` (fused: the 0.5 threshold is the argmax), which checks the
   PyTorch port against the TFLite interpreter on scikit-image's photos;
2. real frames: pans and zooms over scikit-image's photos, written as JPEGs, with the FP32
   bundle's masks as their labels (``images/`` + ``masks/``);
3. ``segrt quantize`` FP16, and INT8 calibrated on those frames (held-out part for the gate);
4. ``segrt run`` on a video made of the frames;
5. ``segrt eval`` of FP32/FP16/INT8 against the FP32 masks (mIoU vs FP32; latency per precision
   is the backend's mean time per frame there).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from segrt.calibration.api import quantize_bundle
from segrt.calibration.dataset_eval import evaluate_bundle
from segrt.export.api import export_bundle
from segrt.export.mediapipe_verify import photo_frames
from segrt.runtime.backends.select import backend_for_bundle
from segrt.runtime.postprocess import MaskDecoder
from segrt.runtime.preprocess import Preprocessor
from segrt.tools.envinfo import cpu_info
from segrt.tools.eval_report import format_table


def write_labelled(bundle, frames: list[np.ndarray], root: Path) -> Path:
    """images/ + masks/ with the FP32 bundle's masks (at frame resolution) as labels."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pre, dec = Preprocessor(bundle.manifest), MaskDecoder(bundle.manifest)
    with backend_for_bundle(bundle, backend="onnxruntime") as be:
        for i, f in enumerate(frames):
            tensor, _ = pre(f)
            mask = dec.decode(be.infer({bundle.manifest.input.name: tensor}))
            label = cv2.resize(mask, (f.shape[1], f.shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
            cv2.imwrite(str(root / "images" / f"{i:04d}.png"), f)  # lossless: FP32 scores exactly 1
            cv2.imwrite(str(root / "masks" / f"{i:04d}.png"), label)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--model", default="mediapipe_selfie")
    ap.add_argument("--out", default=None, help="keep the bundle, frames and video here")
    args = ap.parse_args()
    from segrt.runtime.pipeline import Pipeline

    cpu = cpu_info()
    print(f"# {cpu.get('model', 'cpu')}, {cpu.get('logical_cores', '?')} logical cores; {args.model}")
    with tempfile.TemporaryDirectory(prefix="segrt-mp-chain-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        bundle = export_bundle(args.model, root / "bundle")
        ref = bundle.manifest.export["tflite_reference"]
        print(f"port vs TFLite ({ref['reference']}): max |p diff| {ref['max_abs_prob_diff']:.2e}, mask agreement "
              f"{100 * ref['mask_agreement']:.3f}%")
        for r in ref["images"]:
            print(f"  {r['image']:<10} max |p diff| {r['max_abs_prob_diff']:.2e}  agreement "
                  f"{100 * r['mask_agreement']:.3f}%  person {100 * r['person_fraction']:.1f}%")
        frames = photo_frames(args.frames)
        data = write_labelled(bundle, frames, root / "frames")
        fp16 = quantize_bundle(bundle, "fp16", eval_source=str(data), eval_frames=len(frames), progress=False)
        int8 = quantize_bundle(bundle, "int8", calib=str(data), calib_frames=len(frames), eval_frames=12,
                               progress=False, enforce_gate=False)
        for q in (fp16, int8):
            print(f"{q.precision}: agreement with FP32 {100 * (q.accuracy.agreement or 0):.3f}% on held-out real "
                  f"frames, gate {'passed' if q.passed else 'FAILED'}")
        video = root / "frames.mp4"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (480, 360))
        for f in frames:
            writer.write(f)
        writer.release()
        stats = Pipeline(bundle, str(video), str(root / "run.mp4"), precision="fp32").run()
        print(f"segrt run on {video.name}: {stats.frames} frames, {stats.fps:.1f} fps end to end")
        report = evaluate_bundle(bundle, str(data), precisions="fp32,fp16,int8", backend="onnxruntime",
                                 progress=False)
        print(format_table(report))


if __name__ == "__main__":
    main()
