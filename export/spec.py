"""What the user says about a model: :class:`ModelSpec` and the parsers of size, class and triplet flags.

Shared by :func:`segrt.export.api.export_bundle` and the CLI; nothing here touches a model.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from segrt.errors import ConfigError
from segrt.runtime.class_presets import PRESETS, ClassPreset


@dataclass(frozen=True)
class ModelSpec:
    """User-given config that overrides a model's defaults (and describes an imported ``.onnx``).

    ``onnx_fused``: for ``.onnx`` import, whether the file already follows the fused I/O
    contract (uint8 frame in, mask out); ``None`` detects it from the input dtype.
    """

    classes: tuple[str, ...] | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    color_order: str | None = None
    onnx_fused: bool | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    max_detections: int | None = None  # Mask R-CNN: rows of its static outputs (default box_detections_per_img)

    @classmethod
    def coerce(cls, spec: "ModelSpec | Mapping[str, Any] | None") -> "ModelSpec":
        if spec is None:
            return cls()
        if isinstance(spec, ModelSpec):
            return spec
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown spec keys: {', '.join(sorted(unknown))}",
                              hint=f"use {', '.join(cls.__dataclass_fields__)}")
        kw = dict(spec)
        for k in ("classes", "input_size", "mean", "std"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def parse_size(size: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"256x512"`` or ``(256, 512)`` -> (H, W)."""
    if size is None:
        return None
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", size)
        if not m:
            raise ConfigError(f"--size {size!r} is not HxW", hint="write it like 256x512 (height x width)")
        size = (int(m.group(1)), int(m.group(2)))
    if len(size) != 2 or any(int(v) <= 0 for v in size):
        raise ConfigError(f"size {size!r} is not two positive integers (H, W)", hint="e.g. --size 256x512")
    return int(size[0]), int(size[1])


def class_preset_named(classes: object) -> ClassPreset | None:
    """The dataset preset ``classes`` names (``voc``, ``cityscapes``, ``ade20k``), unless a file has that name."""
    if isinstance(classes, str) and classes.lower() in PRESETS and not Path(classes).is_file():
        return PRESETS[classes.lower()]
    return None


def read_classes(classes: str | os.PathLike[str] | Sequence[str] | None) -> tuple[str, ...] | None:
    """Class names from a preset name, a sequence, a names.txt file (one per line) or a comma-separated string."""
    if classes is None:
        return None
    preset = class_preset_named(classes)
    if preset is not None:
        return preset.classes
    if isinstance(classes, (str, os.PathLike)):
        p = Path(classes)
        if p.is_file():
            try:
                names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read class names from {p}: {exc}",
                                  hint="pass a UTF-8 text file with one class name per line") from exc
            names = [n for n in names if n and not n.startswith("#")]
            if not names:
                raise ConfigError(f"{p} lists no class names", hint="write one class name per line")
            return tuple(names)
        if "," in str(classes):
            return tuple(n.strip() for n in str(classes).split(",") if n.strip())
        raise ConfigError(f"class names file {p} does not exist",
                          hint="pass a names.txt with one class per line, a comma-separated list, or a preset: "
                               + ", ".join(PRESETS))
    names = tuple(str(c) for c in classes)
    if not names:
        raise ConfigError("the class list is empty", hint="give at least one class name")
    return names


def parse_triplet(text: str | Sequence[float] | None, flag: str) -> tuple[float, float, float] | None:
    """``"123.7,116.3,103.5"`` -> three floats (``None`` passes through)."""
    if text is None:
        return None
    parts = re.split(r"[,\s]+", text.strip()) if isinstance(text, str) else list(text)
    try:
        vals = tuple(float(v) for v in parts if v != "")
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise ConfigError(f"{flag} {text!r} is not three numbers", hint=f"write it like {flag} 123.675,116.28,103.53")
    return vals  # type: ignore[return-value]
