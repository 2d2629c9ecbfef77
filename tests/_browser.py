"""A real headless Chromium driven over the DevTools protocol (aiohttp's websocket client)."""
from __future__ import annotations

import asyncio
import base64
import re
import shutil
import tempfile

import cv2
import numpy as np


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    """``async with Browser() as b: await b.goto(url); await b.eval(js); await b.screenshot()``."""

    def __init__(self, width: int = 1000, height: int = 700) -> None:
        self.size = (width, height)
        self._id = 0

    async def __aenter__(self) -> "Browser":
        import aiohttp
        self._profile = tempfile.TemporaryDirectory(prefix="segrt-chromium-")
        w, h = self.size
        self.proc = await asyncio.create_subprocess_exec(
            chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}", f"--window-size={w},{h}",
            "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        port = None
        while port is None:
            line = (await asyncio.wait_for(self.proc.stderr.readline(), 30)).decode(errors="replace")
            if not line:
                raise RuntimeError("chromium exited before its DevTools endpoint was up")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = m and int(m.group(1))
        asyncio.ensure_future(self._drain_stderr())
        self._http = aiohttp.ClientSession()
        for _ in range(50):
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in await r.json() if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self.ws = await self._http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)
        return self

    async def _drain_stderr(self) -> None:
        while await self.proc.stderr.readline():
            pass

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self._http.close()
        self.proc.terminate()
        await self.proc.wait()
        self._profile.cleanup()

    async def send(self, method: str, **params) -> dict:
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def eval(self, expression: str):
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return r["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0):
        """Poll a JS expression until it is truthy; its value."""
        for _ in range(int(timeout / 0.1)):
            v = await self.eval(expression)
            if v:
                return v
            await asyncio.sleep(0.1)
        raise TimeoutError(f"never true in the page: {expression}")

    async def screenshot(self, selector: str | None = None) -> np.ndarray:
        """A BGR screenshot of the page, or of one element's box."""
        params = {"format": "png"}
        if selector:
            x, y, w, h = await self.eval(
                f"(()=>{{const r=document.querySelector('{selector}').getBoundingClientRect();"
                "return [r.x,r.y,r.width,r.height];})()")
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
        data = base64.b64decode((await self.send("Page.captureScreenshot", **params))["data"])
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
