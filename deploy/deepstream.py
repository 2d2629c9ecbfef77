"""``segrt deploy deepstream``: a bundle -> an nvinfer config, labels and a deepstream-app config.

Written (DIR/):
  model.deepstream.onnx   the variant graph (export/deepstream_graph.py): nvinfer's input in, argmax out
  config_infer_segrt.txt  the nvinfer [property] group for semantic segmentation (network-type=2)
  labels.txt              one class name per line
  deepstream_app.txt      deepstream-app: N file sources -> nvstreammux (batch-size N) -> nvinfer ->
                          tiler -> file sink
  deepstream_check.json   the variant's masks vs the bundle's, on sample frames (ONNX Runtime, CPU)

Keys and value types follow NVIDIA's tables: Gst-nvinfer "Gst-nvinfer Property Group Supported
Keys" (https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html)
and deepstream-app's configuration groups
(https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_ref_app_deepstream.html).
Nothing here was run in DeepStream: no GPU on the machine that wrote it.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import ConfigError, VerificationError
from segrt.export.deepstream_graph import OUTPUT_NAME  # onnx only: deploy never imports torch
from segrt.runtime.bundle import Bundle

ONNX_NAME = "model.deepstream.onnx"
INFER_CONFIG = "config_infer_segrt.txt"
APP_CONFIG = "deepstream_app.txt"
LABELS = "labels.txt"
CHECK = "deepstream_check.json"
#: network-mode (nvinfer): 0 FP32, 1 INT8, 2 FP16
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}
SAMPLE_URI = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"


@dataclass(frozen=True)
class DeepStreamDeployment:
    folder: Path
    files: tuple[str, ...]
    check: dict[str, Any]


def engine_file_name(onnx_name: str, batch: int, gpu_id: int, precision: str) -> str:
    """The name nvinfer gives an engine it builds from ``onnx_name``: ``<onnx>_b<N>_gpu<id>_<mode>.engine``."""
    return f"{onnx_name}_b{batch}_gpu{gpu_id}_{precision}.engine"


def _ini(groups: list[tuple[str, list[tuple[str, Any]]]]) -> str:
    out = []
    for name, items in groups:
        out.append(f"[{name}]")
        out.extend(f"{k}={v}" for k, v in items)
        out.append("")
    return "\n".join(out)


def nvinfer_config_text(*, norm, onnx_name: str, precision: str, batch: int, gpu_id: int, height: int,
                        width: int, num_classes: int) -> str:
    offsets = ";".join(f"{v:.6g}" for v in norm.offsets)
    return _ini([("property", [
        ("gpu-id", gpu_id),
        ("net-scale-factor", f"{norm.net_scale_factor:.9g}"),
        ("offsets", offsets),
        ("model-color-format", norm.model_color_format),
        ("onnx-file", onnx_name),
        ("model-engine-file", engine_file_name(onnx_name, batch, gpu_id, precision)),
        ("labelfile-path", LABELS),
        ("batch-size", batch),
        ("network-mode", NETWORK_MODES[precision]),  # INT8 is a Q/DQ graph: no int8-calib-file
        ("network-type", 2),
        ("process-mode", 1),
        ("gie-unique-id", 1),
        ("interval", 0),
        ("infer-dims", f"3;{height};{width}"),
        ("output-blob-names", OUTPUT_NAME),
        ("num-detected-classes", num_classes),
        ("segmentation-threshold", 0.0),
        ("segmentation-output-order", 1),
        ("output-tensor-meta", 0),
    ])])


def app_config_text(*, sources: int, gpu_id: int, height: int, width: int, uri: str) -> str:
    rows = int(np.ceil(np.sqrt(sources)))
    cols = int(np.ceil(sources / rows))
    groups: list[tuple[str, list[tuple[str, Any]]]] = [
        ("application", [("enable-perf-measurement", 1), ("perf-measurement-interval-sec", 5)]),
        ("tiled-display", [("enable", 1), ("rows", rows), ("columns", cols), ("width", 1280), ("height", 720),
                           ("gpu-id", gpu_id)]),
    ]
    for k in range(sources):
        groups.append((f"source{k}", [("enable", 1), ("type", 3), ("uri", uri), ("num-sources", 1),
                                      ("gpu-id", gpu_id)]))
    groups += [
        ("streammux", [("gpu-id", gpu_id), ("batch-size", sources), ("batched-push-timeout", 40000),
                       ("width", width), ("height", height), ("live-source", 0)]),
        ("primary-gie", [("enable", 1), ("gpu-id", gpu_id), ("batch-size", sources), ("gie-unique-id", 1),
                         ("config-file", INFER_CONFIG)]),
        ("segvisual", [("enable", 1), ("gpu-id", gpu_id), ("batch-size", sources), ("width", width),
                       ("height", height)]),
        ("sink0", [("enable", 1), ("type", 3), ("container", 1), ("codec", 1), ("sync", 0),
                   ("output-file", "segrt_deepstream_out.mp4"), ("gpu-id", gpu_id)]),
    ]
    return _ini(groups)


def check_variant(variant, fused_path: Path, norm, height: int, width: int, batch: int) -> dict[str, Any]:
    """The variant on nvinfer's input vs the bundle's fused graph on the frames: masks must be identical."""
    import onnxruntime as ort

    from segrt.export.deepstream_graph import INPUT_NAME, nvinfer_input_from_frames
    from segrt.export.verify import sample_frames

    opts = ["CPUExecutionProvider"]
    ds = ort.InferenceSession(variant.SerializeToString(), providers=opts)
    ref = ort.InferenceSession(str(fused_path), providers=opts)
    ref_in = ref.get_inputs()[0].name
    compared = differing = 0
    for name, frames in sample_frames(height, width, batch=1):
        frames = np.repeat(frames, batch, axis=0) if batch > 1 else frames
        got = ds.run(None, {INPUT_NAME: nvinfer_input_from_frames(frames, norm)})[0][..., 0]
        want = np.concatenate([ref.run(None, {ref_in: frames[i:i + 1]})[0] for i in range(frames.shape[0])])
        compared += want.size
        differing += int(np.count_nonzero(got != want.astype(np.int32)))
    report = {"pixels_compared": compared, "pixels_differing": differing,
              "method": "variant fed nvinfer's y = s*(x - offsets) vs the bundle's fused graph fed x; "
                        "ONNX Runtime CPU"}
    if differing:
        raise VerificationError(f"the DeepStream graph differs from the bundle's on {differing} of {compared} pixels",
                                hint="report it: the pixel reconstruction should be exact")
    return report


def deploy_deepstream(bundle_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                      precision: str = "fp32", sources: int = 1, gpu_id: int = 0,
                      uri: str = SAMPLE_URI) -> DeepStreamDeployment:
    """Write DeepStream configs and the variant graph for ``bundle_path``'s ``precision`` model."""
    import onnx

    from segrt.export.deepstream_graph import deepstream_onnx_from_fused, nvinfer_normalisation

    bundle = Bundle.open(bundle_path)
    m = bundle.manifest
    if precision not in NETWORK_MODES:
        raise ConfigError(f"unknown precision {precision!r}", hint="fp32, fp16 or int8")
    if sources < 1 or gpu_id < 0:
        raise ConfigError("--sources must be >= 1 and --gpu-id >= 0")
    if m.output.kind != "mask" or not m.input.fused:
        raise ConfigError(f"{bundle.path}: DeepStream's semantic segmentation needs a fused mask bundle",
                          hint="export it without --no-fuse (Mask R-CNN is not supported here)")
    dyn = m.input.dynamic
    max_batch = dyn.max[0] if dyn is not None else 1
    if sources > max_batch:
        raise ConfigError(f"{sources} sources need a batch of {sources}; the bundle's graph takes 1..{max_batch}",
                          hint=f"re-export with: segrt export MODEL --max-batch {sources}")
    fused_path = bundle.onnx_path(precision, verify=True)
    norm = nvinfer_normalisation(m.preprocess.mean, m.preprocess.std, m.preprocess.color_order)
    variant = deepstream_onnx_from_fused(onnx.load(str(fused_path)), norm, batch=None if dyn else 1)
    check = check_variant(variant, fused_path, norm, m.input.height, m.input.width, max(1, min(sources, 2)))
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.segrt-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        onnx.save(variant, str(tmp / ONNX_NAME))
        (tmp / LABELS).write_text("\n".join(m.classes) + "\n")
        (tmp / INFER_CONFIG).write_text(nvinfer_config_text(
            norm=norm, onnx_name=ONNX_NAME, precision=precision, batch=sources, gpu_id=gpu_id,
            height=m.input.height, width=m.input.width, num_classes=len(m.classes)))
        (tmp / APP_CONFIG).write_text(app_config_text(sources=sources, gpu_id=gpu_id, height=m.input.height,
                                                      width=m.input.width, uri=uri))
        (tmp / CHECK).write_text(json.dumps({"precision": precision, **check}, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DeepStreamDeployment(out, (ONNX_NAME, INFER_CONFIG, LABELS, APP_CONFIG, CHECK), check)
