"""Fixed inputs and per-bundle settings: the synthetic camera frames, the replay source,
``--size`` parsing, the manifest at a size, and the accuracy a manifest reports."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

import numpy as np

from segrt.errors import ConfigError, SegrtError
from segrt.runtime.manifest import PRECISIONS, Manifest
from segrt.tools.bench.results import FRAME_SIZE

SCENE_FRAMES = 8  # distinct pre-rendered frames the end-to-end run cycles through
SCENE_URI = "synthetic://?size={w}x{h}&frames={n}&seed={seed}"


def synthetic_frames(count: int, height: int = FRAME_SIZE[0], width: int = FRAME_SIZE[1],
                     seed: int = 7) -> list[np.ndarray]:
    """The first ``count`` frames of the project's ``synthetic://`` scene (deterministic BGR images)."""
    from segrt.runtime.sources import open_source

    uri = SCENE_URI.format(w=width, h=height, n=count, seed=seed)
    with open_source(uri) as src:
        frames = [np.ascontiguousarray(f.image) for f in src]
    if len(frames) != count:
        raise SegrtError(f"synthetic source {uri} gave {len(frames)} of {count} frames")
    return frames


def replay_source(frames: Sequence[np.ndarray], count: int, uri: str):
    """A file-like :class:`~segrt.runtime.sources.Source` playing ``count`` frames cycled from ``frames``.

    Rendering the synthetic scene costs ~20-35 ms per 1080p frame on a 2-core CPU: run
    live, the generator, not the app, would set the end-to-end FPS, and it would steal a
    core from the pipeline. A camera delivers a finished buffer; so does this source:
    each read copies a pre-rendered frame into a fresh array (sources never recycle a
    frame buffer), costing what a capture hand-off costs.
    """
    from segrt.runtime.sources import Frame, Source

    class ReplaySource(Source):
        def _open(self) -> None:
            h, w = frames[0].shape[:2]
            self._size, self._fps, self._frame_count, self._pos = (w, h), 30.0, count, 0

        def _close(self) -> None:
            pass

        def _read(self):
            if self._pos >= count:
                return None
            image = frames[self._pos % len(frames)].copy()
            frame = Frame(image, self._pos, time.perf_counter())
            self._pos += 1
            return frame

        def describe(self) -> str:
            w, h = self._size
            return f"{self.uri} (replayed, {w}x{h}, {count} frames)"

    return ReplaySource(uri)


def parse_size(text: str) -> tuple[int, int]:
    """``"256x512"`` -> ``(256, 512)`` (height × width, like ``segrt export --size``)."""
    h, sep, w = text.lower().partition("x")
    try:
        size = (int(h), int(w))
    except ValueError:
        size = (0, 0)
    if not sep or size[0] <= 0 or size[1] <= 0:
        raise ConfigError(f"--size {text!r} is not HxW", hint="e.g. --size 256x512 (height x width)")
    return size


def manifest_at_size(manifest: Manifest, size: tuple[int, int] | None) -> tuple[Manifest, str]:
    """The manifest to benchmark at ``size``, and a note for the table.

    A static export keeps its size (the note says so); a dynamic one must contain
    ``size`` in its exported range, else :class:`ConfigError` (the row is skipped).
    """
    spec = manifest.input
    if size is None or size == (spec.height, spec.width):
        return manifest, ""
    if spec.dynamic is None:
        return manifest, (f"static export: fixed at {spec.height}x{spec.width} "
                          f"(--size {size[0]}x{size[1]} needs a dynamic export)")
    lo, hi = spec.dynamic.min, spec.dynamic.max
    if not (lo[1] <= size[0] <= hi[1] and lo[2] <= size[1] <= hi[2]):
        raise ConfigError(f"--size {size[0]}x{size[1]} is outside the exported range "
                          f"{lo[1]}x{lo[2]}..{hi[1]}x{hi[2]}")
    return manifest.replace(input=dataclasses.replace(spec, height=size[0], width=size[1])), \
        f"dynamic export run at {size[0]}x{size[1]}"


def accuracy_of(manifest: Manifest, precision: str) -> Mapping[str, Any] | None:
    """The accuracy report the manifest holds for ``precision`` (written by ``segrt quantize``).

    FP32 is the reference, so it has no report of its own; its mIoU against labels is
    taken from the first lower-precision report that measured it on its evaluation set.
    """
    art = manifest.artifacts.get(precision)
    if art is not None and art.accuracy is not None:
        return dict(art.accuracy)
    if precision != "fp32":
        return None
    reports = [(other, manifest.artifacts[other].accuracy) for other in PRECISIONS[1:]
               if other in manifest.artifacts and manifest.artifacts[other].accuracy]
    if not reports:
        return None
    # Prefer a report whose evaluation had labels the model's classes can be scored against.
    other, rep = next(((o, r) for o, r in reports if r.get("fp32_miou_vs_labels") is not None), reports[0])
    return {"agreement": 1.0, "miou_vs_fp32": 1.0, "miou_vs_labels": rep.get("fp32_miou_vs_labels"),
            "reference": True, "from_report": other}
