"""A progress bar: tqdm when installed, else a plain counter on stderr, or nothing."""
from __future__ import annotations

import sys
import time


class _Counter:
    """``desc: 120/200`` lines, at most one every 2 s plus the final count."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self._last = 0.0

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self._last >= 2.0:
            self._last = now
            self._print()

    def _print(self) -> None:
        tot = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: {self.n}{tot}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._print()


class _Silent:
    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def close(self) -> None:
        pass


def progress_bar(total: int | None, desc: str, enabled: bool = True):
    """An object with ``update(k=1)`` and ``close()``."""
    if not enabled:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Counter(total, desc)
    return tqdm(total=total, desc=desc, unit="frame" if "frame" in desc or "calib" in desc else "it",
                file=sys.stderr, leave=False, dynamic_ncols=True)
