"""``segrt deploy triton|deepstream BUNDLE -o DIR``: hand a bundle to NVIDIA's serving engines."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("deploy", help="write a Triton model repository or DeepStream configs for a bundle",
                              description="Hand a verified bundle to Triton Inference Server or DeepStream.")
    sub = p.add_subparsers(dest="target", metavar="TARGET")
    sub.required = True
    t = sub.add_parser("triton", help="a Triton model repository (config.pbtxt, 1/model.*, segrt.json)")
    t.add_argument("bundle", metavar="BUNDLE")
    t.add_argument("-o", "--output", required=True, metavar="REPO", help="model repository folder")
    t.add_argument("--name", help="model name in the repository (default: the bundle's)")
    t.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    t.add_argument("--platform", default="onnxruntime", choices=("onnxruntime", "tensorrt", "python"),
                   help="python: a Python-backend model running the ONNX with ONNX Runtime")
    t.add_argument("--max-batch", type=int, metavar="N", help="max_batch_size (default: the bundle's batch axis)")
    t.add_argument("--instances", type=int, default=1, metavar="N", help="model instances (instance_group count)")
    t.add_argument("--kind", default="cpu", choices=("cpu", "gpu"), help="instance kind")
    t.add_argument("--queue-delay-us", type=int, default=100, help="dynamic batching max_queue_delay_microseconds")
    t.add_argument("--trt-fp16", action="store_true",
                   help="ONNX on a GPU: ONNX Runtime's TensorRT execution accelerator in FP16")
    t.set_defaults(func=run_triton)
    d = sub.add_parser("deepstream", help="nvinfer + deepstream-app configs for semantic segmentation")
    d.add_argument("bundle", metavar="BUNDLE")
    d.add_argument("-o", "--output", required=True, metavar="DIR")
    d.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    d.add_argument("--sources", type=int, default=1, metavar="N", help="number of camera/file sources (batch size)")
    d.add_argument("--gpu-id", type=int, default=0)
    d.set_defaults(func=run_deepstream)


def run_triton(args: argparse.Namespace) -> int:
    from segrt.deploy.triton_repo import deploy_triton

    dep = deploy_triton(args.bundle, args.output, name=args.name, precision=args.precision, platform=args.platform,
                        max_batch=args.max_batch, instances=args.instances, kind=args.kind,
                        queue_delay_us=args.queue_delay_us, trt_fp16=args.trt_fp16)
    print(f"triton model {dep.config.name} ({args.platform}, max_batch_size {dep.config.max_batch_size}, "
          f"{dep.config.instances}x {args.kind}) -> {dep.model_dir}: {', '.join(dep.files)}")
    return 0


def run_deepstream(args: argparse.Namespace) -> int:
    from segrt.deploy.deepstream import deploy_deepstream

    dep = deploy_deepstream(args.bundle, args.output, precision=args.precision, sources=args.sources,
                            gpu_id=args.gpu_id)
    print(f"deepstream configs -> {dep.folder}: {', '.join(dep.files)}")
    return 0
