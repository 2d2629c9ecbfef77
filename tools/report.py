"""Benchmark reports, under the name earlier code imports them by.

The reports live in :mod:`segrt.tools.bench`: :mod:`~segrt.tools.bench.table` (terminal
table), :mod:`~segrt.tools.bench.files` (JSON, CSV, all files at once),
:mod:`~segrt.tools.bench.chart` (PNG) and :mod:`~segrt.tools.bench.compare` (baseline
comparison and its regression rule).
"""
from __future__ import annotations

from segrt.tools.bench.chart import STAGE_COLOURS, chart_unavailable_reason, write_chart
from segrt.tools.bench.compare import (COMPARED, MAX_TOLERANCE, MIN_TOLERANCE, NOISE_SIGMAS, Comparison, compare,
                                       environment_differences, format_comparison, tolerance, verdict)
from segrt.tools.bench.files import (STAT_FIELDS, csv_columns, load_json, result_to_json, write_all, write_csv,
                                     write_json)
from segrt.tools.bench.results import ALL_STAGES, JSON_SCHEMA, STAGES
from segrt.tools.bench.table import format_table

__all__ = [
    "ALL_STAGES", "COMPARED", "JSON_SCHEMA", "MAX_TOLERANCE", "MIN_TOLERANCE", "NOISE_SIGMAS", "STAGES",
    "STAGE_COLOURS", "STAT_FIELDS", "Comparison", "chart_unavailable_reason", "compare", "csv_columns",
    "environment_differences", "format_comparison",
    "format_table", "load_json", "result_to_json", "tolerance", "verdict", "write_all", "write_chart", "write_csv",
    "write_json",
]
