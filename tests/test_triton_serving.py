"""A real Triton server (nvidia-pytriton's tritonserver, Python backend) serving a repository that
``segrt deploy triton --platform python`` wrote, reached through the ``triton://`` backend.

Every server runs on 127.0.0.1 on free ports and is stopped by its PID when its fixture ends,
also when a test fails. The cached server venv is made on first use (see _triton_helpers).
"""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from segrt.deploy.triton_repo import deploy_triton
from segrt.errors import BackendError, BackendUnavailableError
from segrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segrt.runtime.backends.triton import TritonBackend
from segrt.runtime.pipeline import Pipeline
from segrt.tools.tiny_model import reference_mask
from segrt.tools.triton_server import LocalTritonServer

from _runtime_helpers import count_video_frames, write_video
from _triton_helpers import batched_tiny_bundle, server_root_or_skip

H, W = 32, 48


@pytest.fixture()
def served(tmp_path):
    """(bundle, server): the tiny fused bundle with a batch axis 1..8, deployed as model "seg" (2
    instances, dynamic batching with a 20 ms queue delay, so that concurrent requests form batches)."""
    server_root_or_skip()
    bundle = batched_tiny_bundle(tmp_path / "tiny", H, W, 8)
    deploy_triton(bundle.path, tmp_path / "repo", name="seg", platform="python", instances=2,
                  queue_delay_us=20000)
    server = LocalTritonServer(tmp_path / "repo", log_path=tmp_path / "server.log").start()
    try:
        yield bundle, server
    finally:
        server.stop()
        assert server.proc.poll() is not None  # stopped by PID
        with pytest.raises(ProcessLookupError):  # and no backend stub outlived it, even after a kill
            os.killpg(server.proc.pid, 0)


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8) for _ in range(n)]


def test_masks_through_triton_equal_local_onnxruntime(served):
    bundle, server = served
    with TritonBackend(f"triton://{server.url}/seg") as remote, \
            OnnxRuntimeBackend(bundle.onnx_path(), threads=1) as local:
        assert remote.input_specs[0].shape == bundle.manifest.input.shape
        for frame in _frames(12):
            got = remote.infer(frame)["mask"]
            np.testing.assert_array_equal(got, local.infer(frame)["mask"])
            np.testing.assert_array_equal(got, reference_mask(frame))
        assert remote.last_times.total_ms > 0


def test_concurrent_clients_get_their_own_results(served):
    _, server = served
    errors: list[BaseException] = []
    checked = [0] * 8

    def client(k: int) -> None:
        try:
            with TritonBackend(f"triton://{server.url}/seg") as be:
                for frame in _frames(10, seed=100 + k):
                    np.testing.assert_array_equal(be.infer(frame)["mask"], reference_mask(frame))
                    checked[k] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert checked == [10] * 8
    # The server formed batches of several requests (Triton's statistics extension counts them).
    import json
    import urllib.request
    with urllib.request.urlopen(f"http://{server.url}/v2/models/seg/stats", timeout=10) as r:
        stats = json.load(r)["model_stats"][0]
    sizes = {int(b["batch_size"]) for b in stats["batch_stats"]}
    assert max(sizes) > 1, sizes
    assert int(stats["inference_count"]) >= 80


def test_a_bad_shape_is_rejected_with_the_servers_message(served):
    _, server = served
    with TritonBackend(f"triton://{server.url}/seg") as be:
        with pytest.raises(BackendError, match=r"rejected the request: .*unexpected shape for input 'frame'"):
            be.infer(np.zeros((1, H // 2, W, 3), np.uint8))
        with pytest.raises(BackendError, match="unknown input"):
            be.infer({"nope": np.zeros((1, H, W, 3), np.uint8)})


def test_a_model_that_is_not_ready_and_a_server_that_is_gone(served, tmp_path):
    _, server = served
    with pytest.raises(BackendUnavailableError, match="model not ready"):
        TritonBackend(f"triton://{server.url}/no_such_model").open()
    be = TritonBackend(f"triton://{server.url}/seg", retries=2, backoff_s=0.05).open()
    server.kill()
    with pytest.raises(BackendUnavailableError, match=r"server unreachable after 3 attempts"):
        be.infer(_frames(1)[0])
    be.close()


def test_killing_the_server_mid_run_finalises_the_video(served, tmp_path):
    bundle, server = served
    source = write_video(tmp_path / "in.avi", 60, size=(W * 2, H * 2))
    out = tmp_path / "out.avi"
    pipe = Pipeline(bundle, str(source), str(out), backend=f"triton://{server.url}/seg")
    seen = 0
    with pytest.raises(BackendUnavailableError, match="server unreachable"):
        for _ in pipe:
            seen += 1
            if seen == 10:
                server.kill()
    assert 10 <= seen < 60
    assert count_video_frames(out) >= 10


def test_run_and_bench_verbs_take_a_triton_backend(served, tmp_path, capsys):
    from _export_helpers import cli

    bundle, server = served
    uri = f"triton://{server.url}/seg"
    source = write_video(tmp_path / "in.avi", 8, size=(W * 2, H * 2))
    rc, out, err = cli(capsys, "run", str(bundle.path), "--source", str(source), "--sink", str(tmp_path / "o.avi"),
                       "--backend", uri)
    assert rc == 0, err
    assert count_video_frames(tmp_path / "o.avi") == 8
    rc, out, err = cli(capsys, "bench", str(bundle.path), "--backend", uri, "--iters", "5", "--warmup", "1",
                       "--max-time", "2", "--no-e2e", "--no-progress", "--out", str(tmp_path / "bench"))
    assert rc == 0, err
    import json
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
    assert rows[0]["backend"] == uri and rows[0]["status"] == "ok"
    assert {"h2d", "compute", "d2h"} <= set(rows[0]["stages"])  # upload, network+queue+compute, download


def test_a_repository_that_does_not_load_is_one_clear_error(tmp_path):
    server_root_or_skip()
    bundle = batched_tiny_bundle(tmp_path / "tiny", H, W, 2)
    dep = deploy_triton(bundle.path, tmp_path / "repo", name="broken", platform="python")
    (dep.model_dir / "1" / "model.onnx").unlink()  # the Python model's initialize() cannot open it
    server = LocalTritonServer(tmp_path / "repo", log_path=tmp_path / "server.log", start_timeout_s=60)
    with pytest.raises(BackendUnavailableError, match="could not load a model: .*broken"):
        server.start()
    assert server.proc.poll() is not None


def test_eval_through_triton_scores_as_the_local_backend(served, tmp_path, capsys):
    import cv2

    from _export_helpers import cli

    bundle, server = served
    rng = np.random.default_rng(5)
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(tmp_path / "data" / "images" / f"{i}.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "data" / "masks" / f"{i}.png"), rng.integers(0, 4, (H, W), dtype=np.uint8))
    tables = {}
    for backend in ("onnxruntime", f"triton://{server.url}/seg"):
        rc, out, err = cli(capsys, "eval", str(bundle.path), "--data", str(tmp_path / "data"), "--backend", backend,
                           "--no-store", "--no-progress")
        assert rc == 0, err
        row = next(line for line in out.splitlines() if line.startswith("fp32"))
        tables[backend] = row.split()[2:5]  # aAcc, mIoU, mAcc
    local, remote = tables.values()
    assert remote == local and float(local[1]) > 0
