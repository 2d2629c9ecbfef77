"""``segrt deploy triton``: a bundle -> a Triton model repository (config.pbtxt, version 1, segrt.json).

Layout (triton-inference-server/server ``docs/user_guide/model_repository.md``)::

    REPO/NAME/config.pbtxt
    REPO/NAME/segrt.json          classes, palette, preprocessing: what clients need
    REPO/NAME/1/model.onnx        --platform onnxruntime (and python, beside model.py)
    REPO/NAME/1/model.plan        --platform tensorrt: one engine, or one file per compute
                                  capability named in cc_model_filenames
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from segrt.deploy.triton_config import TensorConfig, TritonModelConfig, pbtxt_from_config
from segrt.errors import BundleError, ConfigError
from segrt.runtime.bundle import MANIFEST_NAME, Bundle


@dataclass(frozen=True)
class TritonDeployment:
    model_dir: Path
    config: TritonModelConfig
    files: tuple[str, ...]


def tensors_from_bundle(bundle: Bundle, *, batched: bool = True
                        ) -> tuple[tuple[TensorConfig, ...], tuple[TensorConfig, ...]]:
    """Triton I/O from the manifest: uint8 NHWC frame -> uint8 mask when fused. ``batched``: dims
    exclude the batch axis (max_batch_size > 0); else they are the graph's full static shape."""
    m = bundle.manifest
    inp, out = m.input, m.output
    if out.kind == "instances":
        raise ConfigError(f"{bundle.path}: instance-segmentation bundles are not deployable to Triton yet",
                          hint="deploy a semantic-segmentation bundle")
    if inp.dynamic is not None and inp.dynamic.min[1:] != inp.dynamic.max[1:]:
        raise ConfigError(f"{bundle.path}: the graph has a dynamic H/W; Triton gets a fixed size here",
                          hint="re-export with --size HxW --max-batch N")
    h, w = inp.height, inp.width
    n: tuple[int, ...] = () if batched else (1,)
    # An image format names 3 dims (Triton refuses it on 4): only when the batch axis is outside dims.
    if inp.fused:
        i = TensorConfig(inp.name, "uint8", (*n, h, w, 3), "FORMAT_NHWC" if batched else None)
        o = TensorConfig(out.names[0], "uint8", (*n, h, w))
    else:
        i = TensorConfig(inp.name, "float32", (*n, 3, h, w), "FORMAT_NCHW" if batched else None)
        o = TensorConfig(out.names[0], "float32", (*n, out.num_classes, h, w))
    return (i,), (o,)


def _engines(bundle: Bundle, precision: str) -> list[tuple[str, Path]]:
    """(compute capability "X.Y", engine path) for every engine of ``precision`` in the bundle."""
    found = []
    for rec in bundle.manifest.engines:
        if rec.precision == precision:
            found.append((f"{rec.compute_capability[0]}.{rec.compute_capability[1]}", bundle.path / rec.path))
    if not found:
        raise BundleError(f"bundle {bundle.path} has no {precision} TensorRT engine",
                          hint=f"build one on the target GPU: segrt build {bundle.path} --precision {precision}")
    return found


def deploy_triton(bundle_path: str | os.PathLike[str], repo: str | os.PathLike[str], *, name: str | None = None,
                  precision: str = "fp32", platform: str = "onnxruntime", max_batch: int | None = None,
                  instances: int = 1, kind: str = "cpu", queue_delay_us: int = 100, trt_fp16: bool = False,
                  threads: int = 1) -> TritonDeployment:
    """Write ``repo/name`` for ``bundle_path``'s ``precision`` model; replaces an earlier one of that name."""
    bundle = Bundle.open(bundle_path)
    name = name or bundle.manifest.name
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"bad Triton model name {name!r}", hint="pass --name with letters, digits, - or _")
    graph_batch = bundle.manifest.input.max_batch
    batch = graph_batch if max_batch is None else max_batch
    if batch > graph_batch or batch < 1:
        raise ConfigError(f"--max-batch {batch} is outside the bundle's batch axis (1..{graph_batch})",
                          hint=f"re-export with: segrt export MODEL --max-batch {batch}")
    if bundle.manifest.input.dynamic is None:
        # A static batch-1 graph: Triton's ONNX Runtime and TensorRT backends batch only a graph
        # whose first dimension is variable, so the config states the full shape, no batching.
        batch = 0
    inputs, outputs = tensors_from_bundle(bundle, batched=batch > 0)
    cc_files: tuple[tuple[str, str], ...] = ()
    files: dict[str, Path] = {}
    params: tuple[tuple[str, str], ...] = ()
    if platform == "tensorrt":
        engines = _engines(bundle, precision)
        if len(engines) == 1:
            files["model.plan"] = engines[0][1]
        else:
            cc_files = tuple((cc, f"model_sm{cc.replace('.', '')}.plan") for cc, _ in engines)
            files.update({fn: path for (_, fn), (_, path) in zip(cc_files, engines)})
    else:
        files["model.onnx"] = bundle.onnx_path(precision, verify=True)
        if platform == "python":
            files["model.py"] = Path(__file__).with_name("triton_python_model.py")
            params = (("segrt_onnx", "model.onnx"), ("segrt_threads", str(threads)))
    cfg = TritonModelConfig(name=name, platform=platform, max_batch_size=batch, inputs=inputs, outputs=outputs,
                            instances=instances, kind=kind, max_queue_delay_us=queue_delay_us,
                            trt_accelerator_fp16=trt_fp16, cc_model_filenames=cc_files, parameters=params)
    model_dir = Path(repo) / name
    tmp = Path(repo) / f".{name}.segrt-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "1").mkdir(parents=True)
    try:
        (tmp / "config.pbtxt").write_text(pbtxt_from_config(cfg))
        shutil.copyfile(bundle.path / MANIFEST_NAME, tmp / MANIFEST_NAME)
        for filename, src in files.items():
            shutil.copyfile(src, tmp / "1" / filename)
        shutil.rmtree(model_dir, ignore_errors=True)
        tmp.rename(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TritonDeployment(model_dir, cfg, ("config.pbtxt", MANIFEST_NAME, *(f"1/{f}" for f in files)))
