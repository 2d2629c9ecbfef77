"""Render speed of the synthetic:// scene (prints; asserts nothing).

    python benchmarks/synthetic_speed.py [--sizes 1920x1080,1280x720] [--frames 150] [--threads 1]

Reports per size: scene construction time, then per-frame render_into latency percentiles for
sequential playback and for random access (which also builds object textures on first use).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np

from segrt.runtime.synthetic import SyntheticConfig, SyntheticScene


def _percentiles(times_s: list[float]) -> str:
    ms = np.asarray(times_s) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"p50 {p50:6.2f}  p90 {p90:6.2f}  p99 {p99:6.2f}  max {ms.max():6.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1920x1080,1280x720,640x360")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (1 = one core)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, "
          f"cv2 threads {cv2.getNumThreads()}")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        cfg = SyntheticConfig(width=w, height=h, seed=args.seed, frames=max(args.frames, 1))
        t = time.perf_counter()
        scene = SyntheticScene(cfg)
        init_s = time.perf_counter() - t
        image = np.empty((h, w, 3), np.uint8)
        label = np.empty((h, w), np.uint8)
        for i in range(5):  # warm up (first textures, caches)
            scene.render_into(i, image, label)
        seq = []
        for i in range(args.frames):
            t = time.perf_counter()
            scene.render_into(i, image, label)
            seq.append(time.perf_counter() - t)
        rnd = []
        order = np.random.default_rng(1).integers(0, 100 * args.frames, args.frames)
        for i in order:
            t = time.perf_counter()
            scene.render_into(int(i), image, label)
            rnd.append(time.perf_counter() - t)
        print(f"{w}x{h}: init {init_s * 1e3:7.1f} ms")
        print(f"  sequential    {_percentiles(seq)}  ({len(seq) / sum(seq):.0f} fps)")
        print(f"  random access {_percentiles(rnd)}")


if __name__ == "__main__":
    main()
