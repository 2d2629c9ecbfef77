"""Frames through ``triton://`` to a local tritonserver vs the local ONNX Runtime backend, and
throughput / latency percentiles at 1, 4, 8 and 16 concurrent clients, with and without batching.

    python benchmarks/triton_concurrency.py                        # lraspp 256x512, --max-batch 16
    python benchmarks/triton_concurrency.py --bundle B --frames 40 --out DIR

Targets (issue #14): at concurrency 1 a frame through triton:// costs at most 1.2x the local ONNX
Runtime backend per frame at 256x512. The server is nvidia-pytriton's tritonserver (Python backend
running the bundle's ONNX with ONNX Runtime, CPU) on 127.0.0.1, started and stopped by PID here.
"Batching on" is the repository ``segrt deploy triton --platform python`` writes (max_batch_size =
the bundle's batch axis, dynamic_batching with a queue delay); "off" is the same model with
max_batch_size 1, so every request runs alone. Every figure comes from one run on this machine: a
ratio measured within the run, with the CPU named beside it. Each client sends ``--frames``
requests (a bounded loop), after 3 warm-up requests.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _percentile(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q))


def _client_run(url: str, frame: np.ndarray, n: int, lat: list[float], errors: list[BaseException],
                start: threading.Barrier) -> None:
    from segrt.runtime.backends.triton import TritonBackend

    try:
        with TritonBackend(url, timeout_s=120) as be:
            for _ in range(3):
                be.infer(frame)
            start.wait(timeout=300)  # every client warmed up: the timed section starts together
            for _ in range(n):
                t = time.perf_counter()
                be.infer(frame)
                lat.append((time.perf_counter() - t) * 1e3)
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        errors.append(exc)


def concurrency_row(url: str, frame: np.ndarray, clients: int, frames: int) -> dict:
    lat: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=_client_run, args=(url, frame, frames, lat, errors, start))
               for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait(timeout=300)
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"clients": clients, "fps": len(lat) / wall, "p50_ms": _percentile(lat, 50), "p99_ms": _percentile(lat, 99)}


def _median_infer_ms(be, frame: np.ndarray, frames: int) -> float:
    """Median ms per ``infer`` after 3 warm-up calls."""
    for _ in range(3):
        be.infer(frame)
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        be.infer(frame)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def local_ms(onnx_path: Path, frame: np.ndarray, frames: int, threads: int) -> float:
    from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend(onnx_path, threads=threads) as be:
        return _median_infer_ms(be, frame, frames)


def remote_ms(url: str, frame: np.ndarray, frames: int) -> float:
    from segrt.runtime.backends.triton import TritonBackend

    with TritonBackend(url, timeout_s=120) as be:
        return _median_infer_ms(be, frame, frames)


def chart(rows: list[dict], path: Path, cpu: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in ("on", "off"):
        sel = [r for r in rows if r["batching"] == mode]
        xs = [r["clients"] for r in sel]
        a.plot(xs, [r["fps"] for r in sel], marker="o", label=f"dynamic batching {mode}")
        b.plot(xs, [r["p50_ms"] for r in sel], marker="o", label=f"p50, batching {mode}")
        b.plot(xs, [r["p99_ms"] for r in sel], marker="x", linestyle="--", label=f"p99, batching {mode}")
    a.set(xlabel="concurrent clients", ylabel="frames/s", title="throughput")
    b.set(xlabel="concurrent clients", ylabel="ms", title="latency per request")
    for ax in (a, b):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"triton:// on loopback, {cpu}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="a bundle with a batch axis (default: export lraspp 256x512 --max-batch 16)")
    ap.add_argument("--model", default="lraspp_mobilenet_v3_large")
    ap.add_argument("--frames", type=int, default=30, help="timed requests per client")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads, local and in the server")
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--out", default="triton_concurrency_out")
    args = ap.parse_args()

    from segrt.deploy.triton_repo import deploy_triton
    from segrt.runtime.bundle import Bundle
    from segrt.tools.envinfo import cpu_info
    from segrt.tools.triton_server import LocalTritonServer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="segrt-triton-bench-"))
    bundle_path = Path(args.bundle) if args.bundle else work / "bundle"
    if not args.bundle:
        subprocess.run([sys.executable, "-m", "segrt.tools.cli", "export", args.model, "--size", "256x512",
                        "--max-batch", "16", "-o", str(bundle_path)], check=True)
    bundle = Bundle.open(bundle_path)
    inp = bundle.manifest.input
    frame = np.random.default_rng(0).integers(0, 256, inp.shape, dtype=np.uint8)
    cpu = str(cpu_info().get("model") or cpu_info())
    repo = work / "repo"
    deploy_triton(bundle_path, repo, name="batched", platform="python", threads=args.threads, queue_delay_us=2000)
    deploy_triton(bundle_path, repo, name="single", platform="python", threads=args.threads, max_batch=1)
    url = "triton://{}/{}"
    rows = []
    with LocalTritonServer(repo, log_path=work / "server.log") as srv:
        local = local_ms(bundle.onnx_path(), frame, args.frames, args.threads)
        remote = remote_ms(url.format(srv.url, "single"), frame, args.frames)
        for n in (int(c) for c in args.clients.split(",")):
            for mode, model in (("on", "batched"), ("off", "single")):
                row = concurrency_row(url.format(srv.url, model), frame, n, args.frames)
                rows.append({"batching": mode, **row})
                print(f"clients {n:2d} batching {mode:3s}: {row['fps']:6.1f} fps  p50 {row['p50_ms']:7.1f} ms  "
                      f"p99 {row['p99_ms']:7.1f} ms", flush=True)
    ratio = remote / local
    print(f"\nCPU: {cpu}; model {bundle.manifest.name} {inp.height}x{inp.width}, batch axis 1..{bundle.manifest.input.max_batch}, "
          f"ONNX Runtime threads {args.threads}")
    print(f"concurrency 1, median per frame: local ONNX Runtime {local:.1f} ms, triton:// {remote:.1f} ms "
          f"-> {ratio:.2f}x (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
    print("\n| clients | batching | frames/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['batching']} | {r['fps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    chart(rows, out / "triton_concurrency.png", cpu)
    (out / "triton_concurrency.json").write_text(json.dumps(
        {"cpu": cpu, "local_ms": local, "triton_ms": remote, "ratio": ratio, "rows": rows,
         "model": bundle.manifest.name, "size": [inp.height, inp.width], "threads": args.threads}, indent=2))
    print(f"\nwrote {out / 'triton_concurrency.png'} and {out / 'triton_concurrency.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
