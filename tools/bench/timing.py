"""The timing loop (warm up, then time until stable or a time bound) and its progress display."""
from __future__ import annotations

import gc
import sys
import time
from typing import TYPE_CHECKING, Callable, Sequence

from segrt.calibration.progress import is_terminal
from segrt.tools.bench.stats import stop_reason

if TYPE_CHECKING:
    from segrt.tools.bench.results import BenchSettings


class Progress:
    """A progress bar over timed iterations: tqdm on a terminal when installed, else (a log
    file, a pipe) a plain line every few seconds."""

    def __init__(self, enabled: bool, stream=None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._bar = None
        self._label = ""
        self._n = 0
        self._last = 0.0

    def start(self, label: str, total_s: float) -> None:
        if not self.enabled:
            return
        self._label, self._n, self._last = label, 0, time.perf_counter()
        tqdm = None
        if is_terminal(self.stream):  # off a terminal a bar's carriage returns make one endless line
            try:
                from tqdm import tqdm
            except ImportError:
                pass
        if tqdm is None:
            print(f"  {label} ...", file=self.stream, flush=True)
            return
        self._bar = tqdm(desc=f"  {label}", unit="it", leave=False, file=self.stream,
                         bar_format="{desc}: {n_fmt} it [{elapsed}<~{postfix}] {rate_fmt}",
                         postfix=f"{total_s:.0f}s max", mininterval=0.5)

    def update(self) -> None:
        if not self.enabled:
            return
        self._n += 1
        if self._bar is not None:
            self._bar.update(1)
        elif time.perf_counter() - self._last > 3.0:
            self._last = time.perf_counter()
            print(f"  {self._label}: {self._n} iterations", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)


def time_loop(fn: Callable[[], Sequence[float]], settings: BenchSettings, *, label: str = "",
              progress: Progress | None = None, series: int = 1) -> tuple[list[list[float]], str]:
    """Warm up, then call ``fn`` until :func:`stop_reason` says stop.

    ``fn`` runs one iteration and returns ``series`` millisecond figures (the first
    one decides when the loop is stable). Warm-up runs ``settings.warmup`` untimed
    calls (at least one: the first call allocates), bounded by ``max_time_s`` as well.
    The garbage collector is paused while timing, as :mod:`timeit` does, so a
    collection triggered by unrelated objects does not land in one sample.
    """
    progress = progress or Progress(False)
    t0 = time.perf_counter()
    for _ in range(max(1, settings.warmup)):
        fn()
        if time.perf_counter() - t0 >= settings.max_time_s:
            break
    samples: list[list[float]] = [[] for _ in range(series)]
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    progress.start(label, settings.max_time_s)
    try:
        t0 = time.perf_counter()
        while True:
            values = fn()
            for s, v in zip(samples, values):
                s.append(float(v))
            progress.update()
            reason = stop_reason(samples[0], time.perf_counter() - t0, iters=settings.iters,
                                 max_time_s=settings.max_time_s, cv_target=settings.cv_target,
                                 window=settings.window)
            if reason:
                return samples, reason
    finally:
        progress.close()
        if was_enabled:
            gc.enable()
