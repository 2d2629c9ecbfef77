"""Several cameras on one model: total throughput of one batched process against one process per stream.

Usage::

    flock /tmp/segrt-bench.lock python benchmarks/multi_source.py              # 4 live 720p streams, demo model
    python benchmarks/multi_source.py --streams 4 --frames 90 --fps 30 --work /tmp/ms

The demo model is exported with a batch axis (``max_batch`` = number of streams). Each stream is
the synthetic scene as a live camera (``synthetic://?size=1280x720&fps=F&seed=S&live=1``, the
newest frame wins), with a different seed per stream. Three set-ups, each streaming ``--frames``
frames per stream:

* ``batched``: one process, one backend, the newest frame of each stream batched
  (:class:`~segrt.runtime.multi_source.MultiSourceRunner`);
* ``one-by-one``: the same process and backend, frames inferred one at a time in turn;
* ``per-process``: one ``Pipeline`` process per stream, all at once, each with
  ``threads = cores // streams`` inference threads (at least 1).

It prints the total throughput (all streams' frames over the run's span; per process, from the
first process's start of streaming to the last one's end), each stream's fps range and the
e2e p50. Cameras faster than the model keep it busy; then the total is what the model sustains.
Timings are noisy on a shared machine: compare within one run, and name the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from segrt.runtime.machine import this_cpu


def _uris(streams: int, fps: float, size: str) -> list[str]:
    return [f"synthetic://?size={size}&fps={fps:g}&seed={s + 1}&live=1" for s in range(streams)]


def _bundle(work: Path, streams: int):
    from segrt.runtime.bundle import Bundle

    path = work / f"demo_unet_b{streams}"
    if (path / "segrt.json").exists():
        return Bundle.open(path)
    from segrt.export.api import export_bundle
    return export_bundle("demo_unet", path, max_batch=streams)


def _child(bundle: str, uri: str, frames: int, threads: int) -> None:
    """One stream in its own process: print its summary as JSON."""
    from segrt.runtime.pipeline import Pipeline

    s = Pipeline(bundle, uri, None, backend="onnxruntime", threads=threads, max_frames=frames,
                 overlay_stats=False).run()
    print(json.dumps({"frames": s.frames, "fps": s.fps, "e2e_p50": s.stages["e2e"].p50, "end": time.time(),
                      "wall_s": s.wall_s}))


def _in_process(bundle, uris: list[str], frames: int, threads: int, max_batch: int | None) -> dict:
    from segrt.runtime.multi_source import MultiSourceRunner

    s = MultiSourceRunner(bundle, uris, backend="onnxruntime", threads=threads, max_frames=frames,
                          overlay_stats=False, max_batch=max_batch).run()
    return {"total": s.fps, "fps": [x.fps for x in s.streams], "e2e": [x.stages["e2e"].p50 for x in s.streams],
            "mean_batch": s.mean_batch}


def _per_process(bundle, uris: list[str], frames: int, threads: int) -> dict:
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, __file__, "--child", str(bundle.path), uri, str(frames), str(threads)],
                              stdout=subprocess.PIPE, text=True, env=env) for uri in uris]
    rows = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a per-stream process failed (exit {p.returncode})")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    # The processes start a little apart: total frames over the span from the first start to the last end.
    span = max(r["end"] for r in rows) - min(r["end"] - r["wall_s"] for r in rows)
    return {"total": sum(r["frames"] for r in rows) / span, "fps": [r["fps"] for r in rows], "e2e": [r["e2e_p50"] for r in rows],
            "mean_batch": 1.0}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--frames", type=int, default=90, help="frames per stream (default 90)")
    ap.add_argument("--fps", type=float, default=30.0, help="each camera's rate (default 30)")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="inference threads, one process")
    ap.add_argument("--work", type=Path, default=Path("/tmp/segrt-multi-source"))
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = _bundle(args.work, args.streams)
    uris = _uris(args.streams, args.fps, args.size)
    per_threads = max(1, args.threads // args.streams)
    print(f"CPU {this_cpu().describe()} ({os.cpu_count()} cores); {args.streams} live {args.size} streams at {args.fps:g} fps, "
          f"{args.frames} frames each; {bundle.manifest.name} {bundle.manifest.input.width}x"
          f"{bundle.manifest.input.height}, onnxruntime fp32", flush=True)
    rows = []
    for name, run in (("batched", lambda: _in_process(bundle, uris, args.frames, args.threads, None)),
                      ("one-by-one", lambda: _in_process(bundle, uris, args.frames, args.threads, 1)),
                      ("per-process", lambda: _per_process(bundle, uris, args.frames, per_threads))):
        t = time.perf_counter()
        r = run()
        rows.append((name, r))
        print(f"  {name:<12} done in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"\n{'set-up':<12} {'threads':>8} {'total fps':>10} {'stream fps':>14} {'e2e p50 ms':>12} {'mean batch':>11}")
    for name, r in rows:
        th = f"{per_threads}x{args.streams}" if name == "per-process" else str(args.threads)
        fps = f"{min(r['fps']):.1f}-{max(r['fps']):.1f}"
        e2e = sorted(r["e2e"])[len(r["e2e"]) // 2]
        print(f"{name:<12} {th:>8} {r['total']:>10.2f} {fps:>14} {e2e:>12.1f} {r['mean_batch']:>11.2f}")
    base = rows[2][1]["total"]
    print(f"\nbatched / per-process total throughput: {rows[0][1]['total'] / base:.2f}x; "
          f"one-by-one / per-process: {rows[1][1]['total'] / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
