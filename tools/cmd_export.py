"""``segrt export MODEL -o DIR``: a zoo model, package.module:factory or .onnx -> a verified bundle."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a model to a verified ONNX bundle",
        description="Export MODEL (a name from `segrt models`, package.module:factory or file.py:factory "
                    "returning an nn.Module, or an existing .onnx file) to a bundle folder: model.onnx + "
                    "segrt.json. By default the graph is fused: uint8 BGR NHWC frame in, uint8 class mask out. "
                    "The ONNX is checked against PyTorch with ONNX Runtime; on a mismatch nothing is written.")
    p.add_argument("model", metavar="MODEL", help="zoo name, package.module:factory, file.py:factory, or model.onnx")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder to create (or replace)")
    p.add_argument("--weights", metavar="CKPT", help="state_dict or checkpoint (.pth); 'torchvision' for the zoo "
                   "model's default torchvision weights, or a weights enum value (e.g. COCO_WITH_VOC_LABELS_V1); "
                   "default: random init")
    p.add_argument("--num-classes", type=int, metavar="N", help="number of classes (output channels)")
    p.add_argument("--classes", metavar="NAMES", help="class names: voc, cityscapes or ade20k (names and official palette), names.txt (one per line) or a,b,c")
    p.add_argument("--classes-file", metavar="FILE", help="class names file (same as --classes FILE)")
    p.add_argument("--size", metavar="HxW", help="input size, e.g. 256x512 (default: the model's)")
    p.add_argument("--no-fuse", action="store_true",
                   help="float NCHW input and logits output (the runtime normalises and argmaxes on the CPU)")
    p.add_argument("--dynamic", action="store_true",
                   help="symbolic N/H/W; the profile min/opt/max goes in the manifest")
    p.add_argument("--max-batch", type=int, metavar="N",
                   help="a batch axis 1..N at the fixed size (for Triton/DeepStream batching); each item is "
                        "verified against its batch-1 result")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="torch.onnx exporter; auto uses the model's preferred one and falls back to the other")
    p.add_argument("--mean", metavar="R,G,B", help="normalisation mean on the 0..255 scale, in --color-order")
    p.add_argument("--std", metavar="R,G,B", help="normalisation std on the 0..255 scale, in --color-order")
    p.add_argument("--color-order", choices=("RGB", "BGR"), help="channel order the model expects (default RGB)")
    io = p.add_mutually_exclusive_group()
    io.add_argument("--onnx-fused", dest="onnx_fused", action="store_const", const=True, default=None,
                    help=".onnx import: the file already takes a uint8 frame and returns a mask")
    io.add_argument("--onnx-unfused", dest="onnx_fused", action="store_const", const=False,
                    help=".onnx import: the file takes float NCHW and returns logits (segrt fuses it)")
    p.add_argument("--max-detections", type=int, metavar="N",
                   help="Mask R-CNN: pad its outputs to N detections, plus num_detections (default: the "
                        "model's box_detections_per_img, 100); static shapes for TensorRT")
    p.add_argument("--name", help="bundle name in the manifest (default: the model's)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segrt.errors import ConfigError
    from segrt.export.api import export_bundle
    from segrt.export.spec import ModelSpec, parse_triplet

    if args.classes and args.classes_file:
        raise ConfigError("--classes and --classes-file both given", hint="pass only one of them")
    spec = ModelSpec(mean=parse_triplet(args.mean, "--mean"), std=parse_triplet(args.std, "--std"),
                     color_order=args.color_order, onnx_fused=args.onnx_fused, max_detections=args.max_detections)
    bundle = export_bundle(
        args.model, args.output, weights=args.weights, num_classes=args.num_classes,
        classes=args.classes_file or args.classes, size=args.size, fuse=not args.no_fuse,
        dynamic=args.dynamic, opset=args.opset, exporter=args.exporter, verify=not args.no_verify,
        name=args.name, spec=spec, max_batch=args.max_batch)
    print(format_summary(bundle))
    return 0


def format_summary(bundle) -> str:
    m = bundle.manifest
    ex = m.export
    inp = m.input
    src = m.source
    if src.get("kind") == "onnx":
        origin = f"imported {src.get('path')}"
    elif src.get("random_init"):
        origin = "random init (no --weights)"
    else:
        w = src.get("weights") or {}
        origin = f"weights {w.get('torchvision_weights') or w.get('path')}"
    lines = [f"model      {m.name} ({src.get('kind')}), {len(m.classes)} classes, {origin}",
             f"graph      {inp.name} {inp.dtype} {inp.layout} {inp.height}x{inp.width} -> {m.output.kind} "
             f"{'/'.join(m.output.names)}{' (dynamic ' + str(list(inp.dynamic.min)) + '..' + str(list(inp.dynamic.max)) + ')' if inp.dynamic else ''}",
             f"exporter   {ex.get('exporter')} (opset {ex.get('opset')})"
             + (f", fell back: {ex['fallback_reason']}" if ex.get("fallback_reason") else "")
             + f", {ex.get('seconds_total', ex.get('seconds'))} s"]
    v = ex.get("verification")
    if v is None:
        lines.append("verified   NO (--no-verify)")
    elif m.output.kind == "instances":
        lines.append(f"verified   {v['detections_compared']} detections, {v['matched_pct']:.1f}% matched, "
                     f"box diff {v['box_max_abs_diff_px']:.2g} px, score diff {v['score_max_abs_diff']:.2g}, "
                     f"mask prob diff {v['mask_prob_max_abs_diff']:.2g}")
    else:
        lines.append(f"verified   max abs logits diff {v['max_abs_diff']:.3g}, mask agreement "
                     f"{v['mask_agreement_pct']:.3f}% on {len(v['inputs'])} inputs ({', '.join(v['inputs'])})")
    ref = ex.get("tflite_reference")
    if ref and "skipped" not in ref:
        lines.append(f"vs TFLite  max abs prob diff {ref['max_abs_prob_diff']:.2e}, mask agreement "
                     f"{100 * ref['mask_agreement']:.3f}% on {', '.join(r['image'] for r in ref['images'])} "
                     f"({ref['reference']})")
    elif ref:
        lines.append(f"vs TFLite  not checked: {ref['skipped']}")
    lines.append(f"bundle     {bundle.path}")
    return "\n".join(lines)
