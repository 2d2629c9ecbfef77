"""Split one frame's work across the CPU's cores: OpenCV calls release the GIL, so Python threads that
spend their time in cv2 run in parallel.

``run_parts(fn, n)`` calls ``fn(0) .. fn(n-1)``, part 0 in the calling thread and the others on a
small shared pool of daemon threads, and returns their results in order; an exception in any
part is raised in the caller. ``run_chunks(fn, chunks, workers)`` runs ``fn(chunk, worker)`` for
every chunk, each worker claiming the next chunk when it is done with one: on a machine
shared with other work, a thread that gets less CPU simply does fewer chunks, where an even
split would leave everyone waiting for it. :func:`parts` is how many parts are worth making: OpenCV's own
thread count (``cv2.getNumThreads()``, so ``cv2.setNumThreads(1)`` makes every split serial),
at most the CPUs this process may run on and at most ``_MAX_PARTS``.
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, TypeVar

import cv2

T = TypeVar("T")
_MAX_PARTS = 4  # past a few threads the per-part Python overhead outweighs the split
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def parts() -> int:
    """How many parts to split one frame's work into (1: do it all in the calling thread)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cv2.getNumThreads(), cpus, _MAX_PARTS))


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_MAX_PARTS - 1, thread_name_prefix="segrt-part")
        return _pool


def run_parts(fn: Callable[[int], T], n: int) -> list[T]:
    """``[fn(0), ..., fn(n-1)]``, part 0 here and the rest on the shared pool."""
    if n <= 1:
        return [fn(0)] if n == 1 else []
    futures = [_shared_pool().submit(fn, k) for k in range(1, n)]
    try:
        first = fn(0)
    finally:
        wait(futures)  # every part has ended before this frame's buffers are touched again
    return [first, *(f.result() for f in futures)]


def run_chunks(fn: Callable[[int, int], None], chunks: int, workers: int,
               first: Callable[[], None] | None = None) -> None:
    """``fn(chunk, worker)`` for each chunk in ``0 .. chunks-1``, in claim order, over ``workers`` threads.

    With ``first``, the calling thread runs it before it claims chunks, while the other workers
    have started on theirs: Python work of the caller's (which holds the GIL) overlaps chunks
    that release it.
    """
    claim = itertools.count().__next__  # atomic under the GIL

    def work(worker: int) -> None:
        if worker == 0 and first is not None:
            first()
        chunk = claim()
        while chunk < chunks:
            fn(chunk, worker)
            chunk = claim()

    run_parts(work, max(1, min(workers, chunks)))
