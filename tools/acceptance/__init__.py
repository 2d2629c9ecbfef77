"""``segrt doctor --acceptance``: one command that checks a GPU machine end to end and writes one JSON.

The steps, in order (``needs`` in brackets; a step whose needs are missing is skipped
with the reason, so a CPU machine runs the CPU part and lists the rest):

1. versions [cpu]  2. selftest [cpu]  3. gpu-marked tests [tensorrt]
4. cuda-python devices and primary context [cuda]  5. pinned buffers and events [cuda]
6. CUDA graph capture, replay and failure [cuda]  7. PyCUDA three threads [pycuda]
8. TensorRT build + stream fp32/fp16/int8 x CUDA graph [tensorrt]
9. open / infer / close on three threads [tensorrt]  10. corrupted engine [tensorrt]
11. bench H2D/compute/D2H [tensorrt]  12. legacy calibrator + cache header, 10.x [tensorrt]
13. DLA build, Jetson with DLA [tensorrt]

``no_tensorrt=True`` runs only 4-7: a lent machine with CUDA, cuda-python, CuPy and
PyTorch but no TensorRT.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from segrt.runtime.fsutil import write_bytes_atomic
from segrt.tools.acceptance import steps_cpu, steps_cuda, steps_trt
from segrt.tools.acceptance.context import AcceptanceContext
from segrt.tools.acceptance.registry import Step, report, run_steps, select_steps

STEPS: tuple[Step, ...] = (
    Step("versions", "cpu", steps_cpu.versions, "Python, segrt and library versions; machine facts"),
    Step("selftest", "cpu", steps_cpu.selftest_step, "segrt doctor --selftest on the tiny model"),
    Step("gpu-marked tests", "tensorrt", steps_cpu.gpu_tests, "pytest -m gpu (from a clone)"),
    Step("cuda-python devices", "cuda", steps_cuda.devices_and_primary_context,
         "device count; the runtime API works in the primary context"),
    Step("pinned buffers and events", "cuda", steps_cuda.pinned_buffers_and_events,
         "pinned H2D/D2H round trip and memset, timed by CUDA events"),
    Step("cuda graph", "cuda", steps_cuda.cuda_graph_capture_replay,
         "capture, 100 exact replays, failed captures leave a usable stream"),
    Step("pycuda three threads", "pycuda", steps_cuda.pycuda_three_threads,
         "primary context push/pop and copies on three threads"),
    Step("tensorrt build + stream", "tensorrt", steps_trt.build_and_stream,
         "fp32/fp16/int8 engines, with and without a CUDA graph, vs the reference"),
    Step("tensorrt three threads", "tensorrt", steps_trt.three_threads, "open, infer, close on three threads"),
    Step("corrupted engine", "tensorrt", steps_trt.corrupted_engine, "auto rebuilds or falls back"),
    Step("bench h2d/compute/d2h", "tensorrt", steps_trt.bench_stages, "segrt bench stage split on TensorRT"),
    Step("legacy calibrator", "tensorrt", steps_trt.legacy_calibrator, "10.x entropy calibrator and cache header"),
    Step("dla build", "tensorrt", steps_trt.dla_build, "Jetson with DLA: an FP16 DLA engine"),
)


def run_acceptance(*, no_tensorrt: bool = False, out: str | os.PathLike[str] | None = None,
                   workdir: str | os.PathLike[str] | None = None,
                   echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the selected steps; return the report and write it as JSON to ``out`` when given."""
    steps = select_steps(STEPS, no_tensorrt=no_tensorrt)
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="segrt-acceptance-") if workdir is None else None
    root = Path(workdir) if workdir is not None else Path(tmp.name)  # type: ignore[union-attr]
    try:
        ctx = AcceptanceContext(root)
        results = run_steps(steps, ctx, echo)
        facts = {needs: ctx.missing(needs) or "available" for needs in ("cuda", "pycuda", "tensorrt")}
    finally:
        if tmp is not None:
            tmp.cleanup()
    rep = report(results, no_tensorrt=no_tensorrt, seconds=time.perf_counter() - t0, facts=facts)
    if out is not None:
        write_bytes_atomic(out, (json.dumps(rep, indent=2, default=str) + "\n").encode())
    return rep
