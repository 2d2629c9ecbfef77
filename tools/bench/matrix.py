"""The benchmark matrix: every bundle × precision × backend, opened up front, one cell at a time."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

from segrt.errors import ConfigError, SegrtError
from segrt.runtime.bundle import Bundle
from segrt.runtime.manifest import PRECISIONS
from segrt.tools.bench.cell import bench_cell
from segrt.tools.bench.inputs import SCENE_FRAMES, synthetic_frames
from segrt.tools.bench.results import BenchResult, BenchSettings
from segrt.tools.bench.timing import Progress

BENCH_BACKENDS = ("onnxruntime", "tensorrt", "openvino")
AUTO = "auto"  # the precision --precision auto picks for this machine and backend


def _csv_list(values: Iterable[str] | str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = [v.strip() for v in (values.split(",") if isinstance(values, str) else values) if v.strip()]
    bad = [v for v in items if v not in allowed and not (what == "backend" and v.startswith("triton://"))]
    if bad or not items:
        raise ConfigError(f"unknown {what}: {', '.join(bad) or '(none given)'}",
                          hint=f"choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


def bundle_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """A unique label per bundle from its path: the folder name, with as many parent folders as
    it takes to tell bundles apart (``a/demo``, ``b/demo``); the same path twice gets ``#2``."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
        # a label shared by two different paths needs more of the path (the same path twice does not)
        clashes = {lab for lab in labels if len({pp for pp, other in zip(parts, labels) if other == lab}) > 1}
        grow = [i for i, lab in enumerate(labels) if lab in clashes and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} #{seen[lab]}")
    return out


def bench_bundles(paths: Sequence[str | os.PathLike[str]], *, precisions: Iterable[str] | str = ("fp32",),
                  backends: Iterable[str] | str = ("onnxruntime",), iters: int = 50, warmup: int = 5,
                  threads: int | None = None, size: tuple[int, int] | None = None, e2e: bool = True,
                  e2e_frames: int = 60, max_time_s: float = 10.0, cv_target: float = 0.05,
                  progress: bool = True) -> BenchResult:
    """Benchmark every bundle × precision × backend; unrunnable cells become skipped rows.

    Rows are keyed by bundle (:func:`bundle_labels`), so two bundles of one model are two rows.

    Bundles are opened (and validated) before anything is timed, so a typo fails
    in a second, not after minutes of measuring the other models.
    """
    from segrt.tools.envinfo import environment

    t_start = time.perf_counter()
    precisions = _csv_list(precisions, PRECISIONS + (AUTO,), "precision")
    backends = _csv_list(backends, BENCH_BACKENDS, "backend")
    settings = BenchSettings(iters=iters, warmup=warmup, max_time_s=max_time_s, cv_target=cv_target,
                             threads=threads, size=size, e2e=e2e, e2e_frames=e2e_frames)
    if not paths:
        raise ConfigError("no bundle given", hint="segrt bench BUNDLE [BUNDLE...]")
    bundles = [Bundle.open(p) for p in paths]
    env = environment(threads)
    bar = Progress(progress)
    scene = synthetic_frames(SCENE_FRAMES if e2e else 1, *settings.frame_size)
    rows = []
    for bundle, label in zip(bundles, bundle_labels([b.path for b in bundles])):
        for precision in precisions:
            for backend in backends:
                bar.message(f"segrt bench: {label} ({bundle.manifest.name}) {precision} {backend}")
                cell = _auto_cell(bundle, backend, settings, scene, bar) if precision == AUTO else \
                    bench_cell(bundle, precision, backend, settings, scene=scene, progress=bar)
                row = dataclasses.replace(cell, label=label)
                if not row.ok:
                    bar.message(f"  {row.status}: {row.reason}")
                rows.append(row)
    try:  # the load at the end too: a busy machine explains a wide spread
        env["cpu"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, KeyError, TypeError):
        pass
    return BenchResult(rows=tuple(rows), environment=env, settings=settings.to_dict(),
                       wall_s=time.perf_counter() - t_start)


def _auto_cell(bundle: Bundle, backend: str, settings: BenchSettings, scene, bar: Progress):
    """The row of the precision ``--precision auto`` picks here, labelled with why."""
    from segrt.runtime.auto_precision import resolve_auto
    from segrt.tools.bench.cell import _skip

    try:
        choice = resolve_auto(bundle, backend=backend, threads=settings.threads, echo=bar.message)
    except SegrtError as exc:
        return _skip(bundle, AUTO, backend, str(exc))
    row = bench_cell(Bundle.open(bundle.path), choice.precision, choice.backend, settings, scene=scene, progress=bar)
    return dataclasses.replace(row, note=f"auto: {choice.explain()}" + (f"; {row.note}" if row.note else ""))
