"""Network video outputs through GStreamer: ``rtp://HOST:PORT`` and ``rtsp://@:PORT/name``.

Both encode H.264: with ``nvv4l2h264enc`` on a Jetson (the hardware encoder, fed NV12 in NVMM
memory by ``nvvidconv``), else ``x264enc`` tuned for latency. The pipelines are plain strings
built by the functions below; OpenCV's ``VideoWriter(..., cv2.CAP_GSTREAMER)`` runs them.

``rtp://`` sends RTP/H.264 over UDP to HOST:PORT (play it with an SDP file or
``gst-launch-1.0 udpsrc port=PORT caps=... ! rtph264depay ! ...``). ``rtsp://@:8554/name``
serves ``rtsp://<this machine>:8554/name`` from a built-in server (GStreamer's ``rtspserver``
through PyGObject): the encoder sends RTP to a loopback UDP port, and the server's media
factory re-packs it for each client. Without GStreamer in OpenCV (pip's wheels) or without
``GstRtspServer`` the sink fails on open with one line saying so.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from segrt.errors import SinkError
from segrt.runtime.sinks.base import Sink
from segrt.runtime.sources.cameras import opencv_has_gstreamer

log = logging.getLogger("segrt.sink")

RTP_CAPS = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"


def is_jetson() -> bool:
    """A Jetson (L4T) has the hardware H.264 encoder ``nvv4l2h264enc``."""
    return Path("/etc/nv_tegra_release").exists()


def h264_encoder(hardware: bool, bitrate_kbps: int, fps: float) -> str:
    """appsrc's BGR -> H.264 byte stream: the Jetson hardware encoder or x264."""
    gop = max(1, round(fps))  # a key frame a second: a viewer joining late waits at most that
    if hardware:
        return ("videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
                f"nvv4l2h264enc bitrate={bitrate_kbps * 1000} iframeinterval={gop} idrinterval={gop} "
                "insert-sps-pps=true maxperf-enable=true ! h264parse")
    return ("videoconvert ! video/x-raw,format=I420 ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max={gop} ! "
            "video/x-h264,profile=baseline ! h264parse")


def rtp_pipeline(host: str, port: int, *, fps: float = 30.0, bitrate_kbps: int = 4000,
                 hardware: bool | None = None) -> str:
    """The VideoWriter pipeline that sends RTP/H.264 over UDP to ``host:port``."""
    hw = is_jetson() if hardware is None else hardware
    return (f"appsrc is-live=true do-timestamp=true format=time ! {h264_encoder(hw, bitrate_kbps, fps)} ! "
            f"rtph264pay config-interval=1 pt=96 ! udpsink host={host} port={port} sync=false async=false")


def rtsp_factory_launch(udp_port: int) -> str:
    """The RTSP media factory's launch line: the loopback RTP feed re-packed for each client."""
    return (f'( udpsrc port={udp_port} caps="{RTP_CAPS}" ! rtpjitterbuffer latency=0 ! rtph264depay ! '
            "rtph264pay name=pay0 pt=96 config-interval=1 )")


def rtp_address_from_uri(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri)
    if not parts.hostname or parts.port is None:
        raise SinkError(f"{uri!r}: rtp:// needs a host and a port", hint="e.g. rtp://192.168.1.20:5000")
    return parts.hostname, parts.port


def rtsp_mount_from_uri(uri: str) -> tuple[int, str]:
    """``(port, /path)`` of ``rtsp://@:8554/name`` (the server side: no host, port 8554 by default)."""
    parts = urlsplit(uri)
    try:
        port = parts.port or 8554
    except ValueError as exc:
        raise SinkError(f"bad port in {uri!r}", hint="e.g. rtsp://@:8554/segrt") from exc
    path = parts.path if parts.path not in ("", "/") else "/segrt"
    return port, path


def _require_gstreamer(what: str) -> None:
    if not opencv_has_gstreamer():
        raise SinkError(f"{what} needs OpenCV built with GStreamer, and this OpenCV {cv2.__version__} has none",
                        hint="on a Jetson use JetPack's OpenCV (python3-opencv); pip's opencv-python lacks "
                             "GStreamer; or use the http:// sink")


class RtpSink(Sink):
    """``rtp://HOST:PORT``: H.264 over RTP/UDP through an OpenCV GStreamer VideoWriter."""

    def __init__(self, uri: str, fps: float = 30.0, *, hardware: bool | None = None) -> None:
        super().__init__(uri)
        self.host, self.port = rtp_address_from_uri(uri)
        self.fps, self.hardware = float(fps or 30.0), hardware
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def _open(self) -> None:
        _require_gstreamer(self.uri)

    def _target(self) -> tuple[str, int]:
        return self.host, self.port

    def _write(self, image: np.ndarray, name: str | None) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            pipeline = rtp_pipeline(*self._target(), fps=self.fps, hardware=self.hardware)
            writer = cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, self.fps, (w, h), True)
            if not writer.isOpened():
                raise SinkError(f"{self.uri}: GStreamer could not start: {pipeline}",
                                hint="check that the encoder exists (gst-inspect-1.0 x264enc / nvv4l2h264enc)")
            self._writer, self._size = writer, (w, h)
        elif (w, h) != self._size:
            raise SinkError(f"{self.uri}: frame size changed from {self._size} to {(w, h)}")
        self._writer.write(image)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class RtspSink(RtpSink):
    """``rtsp://@:PORT/name``: a built-in RTSP server (GstRtspServer) fed by a loopback RTP stream."""

    def __init__(self, uri: str, fps: float = 30.0, *, hardware: bool | None = None, udp_port: int = 5400) -> None:
        Sink.__init__(self, uri)
        self.rtsp_port, self.mount = rtsp_mount_from_uri(uri)
        self.host, self.port = "127.0.0.1", udp_port
        self.fps, self.hardware = float(fps or 30.0), hardware
        self._writer, self._size = None, None
        self._loop = None
        self._thread: threading.Thread | None = None

    def _open(self) -> None:
        _require_gstreamer(self.uri)
        try:
            import gi
            gi.require_version("Gst", "1.0")
            gi.require_version("GstRtspServer", "1.0")
            from gi.repository import GLib, Gst, GstRtspServer
        except (ImportError, ValueError) as exc:
            raise SinkError(f"{self.uri} needs GStreamer's RTSP server through PyGObject: {exc}",
                            hint="apt install python3-gi gir1.2-gst-rtsp-server-1.0; or use rtp:// or http://") from exc
        Gst.init(None)
        server = GstRtspServer.RTSPServer()
        server.set_service(str(self.rtsp_port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(rtsp_factory_launch(self.port))
        factory.set_shared(True)
        server.get_mount_points().add_factory(self.mount, factory)
        if server.attach(None) == 0:
            raise SinkError(f"{self.uri}: the RTSP server cannot listen on port {self.rtsp_port}",
                            hint="choose a free port, e.g. rtsp://@:8555/segrt")
        self._loop = GLib.MainLoop()
        self._thread = threading.Thread(target=self._loop.run, name="segrt-rtsp", daemon=True)
        self._thread.start()
        log.info("RTSP server: rtsp://<this machine>:%d%s", self.rtsp_port, self.mount)

    def _close(self) -> None:
        super()._close()
        if self._loop is not None:
            self._loop.quit()
            self._thread.join(5)
            self._loop = None

    def describe(self) -> str:
        return f"rtsp://<this machine>:{self.rtsp_port}{self.mount}"
