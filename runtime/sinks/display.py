"""``display://``: an OpenCV window (needs a GUI build and a display)."""
from __future__ import annotations

import contextlib
import os
import re

import cv2
import numpy as np

from segrt.errors import SinkError
from segrt.runtime.sinks.base import Sink


def opencv_has_gui() -> bool:
    """Whether this OpenCV has a highgui backend (pip's opencv-python-headless has none)."""
    m = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return bool(m) and m.group(1).upper() not in ("NONE", "NO", "OFF")


class DisplaySink(Sink):
    """An OpenCV window. Press q or Esc in it to stop the run."""

    def __init__(self, uri: str, title: str = "segrt") -> None:
        super().__init__(uri)
        self.title = title

    def _open(self) -> None:
        if not opencv_has_gui():
            raise SinkError(f"display:// needs OpenCV with a GUI, and this OpenCV {cv2.__version__} has none "
                            "(a headless build: cv2.getBuildInformation() says GUI: NONE)",
                            hint="pip install opencv-python (not -headless), or write to a video/folder sink")
        if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError("display:// needs a display, and $DISPLAY is not set",
                            hint="run on the device's desktop, use ssh -X, or write to a video/folder sink")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise SinkError(f"display:// cannot open a window: {str(exc).strip().splitlines()[-1]}",
                            hint="write to a video or folder sink instead") from exc

    def _write(self, image: np.ndarray, name: str | None) -> None:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.stop_requested = True

    def _close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
