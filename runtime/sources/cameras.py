"""Cameras and streams opened through OpenCV: V4L2, Jetson CSI, GStreamer pipelines, network streams."""
from __future__ import annotations

import glob
import os
import re
from typing import Callable

import cv2

from segrt.errors import SourceError
from segrt.runtime.sources.base import float_param, int_param
from segrt.runtime.sources.live import Capture, LiveSource


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (pip's opencv-python is not)."""
    m = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return bool(m) and m.group(1).upper() not in ("NO", "OFF")


def require_gstreamer(uri: str) -> None:
    if not opencv_has_gstreamer():
        raise SourceError(f"{uri} needs OpenCV with GStreamer, and this OpenCV {cv2.__version__} was built without it "
                          "(cv2.getBuildInformation() says GStreamer: NO)",
                          hint="on a Jetson use JetPack's OpenCV (apt python3-opencv) instead of pip's opencv-python")


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30.0,
                 flip: int = 0) -> str:
    """A GStreamer pipeline string for a Jetson CSI camera (nvarguscamerasrc) ending in a BGR appsink."""
    fps_frac = f"{int(round(fps * 1000))}/1000" if fps != int(fps) else f"{int(fps)}/1"
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps_frac}, "
            f"format=(string)NV12 ! nvvidconv flip-method={flip} ! "
            f"video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def cv_opener(uri: str, target: str | int, api: int, props: list[tuple[int, float]] = (),
               params: list[int] = ()) -> Callable[[], Capture]:
    def open_capture() -> Capture:
        cap = cv2.VideoCapture(target, api, list(params)) if params else cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {uri}", hint="check the device/URL exists and is not in use")
        for prop, value in props:
            cap.set(prop, value)
        return cap
    return open_capture


def v4l2_source(uri: str, device: str, q: dict[str, str]) -> LiveSource:
    if not os.path.exists(device):
        have = sorted(glob.glob("/dev/video*"))
        raise SourceError(f"no camera at {device}",
                          hint=("cameras here: " + ", ".join(have)) if have else "no /dev/video* devices on this machine")
    props: list[tuple[int, float]] = [(cv2.CAP_PROP_BUFFERSIZE, 1)]  # keep the driver queue short: fresh frames
    if "width" in q:
        props.append((cv2.CAP_PROP_FRAME_WIDTH, int_param(q, "width", 0, uri, 1)))
    if "height" in q:
        props.append((cv2.CAP_PROP_FRAME_HEIGHT, int_param(q, "height", 0, uri, 1)))
    if "fps" in q:
        props.append((cv2.CAP_PROP_FPS, float_param(q, "fps", 30.0, uri)))
    return LiveSource(uri, cv_opener(uri, device, cv2.CAP_V4L2, props),
                      reconnects=int_param(q, "reconnect", 5, uri))
