"""Latency per model × precision × backend × stage: the measurement behind ``segrt bench``.

Method (what makes the numbers comparable over time and with trtexec):

* Fixed inputs. One deterministic 1080p BGR frame is preprocessed once; the compute
  loop feeds that same tensor every iteration. The pre- and postprocess loops run on
  the same 1080p frame and on one stored inference output.
* Warm-up first, then timed iterations. ``Backend.infer`` returns host arrays, so the
  device is synchronised before every stop of the clock. The ``infer`` stage is the
  host wall time of one call (trtexec's "Latency"); ``h2d``/``compute``/``d2h`` are
  what the backend reports (CUDA events on TensorRT; ONNX Runtime reports compute only).
* Until stable or until a time bound. Each loop runs at least ``iters`` iterations and
  stops as soon as the robust spread of the last ``window`` samples is below
  ``cv_target``; if it never settles it stops at ``max_time_s``. At least
  :data:`MIN_SAMPLES` are always taken, so a 5 s Mask R-CNN call still gets a spread.
* Spread is the robust coefficient of variation ``IQR / (1.349 × median)`` (a normal
  sample's CV, insensitive to the odd scheduler hiccup on a shared machine). It is
  the noise estimate the regression check in :mod:`segrt.tools.bench.compare` uses.
* End-to-end FPS runs the real threaded pipeline (capture, pre + infer, post + sink
  threads) on 1080p frames of the ``synthetic://`` scene, pre-rendered and replayed the
  way a camera hands over finished buffers, so the table shows whether the app keeps
  up with the engine (rendering the scene live would measure the scene generator).

Combinations the machine cannot run are kept as rows with status ``skipped`` and
the reason (no TensorRT here, a precision the bundle lacks, a size outside the
exported range), so a table never silently drops a requested cell.

Modules, one job each: :mod:`.matrix` (the bundle × precision × backend loop),
:mod:`.cell` (one cell), :mod:`.timing` (the loop and progress), :mod:`.stats`
(robust spread, stop rule), :mod:`.inputs` (fixed frames, sizes, manifest accuracy),
:mod:`.results` (row/result types and JSON), :mod:`.table`, :mod:`.files`, :mod:`.chart`
(reports) and :mod:`.compare` (regression check against a baseline).
"""
from __future__ import annotations

from segrt.tools.bench.cell import MIN_E2E_FRAMES, PostStage, backend_for_bench, bench_cell, run_e2e
from segrt.tools.bench.chart import chart_unavailable_reason, write_chart
from segrt.tools.bench.compare import (MAX_TOLERANCE, MIN_TOLERANCE, NOISE_SIGMAS, Comparison, compare,
                                       environment_differences, format_comparison, tolerance, verdict)
from segrt.tools.bench.files import STAT_FIELDS, csv_columns, load_json, write_all, write_csv, write_json
from segrt.tools.bench.inputs import (SCENE_FRAMES, SCENE_URI, accuracy_of, manifest_at_size, parse_size,
                                      replay_source, synthetic_frames)
from segrt.tools.bench.matrix import BENCH_BACKENDS, bench_bundles, bundle_labels
from segrt.tools.bench.results import (ALL_STAGES, FRAME_SIZE, JSON_SCHEMA, STAGES, BenchResult, BenchRow,
                                       BenchSettings, E2EResult)
from segrt.tools.bench.stats import IQR_TO_SIGMA, MIN_SAMPLES, StageResult, robust_cv, stop_reason
from segrt.tools.bench.table import format_table
from segrt.tools.bench.timing import Progress, time_loop

__all__ = [
    "ALL_STAGES", "BENCH_BACKENDS", "FRAME_SIZE", "IQR_TO_SIGMA", "JSON_SCHEMA", "MIN_E2E_FRAMES", "MIN_SAMPLES",
    "SCENE_FRAMES", "SCENE_URI", "STAGES", "BenchResult", "BenchRow", "BenchSettings", "E2EResult", "PostStage",
    "Progress", "StageResult", "accuracy_of", "backend_for_bench", "bench_bundles", "bench_cell", "bundle_labels",
    "manifest_at_size", "parse_size", "replay_source", "robust_cv", "run_e2e", "stop_reason", "synthetic_frames",
    "time_loop",
    # reports
    "MAX_TOLERANCE", "MIN_TOLERANCE", "NOISE_SIGMAS", "STAT_FIELDS", "Comparison", "chart_unavailable_reason",
    "compare", "csv_columns", "environment_differences", "format_comparison", "format_table", "load_json", "tolerance",
    "verdict", "write_all", "write_chart", "write_csv", "write_json",
]
