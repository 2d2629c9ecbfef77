"""Sink-to-glass latency of the http:// view in headless Chromium (the browser part of glass-to-glass).

Usage::

    flock /tmp/segrt-bench.lock python benchmarks/http_glass_to_glass.py --seconds 10 --fps 30

A thread writes numbered 640x480 frames into an :class:`HttpSink` at ``--fps`` and notes when
each was written. The page, opened in real headless Chromium (DevTools protocol), copies the
``<img>`` onto a canvas on every animation frame, reads the frame number back from its pixels
and notes when a new number appears. The latency of a frame is (first shown) - (written); the
script prints its p50/p90 and the share of frames the page showed, next to one frame interval.
Glass-to-glass in a full run adds the pipeline's own end-to-end latency (the run summary's e2e).
Same machine, same clock (the page's performance.timeOrigin + now() against time.time()).
"""
from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _browser import Browser  # noqa: E402  (the DevTools driver of the tests)
from _runtime_helpers import numbered_frame  # noqa: E402

PROBE = """
window.seen=[];(()=>{const img=document.getElementById('view');const c=document.createElement('canvas');
c.width=8;c.height=8;const g=c.getContext('2d',{willReadFrequently:true});let last=-1;
function tick(){if(img.naturalWidth>0){const w=img.naturalWidth;
 g.drawImage(img,0,0,8,8,0,0,8,8);const lo=Math.round((g.getImageData(4,4,1,1).data[0]-10)/20);
 g.drawImage(img,w-8,0,8,8,0,0,8,8);const hi=Math.round((g.getImageData(4,4,1,1).data[0]-10)/20);
 const n=hi*12+lo;if(n!==last){last=n;window.seen.push([n,performance.timeOrigin+performance.now()]);}}
 requestAnimationFrame(tick);}tick();})();0
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=30.0)
    args = ap.parse_args(argv)
    from segrt.runtime.sinks.http import HttpSink

    frames = [numbered_frame(i, (640, 480)) for i in range(144)]
    written: list[tuple[int, float]] = []
    stop = threading.Event()
    sink = HttpSink("http://127.0.0.1:0?fps=1000")

    def feed() -> None:
        i, t_next = 0, time.perf_counter()
        while not stop.is_set():
            sink.write(frames[i % 144])
            written.append((i % 144, time.time() * 1e3))
            i += 1
            t_next += 1.0 / args.fps
            time.sleep(max(0.0, t_next - time.perf_counter()))

    async def watch() -> list:
        async with Browser() as b:
            await b.goto(sink.url)
            await b.wait_for("document.getElementById('view').naturalWidth > 0")
            await b.eval(PROBE)
            await asyncio.sleep(args.seconds)
            return await b.eval("window.seen")

    with sink:
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            seen = asyncio.run(watch())
        finally:
            stop.set()
            feeder.join()
    lat = []
    for n, t_shown in seen[1:]:
        t_w = [t for m, t in written if m == n and t <= t_shown]
        if t_w:
            lat.append(t_shown - t_w[-1])
    q = statistics.quantiles(lat, n=10)
    print(f"CPU: {platform.processor() or platform.machine()}  {args.fps:g} fps of 640x480 for {args.seconds:g} s")
    print(f"frames written {len(written)}, new frames shown {len(lat)} ({len(lat) / max(1, len(written)):.0%})")
    print(f"sink-to-glass p50 {statistics.median(lat):.1f} ms  p90 {q[8]:.1f} ms  "
          f"(one frame interval {1e3 / args.fps:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
