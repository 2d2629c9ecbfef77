"""Bundles for the benchmark tests: the project's tiny reference model, static and dynamic.

The tiny model (``segrt.tools.tiny_model``) is a real ONNX graph in the fused I/O
contract (uint8 NHWC ``frame`` -> uint8 ``mask``) with a numpy reference, so a bench
run over it exercises the real backend, preprocessing, postprocessing and pipeline
in well under a second per loop.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx

from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import ShapeRange
from segrt.tools.tiny_model import tiny_bundle, tiny_manifest, tiny_segmentation_onnx

# settings that keep every loop short on a shared 2-core machine
QUICK = dict(iters=8, warmup=2, max_time_s=0.5, e2e_frames=6, progress=False)


def static_bundle(path: Path, height: int = 32, width: int = 48) -> Bundle:
    return tiny_bundle(path, height, width)


def dynamic_bundle(path: Path, opt: tuple[int, int] = (32, 48), lo: tuple[int, int] = (16, 16),
                   hi: tuple[int, int] = (64, 96)) -> Bundle:
    """The tiny model exported with symbolic H and W, and the (N,H,W) range in its manifest."""
    model = tiny_segmentation_onnx(*opt)
    for value_info in (model.graph.input[0], model.graph.output[0]):
        dims = value_info.type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "height", "width"  # oneof: replaces dim_value
    onnx.checker.check_model(model)
    manifest = tiny_manifest(*opt, name="tiny_dynamic")
    manifest = manifest.replace(input=dataclasses.replace(
        manifest.input, dynamic=ShapeRange((1, *lo), (1, *opt), (1, *hi))))
    bundle = Bundle.create(path, manifest)
    bundle.save_onnx("fp32", model)
    return bundle


def batched_bundle(path: Path, batch: int = 2, height: int = 32, width: int = 48) -> Bundle:
    """The tiny model with a static batch of ``batch`` images."""
    model = tiny_segmentation_onnx(height, width)
    for value_info in (model.graph.input[0], model.graph.output[0]):
        value_info.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.checker.check_model(model)
    manifest = tiny_manifest(height, width, name=f"tiny_b{batch}")
    manifest = manifest.replace(input=dataclasses.replace(manifest.input, batch=batch))
    bundle = Bundle.create(path, manifest)
    bundle.save_onnx("fp32", model)
    return bundle
