"""``segrt eval BUNDLE --data URI``: aAcc/mIoU/mAcc on a labelled dataset, or COCO box/mask AP of an instance bundle."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="score a bundle on a labelled dataset (mmsegmentation's IoU conventions)",
        description="Runs every frame of a labelled source through the bundle at each precision and accumulates "
                    "one confusion matrix over the dataset (ignore_index 255; classes absent from labels and "
                    "predictions are left out of the means). Predictions are compared at the label's resolution. "
                    "An instance bundle (Mask R-CNN) is scored on a coco:// set with pycocotools: box and mask AP, "
                    "AP50, AP75 and AP small/medium/large. "
                    "The result is stored in the bundle's manifest per precision and backend.",
        epilog="DATA: voc://ROOT?split=val, cityscapes://ROOT?split=val, ade20k://ROOT?split=validation, or a "
               "folder with images/ and masks/ (class-id PNGs); "
               "for an instance bundle coco://IMAGES?ann=instances.json (file_name relative to IMAGES).")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--data", required=True, metavar="URI", help="labelled dataset or image+mask folder")
    p.add_argument("--precision", default="fp32", metavar="LIST", help="comma-separated, e.g. fp32,fp16,int8")
    p.add_argument("--backend", default="auto", metavar="{auto,onnxruntime,tensorrt,triton://HOST:PORT/MODEL}",
                   help="default auto")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N frames")
    p.add_argument("--out", default=None, metavar="DIR", help="write eval.json, eval.csv and PNG charts here")
    p.add_argument("--write-predictions", metavar="DIR", default=None,
                   help="also write every prediction as DIR/<precision>/<image>.png in the dataset's stored ids "
                        "(Cityscapes labelIds, ADE20K 1..150, VOC palette PNGs)")
    p.add_argument("--no-store", dest="store", action="store_false", help="do not record the result in the manifest")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segrt.calibration.instance_eval import InstanceEvalReport
    from segrt.tools.eval_report import format_table
    from segrt.tools.eval_report_instances import format_instance_table
    from segrt.tools.eval_run import evaluate_and_write

    report, written, skipped = evaluate_and_write(
        args.bundle, args.data, precisions=args.precision, backend=args.backend, threads=args.threads,
        limit=args.limit, out_dir=args.out, store=args.store, progress=args.progress,
        predictions_dir=args.write_predictions)
    print(format_instance_table(report) if isinstance(report, InstanceEvalReport) else format_table(report))
    for path in written:
        print(f"wrote {path}")
    if skipped:
        print(skipped)
    return 0
