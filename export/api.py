"""``export_bundle``: a model (zoo name, ``package.module:factory`` or ``.onnx``) -> a verified bundle.

The model is resolved (:mod:`segrt.export.resolve`), planned (:mod:`segrt.export.plan`: classes,
size, preprocessing), exported and verified by its path (:mod:`segrt.export.api_torch` or
:mod:`segrt.export.api_onnx`), and installed (:mod:`segrt.export.bundle_dir`).

Every step happens in a temporary folder inside the output folder: export, graph passes,
verification. Only when all of them succeeded is ``model.onnx`` moved into place and the
manifest written, last. A failure leaves the output folder as it was (a previous bundle there
stays valid), so nothing half-made is ever trusted by ``Bundle.open``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from segrt.errors import ConfigError
from segrt.export.api_torch import RANDOM_INIT_WARNING, SEED  # noqa: F401 - part of this module's API
from segrt.export.bundle_dir import install_bundle, prepare_out_dir
from segrt.export.plan import default_shape_range, manifest_from_plan  # noqa: F401 - part of the API
from segrt.export.resolve import resolve_model
from segrt.export.spec import (  # noqa: F401 - parse_triplet is part of this module's API
    ModelSpec,
    class_preset_named,
    parse_size,
    parse_triplet,
    read_classes,
)
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import ShapeRange


def export_bundle(model: str, out_dir: str | os.PathLike[str], *, weights: str | os.PathLike[str] | None = None,
                  num_classes: int | None = None, classes: str | os.PathLike[str] | Sequence[str] | None = None,
                  size: str | Sequence[int] | None = None, fuse: bool = True,
                  dynamic: bool | ShapeRange = False, opset: int = 17, exporter: str = "auto",
                  verify: bool = True, name: str | None = None,
                  spec: ModelSpec | Mapping[str, Any] | None = None, max_batch: int | None = None) -> Bundle:
    """Export ``model`` into a verified bundle at ``out_dir`` and return it.

    ``model`` is a zoo name (``segrt models``), ``package.module:factory`` (or ``file.py:factory``)
    returning an ``nn.Module``, or an ``.onnx`` file described by ``spec``/``classes``/``size``.
    ``classes`` may name a dataset preset (``voc``, ``cityscapes``, ``ade20k``): its names and palette.
    ``dynamic=True`` exports symbolic N/H/W with a default profile; pass a
    :class:`ShapeRange` to choose it. ``max_batch=N`` exports a batch axis 1..N at the fixed size
    (verified item by item against batch 1; recorded as the manifest's profile). Raises a :class:`~segrt.errors.SegrtError` subclass on
    any user error, leaving ``out_dir`` untouched.
    """
    t_start = time.perf_counter()
    spec = ModelSpec.coerce(spec)
    out_dir = Path(out_dir)
    if max_batch is not None and max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, got {max_batch}", hint="pass --max-batch 8, say")
    target = resolve_model(model)
    if max_batch and target.kind == "onnx":
        raise ConfigError("--max-batch applies to PyTorch models; an imported .onnx keeps its own axes",
                          hint="export the .onnx with a symbolic batch axis and use --dynamic")
    user_classes = read_classes(classes) if classes is not None else spec.classes
    preset = class_preset_named(classes)
    if preset is not None and spec.palette is None:
        spec = dataclasses.replace(spec, palette=preset.palette_bgr())
    user_size = parse_size(size) or spec.input_size
    created = prepare_out_dir(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".segrt-export-", dir=out_dir))
    try:
        if target.kind == "onnx":
            from segrt.export.api_onnx import export_onnx_file

            plan, tmp_onnx, source, export = export_onnx_file(
                target, tmp, name=name, classes=user_classes, num_classes=num_classes, size=user_size,
                spec=spec, fuse=fuse, dynamic=dynamic, verify=verify, opset=opset)
        else:
            from segrt.export.api_torch import export_torch

            plan, tmp_onnx, source, export = export_torch(
                target, tmp, name=name, weights=weights, classes=user_classes, num_classes=num_classes,
                size=user_size, spec=spec, fuse=fuse, dynamic=dynamic, opset=opset, exporter=exporter,
                verify=verify, max_batch=max_batch)
        export = {**export, "seconds_total": round(time.perf_counter() - t_start, 2)}
        bundle = install_bundle(out_dir, tmp_onnx, manifest_from_plan(plan, source, export))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only if still empty
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return bundle
