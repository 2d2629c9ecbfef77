"""Frame sinks by URI: ``display://``, a video file, a folder of images, an image file, ``null://``.

``open_sink(uri, fps, size)`` returns an unopened :class:`Sink` (a bad URI fails here);
``open()`` makes it ready, ``write(image)`` takes a BGR uint8 image, ``close()`` finalises.

A video is written to a temporary name beside the target and renamed on ``close()``,
so a reader never sees a half-written file and an interrupted run (Ctrl-C, SIGTERM,
an error) still leaves a playable video holding every frame written so far.
"""
from __future__ import annotations

import abc
import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from segrt.errors import SinkError
from segrt.runtime.fsutil import write_bytes_atomic
from segrt.runtime.lifecycle import Resource
from segrt.runtime.redact import redact

log = logging.getLogger("segrt.sink")

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
URI_HELP = "display://, a video file (.mp4 .avi .mkv .mov), a folder (out/ or folder://out), an image file, null://"


class Sink(Resource):
    """Consumes rendered frames. Context manager; ``frames_written`` counts what was accepted."""

    def __init__(self, uri: str) -> None:
        self.uri = redact(uri)  # the display form; a sink opens its own parsed target
        self._opened = False
        self.frames_written = 0
        self._closed = False
        #: set by interactive sinks (a key pressed in the window): the pipeline stops
        self.stop_requested = False

    def open(self) -> "Sink":
        self._closed = False
        return super().open()

    def close(self) -> None:
        super().close()
        self._closed = True

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        """Take one rendered frame; ``name`` is the source frame's name (an image's stem), if it has one."""
        if not self._opened:
            if self._closed:  # a late write must not start a new file beside the finished one
                raise SinkError(f"{self.uri}: written after close")
            self.open()
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SinkError(f"{self.uri}: expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        self._write(image, name)
        self.frames_written += 1

    def describe(self) -> str:
        return self.uri

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    @abc.abstractmethod
    def _write(self, image: np.ndarray, name: str | None) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class NullSink(Sink):
    """Discards frames (benchmarks, headless runs that only want the summary)."""

    def _write(self, image: np.ndarray, name: str | None) -> None:
        pass


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


class VideoSink(Sink):
    """A video file at the source's fps; written to a temporary name and renamed on close.

    The writer is created at the first frame, so its size is that of the rendered images.
    An existing file is refused unless ``overwrite`` (checked when the sink is made and
    again when it opens).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, overwrite: bool = False) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.overwrite = overwrite
        self._refuse_existing()
        ext = self.path.suffix.lower()
        if ext not in VIDEO_FOURCC:
            raise SinkError(f"{self.path}: unsupported video extension {ext!r}",
                            hint="use .mp4, .avi, .mkv or .mov")
        if not fps or fps <= 0:
            raise SinkError(f"{self.path}: fps must be positive, got {fps}")
        self.fps = float(fps)
        self.fourcc = VIDEO_FOURCC[ext]
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None

    def _refuse_existing(self) -> None:
        if not self.overwrite and (self.path.exists() or self.path.is_symlink()):
            raise SinkError(f"{self.path} already exists; not overwriting it",
                            hint="pass --overwrite to replace it, or choose another output name")

    def _open(self) -> None:
        self._refuse_existing()
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            # Same extension: FFmpeg picks the container from it.
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".part{self.path.suffix}",
                                       dir=parent)
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the video is a normal user file
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}",
                            hint="choose a writable output folder") from exc
        self._tmp = Path(tmp)

    def _write(self, image: np.ndarray, name: str | None) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            writer = cv2.VideoWriter(str(self._tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.fourcc),
                                     self.fps, (w, h))
            if not writer.isOpened():
                raise SinkError(f"cannot encode {self.path} with codec {self.fourcc} at {w}x{h}",
                                hint="this OpenCV build lacks the encoder; try .avi (MJPG)")
            self._writer, self._size = writer, (w, h)
        elif (w, h) != self._size:
            raise SinkError(f"{self.path}: frame size changed from {self._size[0]}x{self._size[1]} to {w}x{h}",
                            hint="a video needs frames of one size")
        self._writer.write(image)

    def _close(self) -> None:
        tmp, writer = self._tmp, self._writer
        self._writer, self._tmp = None, None
        if writer is not None:
            writer.release()  # writes the container index: the file becomes playable
        if tmp is None:
            return
        if self.frames_written == 0:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("%s: no frames were written; no file created", self.path)
            return
        try:
            os.replace(tmp, self.path)
        except OSError as exc:
            raise SinkError(f"cannot finalise {self.path}: {exc.strerror or exc}") from exc

    def describe(self) -> str:
        return f"{self.path} ({self.fourcc} @ {self.fps:g} fps)"


class ImageFolderSink(Sink):
    """One image per frame, each written atomically.

    A frame from an image source keeps its file's name (``street.jpg`` -> ``street.png``;
    a name met twice in one run gets ``_<n>`` appended); other frames are numbered
    ``frame_000000.png`` ... (or by ``pattern``).
    """

    def __init__(self, folder: str | os.PathLike[str], ext: str = ".png", pattern: str | None = None) -> None:
        super().__init__(str(folder))
        self.folder = Path(folder)
        self.ext = ext if ext.startswith(".") else "." + ext
        if self.ext.lower() not in IMAGE_EXTS:
            raise SinkError(f"{folder}: unsupported image format {self.ext!r}", hint="use png or jpg")
        self.pattern = pattern or ("frame_%06d" + self.ext)
        self._names_used: set[str] = set()

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output folder {self.folder}: {exc.strerror or exc}") from exc
        if not os.access(self.folder, os.W_OK):
            raise SinkError(f"output folder {self.folder} is not writable")

    def path_for(self, n: int) -> Path:
        return self.folder / (self.pattern % n)

    def name_for(self, name: str) -> Path:
        """The output path for a named frame, unique within this run."""
        candidate, n = name, 1
        while candidate in self._names_used:
            candidate, n = f"{name}_{n}", n + 1
        self._names_used.add(candidate)
        return self.folder / (candidate + self.ext)

    def _write(self, image: np.ndarray, name: str | None) -> None:
        target = self.path_for(self.frames_written) if name is None else self.name_for(name)
        ok, data = cv2.imencode(target.suffix, image)
        if not ok:
            raise SinkError(f"cannot encode {target}")
        write_bytes_atomic(target, data.tobytes())


class ImageFileSink(Sink):
    """A single image file, rewritten atomically with every frame (the last frame remains)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(str(path))
        self.path = Path(path)

    def _write(self, image: np.ndarray, name: str | None) -> None:
        ok, data = cv2.imencode(self.path.suffix, image)
        if not ok:
            raise SinkError(f"cannot encode {self.path}")
        write_bytes_atomic(self.path, data.tobytes())


def open_sink(uri: str | os.PathLike[str] | Sink | None, fps: float = 30.0,
              size: tuple[int, int] | None = None, *, overwrite: bool = False) -> Sink:
    """The sink for ``uri`` (unopened). ``fps`` is used by video sinks; ``size`` is informative
    (video writers take the size of the first frame). An existing video file is refused
    unless ``overwrite``."""
    if isinstance(uri, Sink):
        return uri
    if uri is None:
        return NullSink("null://")
    uri = os.fspath(uri).strip()
    if not uri:
        raise SinkError("empty sink URI", hint="pass " + URI_HELP)
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", uri, re.S)
    if m:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme == "null":
            return NullSink(uri)
        if scheme == "display":
            return DisplaySink(uri, title=rest or "segrt")
        if scheme == "folder":
            path, _, query = rest.partition("?")
            ext = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("ext", "png")
            return ImageFolderSink(path, ext)
        if scheme == "file":
            return open_sink(rest, fps, size, overwrite=overwrite)
        raise SinkError(f"unknown sink scheme {scheme}:// in {uri!r}", hint="pass " + URI_HELP)
    path = Path(uri).expanduser()
    ext = path.suffix.lower()
    if ext in VIDEO_FOURCC:
        return VideoSink(path, fps, overwrite=overwrite)
    if ext in IMAGE_EXTS:
        if "%" in path.name:  # printf-style sequence: out/frame_%05d.png
            return ImageFolderSink(path.parent, ext, pattern=path.name)
        return ImageFileSink(path)
    if uri.endswith(("/", os.sep)) or path.is_dir() or not ext:
        return ImageFolderSink(path)
    raise SinkError(f"cannot tell what sink {uri!r} is (extension {ext!r})", hint="pass " + URI_HELP)
