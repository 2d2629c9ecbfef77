"""``segrt quantize BUNDLE --precision fp16|int8``: lower-precision ONNX behind an accuracy gate."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize", help="make the FP16 or INT8 (Q/DQ) ONNX of a bundle, gated against FP32",
        description="FP16: cast the ONNX (I/O types and sensitive ops kept FP32). INT8: calibrate on your frames "
                    "(streamed, evenly sampled, de-duplicated) and insert symmetric Q/DQ nodes for TensorRT. "
                    "Either is compared with FP32 on held-out frames; below the gate the worst layers fall back "
                    "to higher precision, and if it still fails nothing is written (exit 2). An instance bundle (Mask R-CNN; "
                    "fp16, or int8 with Q/DQ on the convolutions only) is gated on detections instead: match rate (box IoU >= 0.5, same label), score drift "
                    "and mask IoU of matched detections against FP32.",
        epilog="SOURCE is any runtime source: a video, an image folder (with masks for mIoU vs labels), "
               "a labelled dataset (voc://ROOT, cityscapes://ROOT, ade20k://ROOT), "
               "a camera (0, v4l2:///dev/video0, csi://0, rtsp://...) or synthetic://?size=WxH&frames=N&seed=S.")
    p.add_argument("bundle", help="bundle directory (made by segrt export)")
    p.add_argument("--precision", required=True, metavar="{fp16,int8}", help="target precision")
    p.add_argument("--calib", metavar="SOURCE", default=None,
                   help="calibration frames (required for int8; never random data)")
    p.add_argument("--calib-frames", type=int, default=200, metavar="N",
                   help="frames sampled evenly across --calib (default 200; warns below 100)")
    p.add_argument("--method", default="minmax", metavar="{minmax,entropy,percentile}",
                   help="INT8 range calibration (default minmax)")
    p.add_argument("--eval", dest="eval_source", metavar="SOURCE", default=None,
                   help="held-out frames for the gate (default: a held-out part of --calib; for synthetic:// "
                        "another seed)")
    p.add_argument("--eval-frames", type=int, default=50, metavar="N", help="held-out frames (default 50)")
    p.add_argument("--gate", type=float, default=None, metavar="AGREEMENT",
                   help="minimum %% of pixels agreeing with FP32 (default 99.9 for fp16, 99.0 for int8)")
    p.add_argument("--gate-miou", type=float, default=None, metavar="POINTS",
                   help="maximum mIoU drop against the --eval labels, in points (e.g. 1.0); alone it replaces "
                        "the agreement gate")
    p.add_argument("--min-match-rate", type=float, default=None, metavar="FRACTION",
                   help="instance bundles: minimum share of detections matching FP32's (box IoU >= 0.5, same "
                        "label; default 0.95)")
    p.add_argument("--max-score-drift", type=float, default=None, metavar="SCORE",
                   help="instance bundles: largest score change of a matched detection (default 0.05)")
    p.add_argument("--min-mask-iou", type=float, default=None, metavar="FRACTION",
                   help="instance bundles: minimum mean mask IoU of matched detections (default 0.90)")
    p.add_argument("--no-gate", "--allow-fail", dest="enforce_gate", action="store_false",
                   help="register the result even below the gate (explicit override)")
    p.add_argument("--allow-small-eval", dest="allow_small_eval", action="store_true",
                   help="let the gate pass on fewer than 10 distinct held-out frames or fewer than 2 classes with "
                        ">= 1000 FP32 pixels (otherwise it refuses: too little evidence)")
    p.add_argument("--max-fallback", type=int, default=8, metavar="N",
                   help="at most N layers kept out of low precision by the sensitivity fallback (default 8; 0 = off)")
    p.add_argument("--target", default="both", choices=("cpu", "tensorrt", "both"),
                   help="int8 only: the Q/DQ graph for TensorRT (int8), the CPU graph for ONNX Runtime/OpenVINO "
                        "(int8-cpu: FP32 remainder, U8/S8 on x86, S8/S8 on ARM), or both from one calibration "
                        "(default; the CPU graph is kept when it passes its gate)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segrt.calibration.api import quantize_bundle
    from segrt.calibration.quantize_instances import detection_gate
    from segrt.errors import AccuracyGateError
    try:
        report = quantize_bundle(
            args.bundle, args.precision, calib=args.calib, calib_frames=args.calib_frames, method=args.method,
            eval_source=args.eval_source, eval_frames=args.eval_frames, gate=args.gate,
            enforce_gate=args.enforce_gate, max_fallback=args.max_fallback, progress=args.progress,
            threads=args.threads, allow_small_eval=args.allow_small_eval, gate_miou=args.gate_miou,
            target=args.target,
            detection_gate=detection_gate(args.min_match_rate, args.max_score_drift, args.min_mask_iou))
    except AccuracyGateError as err:
        rep = getattr(err, "report", None)
        if rep is not None:  # show the numbers behind the refusal; cli.py prints the error line
            print(rep.to_text())
        raise
    print(report.to_text())
    return 0
