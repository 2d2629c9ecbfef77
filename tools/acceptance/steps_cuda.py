"""CUDA-only steps (no TensorRT): a lent GPU machine with cuda-python (and PyCUDA) runs these.

Each step is thin: it drives the project's wrappers (:mod:`segrt.runtime.cuda_cudart`,
:mod:`segrt.runtime.cuda_pycuda`) and the few extra cuda-python calls in
:mod:`.cuda_checks`, and compares bytes that came back from the device.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from segrt.runtime import cuda_cudart
from segrt.tools.acceptance import cuda_checks as cc
from segrt.tools.doctor import FAIL, PASS

PINNED_BYTES = 16 << 20
GRAPH_BYTES = 1 << 20
GRAPH_REPLAYS = 100


def devices_and_primary_context(ctx) -> tuple[str, str, dict]:
    """cudaGetDeviceCount, the device's name, and that the runtime API works in the primary context."""
    rt, drv = cuda_cudart.cudart(), cc.driver()
    n = cuda_cudart.check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    name, cap = cuda_cudart.device_info(0)
    cuda_cudart.check(rt.cudaSetDevice(0), "cudaSetDevice")
    cuda_cudart.check(rt.cudaFree(0), "cudaFree(0)")  # initialises the runtime in device 0's primary context
    runtime_ctx = cc.dcheck(drv.cuCtxGetCurrent(), "cuCtxGetCurrent")
    dev = cc.dcheck(drv.cuDeviceGet(0), "cuDeviceGet")
    primary = cc.dcheck(drv.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
    try:
        cc.dcheck(drv.cuCtxPushCurrent(primary), "cuCtxPushCurrent")
        try:
            pushed = cc.dcheck(drv.cuCtxGetCurrent(), "cuCtxGetCurrent")
            ptr = cuda_cudart.check(rt.cudaMalloc(4096), "cudaMalloc")  # runtime API inside the pushed context
            cuda_cudart.check(rt.cudaFree(ptr), "cudaFree")
            _, active = cc.dcheck(drv.cuDevicePrimaryCtxGetState(dev), "cuDevicePrimaryCtxGetState")
        finally:
            cc.dcheck(drv.cuCtxPopCurrent(), "cuCtxPopCurrent")
    finally:
        cc.dcheck(drv.cuDevicePrimaryCtxRelease(dev), "cuDevicePrimaryCtxRelease")
    data = {"devices": int(n), "name": name, "compute_capability": list(cap),
            "runtime_uses_primary": int(runtime_ctx) == int(primary), "pushed_is_primary": int(pushed) == int(primary),
            "primary_active": int(active)}
    ok = n >= 1 and data["runtime_uses_primary"] and data["pushed_is_primary"] and data["primary_active"] == 1
    return (PASS if ok else FAIL), f"{n} device(s); 0: {name} SM {cap[0]}.{cap[1]}; primary context " \
                                   f"{'shared by runtime and driver' if ok else 'NOT shared'}", data


def pinned_buffers_and_events(ctx) -> tuple[str, str, dict]:
    """A 16 MiB pinned round trip H2D -> D2H and a device memset, timed with CUDA events."""
    rt = cuda_cudart.cudart()
    pattern = np.random.default_rng(0).integers(0, 256, PINNED_BYTES, dtype=np.uint8)
    block = cc.PinnedBlock(PINNED_BYTES)
    events = []
    try:
        with cc.stream() as s:
            events = [cc.event() for _ in range(3)] + [cc.event(blocking=True)]
            e0, e1, e2, e3 = events
            block.host[:] = pattern
            cuda_cudart.check(rt.cudaEventRecord(e0, s), "cudaEventRecord")
            cc.copy_h2d(block, s)
            cuda_cudart.check(rt.cudaEventRecord(e1, s), "cudaEventRecord")
            cuda_cudart.check(rt.cudaEventSynchronize(e1), "cudaEventSynchronize")
            block.host[:] = 0
            cuda_cudart.check(rt.cudaEventRecord(e2, s), "cudaEventRecord")
            cc.copy_d2h(block, s)
            cuda_cudart.check(rt.cudaEventRecord(e3, s), "cudaEventRecord")
            cuda_cudart.check(rt.cudaEventSynchronize(e3), "cudaEventSynchronize")  # blocking-sync event
            round_trip = bool(np.array_equal(block.host, pattern))
            h2d_ms = float(cuda_cudart.check(rt.cudaEventElapsedTime(e0, e1), "cudaEventElapsedTime"))
            d2h_ms = float(cuda_cudart.check(rt.cudaEventElapsedTime(e2, e3), "cudaEventElapsedTime"))
            cuda_cudart.check(rt.cudaMemsetAsync(block.dev_ptr, 0xAB, block.nbytes, s), "cudaMemsetAsync")
            cc.copy_d2h(block, s)
            cuda_cudart.check(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize")
            memset_ok = bool((block.host == 0xAB).all())
    finally:
        for e in events:
            cuda_cudart.check(rt.cudaEventDestroy(e), "cudaEventDestroy")
        block.free()
    gbps = {k: PINNED_BYTES / (ms * 1e6) if ms > 0 else None for k, ms in (("h2d", h2d_ms), ("d2h", d2h_ms))}
    data = {"bytes": PINNED_BYTES, "round_trip": round_trip, "memset": memset_ok, "h2d_ms": h2d_ms,
            "d2h_ms": d2h_ms, "h2d_gb_s": gbps["h2d"], "d2h_gb_s": gbps["d2h"]}
    ok = round_trip and memset_ok and h2d_ms > 0 and d2h_ms > 0
    return (PASS if ok else FAIL), (f"16 MiB round trip {'exact' if round_trip else 'CORRUPTED'}, memset "
                                    f"{'ok' if memset_ok else 'WRONG'}; H2D {h2d_ms:.2f} ms, D2H {d2h_ms:.2f} ms"), data


def _graph_capture_failures(rt, s, block) -> dict:
    """Two failed captures through the backend's handler (capture_or_none): each must give no
    graph, leave no CUDA error behind, and leave the stream out of capture mode and usable."""
    def refused() -> bool:  # what TensorRT's enqueueV3 returns when it cannot enqueue
        return False

    def illegal() -> bool:  # synchronising a capturing stream invalidates the capture
        rt.cudaStreamSynchronize(s)
        return True

    out = {}
    for case, enqueue in (("enqueue returned False", refused), ("illegal call during capture", illegal)):
        graph = cuda_cudart.capture_or_none(int(s), enqueue, f"acceptance: {case}")
        left_error = cuda_cudart.clear_error()  # capture_or_none must already have cleared it
        capturing = cc.is_capturing(s)
        cuda_cudart.check(rt.cudaMemsetAsync(block.dev_ptr, 0x11, block.nbytes, s), "cudaMemsetAsync")
        cc.copy_d2h(block, s)
        cuda_cudart.check(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize")
        usable = bool((block.host == 0x11).all())
        out[case] = {"refused": graph is None, "error_left": left_error, "still_capturing": capturing,
                     "stream_usable_after": usable}
        if graph is not None:
            graph.release()
    return out


def cuda_graph_capture_replay(ctx) -> tuple[str, str, dict]:
    """CudaGraph captures memset + D2H, replays it 100 times exactly; failed captures leave a usable stream."""
    rt = cuda_cudart.cudart()
    block = cc.PinnedBlock(GRAPH_BYTES)
    try:
        with cc.stream() as s:
            def enqueue() -> bool:
                cuda_cudart.check(rt.cudaMemsetAsync(block.dev_ptr, 0x5A, block.nbytes, s), "cudaMemsetAsync")
                cc.copy_d2h(block, s)
                return True

            graph = cuda_cudart.CudaGraph(int(s))
            graph.capture(enqueue)
            exact = 0
            t0 = time.perf_counter()
            for _ in range(GRAPH_REPLAYS):
                block.host[:] = 0
                graph.launch()
                cuda_cudart.check(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize")
                exact += bool((block.host == 0x5A).all())
            replay_ms = (time.perf_counter() - t0) * 1e3 / GRAPH_REPLAYS
            graph.release()
            failures = _graph_capture_failures(rt, s, block)
    finally:
        block.free()
    handled = all(f["refused"] and not f["error_left"] and not f["still_capturing"] and f["stream_usable_after"]
                  for f in failures.values())
    data = {"replays": GRAPH_REPLAYS, "exact_replays": exact, "replay_ms": replay_ms, "failures": failures}
    ok = exact == GRAPH_REPLAYS and handled
    return (PASS if ok else FAIL), (f"{exact}/{GRAPH_REPLAYS} replays exact ({replay_ms:.3f} ms each incl. sync); "
                                    f"failed captures {'refused, stream usable after' if handled else 'MISHANDLED'}"), data


def pycuda_three_threads(ctx) -> tuple[str, str, dict]:
    """Three threads push the primary context, copy through it, pop it; nothing stays current."""
    from segrt.runtime import cuda_pycuda as cp

    primary = cp.primary_context(0)
    nbytes = 1 << 20
    barrier = threading.Barrier(3)
    results: dict[int, dict] = {}

    def work(i: int) -> None:
        cuda = cp.driver()
        r: dict = {"thread": threading.current_thread().name, "before": cuda.Context.get_current() is None}
        try:
            barrier.wait(timeout=30)
            with cp.current(primary):
                r["inside_is_primary"] = cuda.Context.get_current() == primary
                host, back = cp.pagelocked((nbytes,), np.uint8), cp.pagelocked((nbytes,), np.uint8)
                host[:] = i + 1
                buf, st = cp.DeviceBuffer(nbytes), cp.Stream()
                st.htod(buf, host)
                st.dtoh(back, buf)
                st.synchronize()
                r["copy_exact"] = bool(np.array_equal(back, host))
                buf.free()
                del host, back, st  # freed while the context is current on this thread
            r["after"] = cuda.Context.get_current() is None
        except Exception as exc:  # reported in the step's result, not lost in a thread
            r["error"] = f"{type(exc).__name__}: {exc}"
        results[i] = r

    threads = [threading.Thread(target=work, args=(i,), name=f"acceptance-pycuda-{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ok = len(results) == 3 and all(r.get("copy_exact") and r.get("inside_is_primary") and r["before"] and r.get("after")
                                   and "error" not in r for r in results.values())
    errors = [r["error"] for r in results.values() if "error" in r]
    return (PASS if ok else FAIL), ("3 threads: push, exact 1 MiB copy, pop; no context left current" if ok
                                    else f"thread results: {errors or results}"), {"threads": results}
