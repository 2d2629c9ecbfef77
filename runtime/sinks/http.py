"""``http://HOST:PORT``: a live view in any browser (MJPEG in a plain ``<img>``, legend, ``/stats``).

``?fps=N`` caps the view rate (default 30). Routes: ``/`` the page, ``/stream.mjpg`` the MJPEG stream (``multipart/x-mixed-replace``),
``/snapshot.jpg`` the latest frame, ``/stats`` per-stage timings as JSON.

The pipeline never waits for a viewer: ``write()`` copies the frame into one preallocated
buffer (only while someone watches, and only when the encoder thread is free; otherwise the
frame is skipped for the viewers) and returns. One encoder thread makes one JPEG per frame for
all viewers; each viewer's coroutine sends the latest JPEG when it is ready for more, so a
stalled viewer holds one reference to one JPEG, nothing more. Chromium displays the part
*before* the last one of a multipart stream, so every part is sent twice.

It binds 127.0.0.1 unless the URI names another host (``segrt run --listen 0.0.0.0``); a
non-loopback server requires a token (``?token=`` or the ``X-Segrt-Token`` header), taken from
the URI's ``?token=`` or generated, and printed once on stderr (``Sink.uri`` stays redacted).
"""
from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
import sys
import threading
import time
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from segrt.errors import SinkError
from segrt.runtime.sinks.base import Sink

log = logging.getLogger("segrt.sink")

BOUNDARY = "segrtframe"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
JPEG_QUALITY = 80
VIEW_FPS = 30.0


def http_address_from_uri(uri: str, listen: str | None = None) -> tuple[str, int, str | None]:
    """``(host, port, token)`` of ``http://HOST:PORT[?token=T]``; an empty host is ``listen`` or 127.0.0.1."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "http":
        raise SinkError(f"not an http sink URI: {uri!r}", hint="use http://:8080 or http://0.0.0.0:8080")
    try:
        port = parts.port
    except ValueError as exc:
        raise SinkError(f"bad port in {uri!r}", hint="use http://:8080") from exc
    if port is None:
        raise SinkError(f"{uri!r} has no port", hint="use http://:8080 (0 picks a free port)")
    token = parse_qs(parts.query).get("token", [None])[0]
    return parts.hostname or listen or "127.0.0.1", port, token


def view_fps_from_uri(uri: str) -> float:
    """The most frames a second the view is sent (``?fps=``, default 30): a browser shows no more,
    and encoding every frame of a fast pipeline would take CPU from it."""
    raw = parse_qs(urlsplit(uri).query).get("fps", [str(VIEW_FPS)])[0]
    try:
        fps = float(raw)
    except ValueError:
        fps = -1.0
    if not fps > 0:
        raise SinkError(f"bad ?fps={raw} in the http sink URI", hint="a positive number, e.g. ?fps=15")
    return fps


def page_html(legend: list[tuple[str, tuple[int, int, int]]], token: str | None) -> str:
    """The viewer page: the stream in an ``<img>``, the legend, and timings polled from ``/stats``."""
    q = f"?token={html.escape(token)}" if token else ""
    rows = "".join(f'<li><span style="background:rgb({r},{g},{b})"></span>{html.escape(name)}</li>'
                   for name, (b, g, r) in legend)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>segrt live</title><style>
body{{background:#111;color:#eee;font:14px sans-serif;margin:0;display:flex;align-items:flex-start;gap:12px;padding:8px}}
#view{{max-width:80vw;max-height:95vh}} ul{{list-style:none;padding:0}}
li span{{display:inline-block;width:12px;height:12px;margin-right:6px;border:1px solid #ccc}}
pre{{font-size:13px}}</style></head><body>
<img id="view" src="/stream.mjpg{q}" alt="segrt stream">
<div><h3>Legend</h3><ul id="legend">{rows}</ul><h3>Timings</h3><pre id="stats">waiting…</pre>
<a href="/snapshot.jpg{q}" style="color:#8cf">snapshot</a></div>
<script>
async function poll(){{try{{const r=await fetch('/stats{q}');const s=await r.json();
let t='frames '+s.frames+'  fps '+s.fps.toFixed(1)+'  viewers '+s.viewers+'\\n';
for(const[k,v]of Object.entries(s.stages_ms))t+=k.padEnd(9)+(v===null?'-':v.toFixed(1)+' ms')+'\\n';
document.getElementById('stats').textContent=t;}}catch(e){{}}setTimeout(poll,500);}}
poll();
</script></body></html>"""


class HttpSink(Sink):
    """A live view served over HTTP by aiohttp on its own thread and event loop."""

    def __init__(self, uri: str, *, listen: str | None = None) -> None:
        super().__init__(uri)
        self.host, self.port, token = http_address_from_uri(uri, listen)
        self.token_required = self.host not in LOOPBACK
        self.token = (token or secrets.token_urlsafe(16)) if self.token_required else None
        self._min_interval = 1.0 / view_fps_from_uri(uri)
        self._last_copy = 0.0
        self.legend: list[tuple[str, tuple[int, int, int]]] = []
        self._stats: Callable[[], dict] = lambda: {}
        self._lock = threading.Lock()
        self._frame_ready = threading.Condition(self._lock)
        self._buf: np.ndarray | None = None
        self._buf_full = False  # a copied frame waits for the encoder
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self.frames_encoded = 0
        self.viewers = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_jpeg: asyncio.Condition | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # ---------------------------------------------------------------- pipeline side
    def attach(self, legend: list[tuple[str, tuple[int, int, int]]], stats: Callable[[], dict]) -> None:
        self.legend, self._stats = list(legend), stats

    def _write(self, image: np.ndarray, name: str | None) -> None:
        if self.viewers == 0:
            return  # nobody watches: no copy, no encoding
        now = time.perf_counter()
        if now - self._last_copy < self._min_interval:
            return  # faster than the view rate: this frame is not shown
        with self._lock:
            if self._buf_full:
                return  # the encoder is still busy with an earlier frame: this one is skipped for viewers
            if self._buf is None or self._buf.shape != image.shape:
                self._buf = np.empty_like(image)
            np.copyto(self._buf, image)
            self._buf_full = True
            self._last_copy = now
            self._frame_ready.notify()

    def _encode_loop(self) -> None:
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        while True:
            with self._lock:
                while not self._buf_full and not self._stopping:
                    self._frame_ready.wait()
                if self._stopping:
                    return
                ok, data = cv2.imencode(".jpg", self._buf, params)
                self._buf_full = False
            if ok:
                self.frames_encoded += 1
                self._loop.call_soon_threadsafe(self._publish, data.tobytes())

    def _publish(self, jpeg: bytes) -> None:
        self._jpeg, self._jpeg_seq = jpeg, self._jpeg_seq + 1
        asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._new_jpeg:
            self._new_jpeg.notify_all()

    # ---------------------------------------------------------------- server side
    @property
    def url(self) -> str:
        q = f"?token={self.token}" if self.token else ""
        return f"http://{self.host}:{self.port}/{q}"

    def _open(self) -> None:
        self._stopping = False
        self._started.clear()
        server = threading.Thread(target=self._serve, name="segrt-http", daemon=True)
        encoder = threading.Thread(target=self._encode_loop, name="segrt-http-jpeg", daemon=True)
        self._threads = [server, encoder]
        server.start()
        if not self._started.wait(10) or self._start_error is not None:
            self._stopping = True
            raise SinkError(f"cannot serve {self.uri} on {self.host}:{self.port}: {self._start_error}",
                            hint="choose a free port, e.g. http://:8081") from self._start_error
        encoder.start()
        line = f"segrt: live view at {self.url}"
        if self.token:  # printed once, here only; logs and Sink.uri show it redacted
            line += "  (token required: ?token=... or header X-Segrt-Token)"
        print(line, file=sys.stderr, flush=True)

    def _serve(self) -> None:
        from aiohttp import web  # the [http] extra; imported only when an http sink opens

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._new_jpeg = asyncio.Condition()
        app = web.Application(middlewares=[self._auth_middleware(web)])
        app.router.add_get("/", self._page)
        app.router.add_get("/stream.mjpg", self._stream)
        app.router.add_get("/snapshot.jpg", self._snapshot)
        app.router.add_get("/stats", self._stats_json)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
        except (OSError, RuntimeError) as exc:
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def _auth_middleware(self, web):
        @web.middleware
        async def check_token(request, handler):
            if self.token_required:
                given = request.query.get("token") or request.headers.get("X-Segrt-Token")
                if given is None or not secrets.compare_digest(given, self.token):
                    return web.Response(status=401, text="401: a token is required (?token= or X-Segrt-Token)")
            return await handler(request)
        return check_token

    async def _page(self, request):
        from aiohttp import web
        return web.Response(text=page_html(self.legend, self.token), content_type="text/html")

    async def _stats_json(self, request):
        from aiohttp import web
        body = dict(self._stats())
        body.setdefault("frames", self.frames_written)
        body.setdefault("fps", 0.0)
        body.setdefault("stages_ms", {})
        body.update(viewers=self.viewers, frames_encoded=self.frames_encoded)
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def _next_jpeg(self, seen: int, timeout: float) -> int:
        async with self._new_jpeg:
            await asyncio.wait_for(self._new_jpeg.wait_for(lambda: self._jpeg_seq != seen or self._stopping),
                                   timeout)
        return self._jpeg_seq

    async def _snapshot(self, request):
        from aiohttp import web
        self.viewers += 1  # a snapshot asks for one fresh frame
        try:
            await self._next_jpeg(self._jpeg_seq, 5.0)
        except asyncio.TimeoutError:
            if self._jpeg is None:
                return web.Response(status=503, text="503: no frame yet")
        finally:
            self.viewers -= 1
        return web.Response(body=self._jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _stream(self, request):
        from aiohttp import web
        resp = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store", "Pragma": "no-cache"})
        await resp.prepare(request)
        self.viewers += 1
        seen = -1 if self._jpeg is not None else self._jpeg_seq
        try:
            while not self._stopping:
                try:
                    seen = await self._next_jpeg(seen, 1.0)
                except asyncio.TimeoutError:
                    continue
                jpeg = self._jpeg
                if jpeg is None or self._stopping:
                    continue
                part = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        .encode() + jpeg + b"\r\n")
                await resp.write(part + part)  # twice: Chromium shows the part before the last one
        except (ConnectionError, asyncio.CancelledError):
            pass  # the viewer left
        finally:
            self.viewers -= 1
        return resp

    def _close(self) -> None:
        self._stopping = True
        with self._lock:
            self._frame_ready.notify_all()
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        for t in self._threads:
            if t.is_alive():
                t.join(5)
        self._threads = []

    def describe(self) -> str:
        return f"http://{self.host}:{self.port}/" + (" (token required)" if self.token_required else "")
