"""Progress for long steps: a live bar on a terminal, plain lines anywhere else, or nothing.

On a TTY: tqdm when installed. Anywhere else (a log file, a pipe, CI) a bar's carriage
returns would pile up into one very long line, so progress is one short line
(``desc: 120/200``) at most every ``min_interval_s`` seconds, plus the final count.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

MIN_INTERVAL_S = 2.0


class _Lines:
    """``desc: 120/200`` lines, at most one every ``min_interval_s`` plus the final count."""

    def __init__(self, total: int | None, desc: str, stream: TextIO, min_interval_s: float) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self.stream, self.min_interval_s = stream, min_interval_s
        self._last = 0.0
        self._printed = -1

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self._last >= self.min_interval_s:
            self._last = now
            self._print()

    def _print(self) -> None:
        if self.n == self._printed:
            return
        self._printed = self.n
        tot = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: {self.n}{tot}", file=self.stream, flush=True)

    def close(self) -> None:
        self._print()


class _Silent:
    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def close(self) -> None:
        pass


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(total: int | None, desc: str, enabled: bool = True, *, stream: TextIO | None = None,
                 min_interval_s: float = MIN_INTERVAL_S):
    """An object with ``update(k=1)`` and ``close()``, writing to ``stream`` (stderr by default)."""
    if not enabled:
        return _Silent()
    stream = stream or sys.stderr
    if is_terminal(stream):
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, unit="frame" if "frame" in desc or "calib" in desc else "it",
                        file=stream, leave=False, dynamic_ncols=True)
    return _Lines(total, desc, stream, min_interval_s)
