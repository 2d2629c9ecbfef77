"""The http:// sink in a real headless Chromium: the page shows the overlay and live stats, the
last frame written is the one shown, several viewers, a viewer leaving, tokens, and bounded memory
with a stalled viewer."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the http sink needs the [http] extra (aiohttp)")

from segrt.errors import SinkError  # noqa: E402
from segrt.runtime.pipeline import Pipeline  # noqa: E402
from segrt.runtime.sinks import TeeSink, open_sink  # noqa: E402
from segrt.runtime.sinks.http import HttpSink, http_address_from_uri  # noqa: E402
from segrt.tools.tiny_model import tiny_bundle  # noqa: E402

from _browser import Browser, chromium_path  # noqa: E402
from _runtime_helpers import frame_number, numbered_frame  # noqa: E402

needs_chromium = pytest.mark.skipif(chromium_path() is None,
                                    reason="no chromium (apt-get install chromium; .ci/run installs it)")


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_address_parsing_and_the_default_loopback_bind():
    assert http_address_from_uri("http://:8080") == ("127.0.0.1", 8080, None)
    assert http_address_from_uri("http://:8080", listen="0.0.0.0") == ("0.0.0.0", 8080, None)
    assert http_address_from_uri("http://0.0.0.0:9?token=abc") == ("0.0.0.0", 9, "abc")
    with pytest.raises(SinkError, match="bad \\?fps"):
        HttpSink("http://:0?fps=0")
    with pytest.raises(SinkError, match="no port"):
        http_address_from_uri("http://localhost")
    assert isinstance(open_sink("http://:0"), HttpSink)
    both = open_sink(["http://:0", "null://"])
    assert isinstance(both, TeeSink) and isinstance(both.sinks[0], HttpSink)


def test_a_wrong_token_gets_401_and_the_token_is_printed_once_redacted_elsewhere(capsys):
    sink = HttpSink("http://:0?token=s3cret", listen="0.0.0.0")
    assert sink.token_required and "s3cret" not in sink.uri and "s3cret" not in repr(sink)
    with sink:
        sink.write(numbered_frame(1))
        base = f"http://127.0.0.1:{sink.port}"
        assert _get(base + "/stats")[0] == 401
        assert _get(base + "/stats?token=wrong")[0] == 401
        assert _get(base + "/snapshot.jpg?token=nope")[0] == 401
        assert _get(base + "/stats?token=s3cret")[0] == 200
        assert _get(base + "/", {"X-Segrt-Token": "s3cret"})[0] == 200
    err = capsys.readouterr().err
    assert err.count("s3cret") == 1 and "live view at" in err
    generated = HttpSink("http://:0", listen="0.0.0.0")
    assert generated.token and len(generated.token) >= 16


def _feed(sink: HttpSink, stop: threading.Event, start: int = 0) -> threading.Thread:
    def run() -> None:
        i = start
        while not stop.is_set():
            sink.write(numbered_frame(i % 144, (320, 240)))
            i += 1
            time.sleep(0.01)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@needs_chromium
def test_the_browser_shows_the_last_frame_written_not_the_one_before():
    """Chromium shows the part before the last of a multipart stream; each part is sent twice."""
    async def check(sink: HttpSink) -> list[int]:
        shown = []
        async with Browser() as b:
            await b.goto(sink.url)
            await b.wait_for("document.getElementById('view').naturalWidth > 0")
            for n in (37, 38, 99):  # one frame at a time, then nothing more: it must be on screen
                sink.write(numbered_frame(n, (320, 240)))
                await asyncio.sleep(1.0)
                shown.append(frame_number(await b.screenshot("#view")))
        return shown

    with HttpSink("http://:0") as sink:
        sink.write(numbered_frame(5, (320, 240)))
        stop = threading.Event()
        feeder = _feed(sink, stop)  # frames flow until the page shows one
        try:
            async def first_frames():
                async with Browser() as b:
                    await b.goto(sink.url)
                    await b.wait_for("document.getElementById('view').naturalWidth > 0")
            asyncio.run(first_frames())
        finally:
            stop.set()
            feeder.join()
        assert asyncio.run(check(sink)) == [37, 38, 99]


@needs_chromium
def test_page_shows_the_overlay_legend_and_updating_stats_from_a_real_pipeline(tmp_path):
    bundle = tiny_bundle(tmp_path / "tiny", 48, 64, fused=True)
    http = HttpSink("http://:0")
    last_png = tmp_path / "last.png"
    p = Pipeline(bundle, "synthetic://?size=320x240&fps=30&frames=100000&live=1", [http, str(last_png)],
                 threads=1)
    consume, paused, raw = threading.Event(), threading.Event(), {}

    def iterate() -> None:
        for res in p:
            raw[res.index] = res.frame.copy()  # the camera frames, before the overlay
            if not consume.is_set():
                paused.set()  # stop pulling: the pipeline blocks after writing at most a few more frames
                consume.wait()
    t = threading.Thread(target=iterate, daemon=True)
    consume.set()
    t.start()

    async def look() -> tuple[np.ndarray, str, str, str, int]:
        async with Browser() as b:
            await b.goto(http.url)
            await b.wait_for("document.getElementById('view').naturalWidth > 0")
            await b.wait_for("document.getElementById('stats').textContent.includes('infer')")
            s1 = await b.eval("document.getElementById('stats').textContent")
            await asyncio.sleep(1.2)
            s2 = await b.eval("document.getElementById('stats').textContent")
            legend = await b.eval("document.getElementById('legend').textContent")
            consume.clear()
            await asyncio.get_running_loop().run_in_executor(None, paused.wait, 10)
            await asyncio.sleep(1.5)  # writes have stopped; the last one has reached the page
            shot = await b.screenshot("#view")
            return shot, s1, s2, legend, await b.eval("document.getElementById('view').naturalWidth")

    try:
        shot, s1, s2, legend, natural_w = asyncio.run(look())
        last = cv2.imread(str(last_png))
    finally:
        consume.set()
        p.stop()
        t.join(20)
    cv2.imwrite(str(tmp_path / "browser.png"), shot)
    assert natural_w == last.shape[1] and shot.shape == last.shape
    assert shot.std() > 10  # not blank
    diff_last = np.abs(shot.astype(np.int16) - last).mean()
    assert diff_last < 8, f"the page does not show the last rendered frame (mean |diff| {diff_last:.1f})"
    # The legend panel (top right) and the timing box (top left) are drawn over the camera frame.
    # At 240p the renderer's scale is 0.5: the legend's first row (there is one whenever a class
    # shows) is opaque at rows 5..17, 80+ px wide ending 5 px from the right edge. A looser box
    # let the camera image around a one-row legend decide the figure (it fell to 14.7 once).
    for box in ((slice(5, 18), slice(-85, -5)), (slice(0, 45), slice(0, 110))):
        nearest_raw = min(np.abs(shot[box].astype(np.int16) - f[box]).mean() for f in raw.values())
        assert nearest_raw > 15, "the page shows a camera frame, not the overlay"
    assert s1 != s2 and "e2e" in s2 and "fps" in s2  # the timings update
    assert all(name in legend for name in p.renderer.classes)
    assert http.frames_encoded > 0


@needs_chromium
def test_five_viewers_at_once_and_one_leaving_mid_stream():
    with HttpSink("http://:0") as sink:
        stop = threading.Event()
        feeder = _feed(sink, stop)

        async def check() -> tuple[int, int, int, int]:
            async with Browser() as b:
                await b.goto(sink.url)
                await b.wait_for("document.getElementById('view').naturalWidth > 0")
                await b.eval("for(let i=0;i<4;i++){const im=document.createElement('img');im.className='more';"
                             "im.src='/stream.mjpg?v='+i;document.body.appendChild(im);}")
                ok = await b.wait_for("[...document.images].every(i=>i.naturalWidth>0) && document.images.length")
                await asyncio.sleep(0.5)
                five = sink.viewers
                await b.eval("(()=>{const im=document.querySelector('img.more');im.src='data:,';im.remove();return 0})()")
                await asyncio.sleep(1.5)
                enc = sink.frames_encoded
                await asyncio.sleep(1.0)
                return ok, five, sink.viewers, sink.frames_encoded - enc

        try:
            n_imgs, five, after, encoded_after_leave = asyncio.run(check())
            # A raw client that leaves in the middle of a part.
            s = socket.create_connection(("127.0.0.1", sink.port))
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(200)
            s.close()
            time.sleep(0.5)
            status, jpeg = _get(sink.url.rstrip("/") + "/snapshot.jpg")
        finally:
            stop.set()
            feeder.join()
    assert n_imgs == 5 and five == 5 and after == 4
    assert encoded_after_leave > 0  # the others still get frames
    assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)


def test_rss_stays_flat_over_2000_frames_with_a_stalled_viewer():
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)  # ~big JPEGs
    with HttpSink("http://:0?fps=1000") as sink:  # no rate cap: encode as often as the encoder can
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", sink.port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        for _ in range(100):
            if sink.viewers:
                break
            time.sleep(0.05)
        rss = []
        for i in range(2000):
            sink.write(np.roll(frame, i, axis=1))
            if i in (300, 1999):
                rss.append(_rss_mb())
            time.sleep(0.001)
        encoded = sink.frames_encoded
        stalled.close()
    assert sink.frames_written == 2000 and sink.viewers == 0
    assert encoded > 100  # encoding went on while the viewer stalled
    assert rss[1] - rss[0] < 25, f"RSS grew {rss[1] - rss[0]:.0f} MiB over 1,700 frames with a stalled viewer"


def test_cli_http_sink_beside_a_video_file(tmp_path, capsys):
    from segrt.tools.cli import main
    from _runtime_helpers import count_video_frames
    bundle = tiny_bundle(tmp_path / "tiny", 48, 64, fused=True)
    out = tmp_path / "out.avi"
    rc = main(["run", str(bundle.path), "--source", "synthetic://?size=160x96&frames=6", "--sink", "http://:0",
               "--sink", str(out), "--max-frames", "6"])
    assert rc == 0 and count_video_frames(out) == 6
    assert "live view at http://127.0.0.1:" in capsys.readouterr().err
