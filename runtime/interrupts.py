"""Ctrl-C and SIGTERM as a graceful stop: the signal becomes KeyboardInterrupt on the main thread."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def signals_as_interrupt(on_signal: Callable[[], bool]) -> Iterator[None]:
    """On the main thread, SIGINT and SIGTERM raise KeyboardInterrupt inside the block when
    ``on_signal()`` (called for every signal, so it can count them) returns True; a caller that
    is finalising its output returns False and the signal is only counted.

    SIGINT is included because a process started in the background inherits it ignored,
    and Ctrl-C/kill -INT must still finalise the recording. Off the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if on_signal():
            raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
