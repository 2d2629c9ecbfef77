"""Frame sources by URI: files, image folders (optionally with label masks), cameras, streams, synthetic.

``open_source(uri)`` parses the URI (jetson-inference's convention) and returns an
unopened :class:`Source`; a bad URI or a missing file fails here with a one-line
:class:`~segrt.errors.SourceError`. Opening happens on ``open()``, on ``with``, or
lazily on the first ``read()``/property access.

Two delivery disciplines:

* file-like sources (video file, image, folder, ``synthetic://``) deliver every frame,
  in order, and support ``seek(index)`` for random access (calibration samples frames
  evenly across a source with it);
* live sources (V4L2, RTSP, CSI, GStreamer, ``synthetic://?live=1``) run a grabber
  thread that keeps only the newest frame: a slow consumer sees the latest frame and
  the skipped ones are counted in ``dropped_frames``. A live source that stops
  delivering is reopened with exponential backoff, a bounded number of times.

Frames are fresh arrays owned by the caller (sources never recycle a frame buffer).
"""
from __future__ import annotations

import abc
import glob
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from segrt.errors import SourceError
from segrt.runtime.lifecycle import Resource
from segrt.runtime.synthetic import SYNTHETIC_CLASSES, SyntheticScene, resize_label, synthetic_config_from_query

log = logging.getLogger("segrt.source")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
MASK_SUFFIXES = ("_mask", "_label", "_labels", "_gt")
MASK_DIRS = ("masks", "labels", "annotations", "SegmentationClass")
IMAGE_DIRS = ("images", "JPEGImages", "imgs")
DEFAULT_IMAGE_FPS = 30.0  # nominal rate of image sources, so a video sink has one
URI_HELP = ("a video file, an image, a folder or glob of images, 0 or /dev/videoN or v4l2:///dev/videoN, "
            "rtsp://..., csi://N, gst://<pipeline>, synthetic://?size=WxH&fps=F&frames=N")

# A corrupt video frame makes cv2 read() fail once and move on; a run of failures this long
# means the rest of the file is missing (truncated), so stop and count what is left as corrupt.
MAX_CONSECUTIVE_BAD_FRAMES = 25


class Frame:
    """One captured frame.

    ``image`` is HxWx3 uint8 BGR, ``index`` the frame's position in its source
    (for a live source the capture sequence number, so gaps show dropped frames),
    ``timestamp`` the ``time.perf_counter()`` at capture (for end-to-end latency),
    ``label`` an HxW uint8 class-id mask when the source has ground truth, else None.

    A source may hand over the ground truth as ``label_fn``, a function that makes it: it then
    runs on the first read of ``label`` only (the synthetic scene draws its labels that way,
    and a pipeline that never scores a frame never pays for them).
    """

    __slots__ = ("image", "index", "timestamp", "_label", "_label_fn")

    def __init__(self, image: np.ndarray, index: int, timestamp: float, label: np.ndarray | None = None,
                 label_fn: Callable[[], np.ndarray] | None = None) -> None:
        self.image = image
        self.index = index
        self.timestamp = timestamp
        self._label = label
        self._label_fn = label_fn if label is None else None

    @property
    def label(self) -> np.ndarray | None:
        if self._label_fn is not None:
            self._label, self._label_fn = self._label_fn(), None
        return self._label

    @label.setter
    def label(self, value: np.ndarray | None) -> None:
        self._label, self._label_fn = value, None

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, image={self.image.shape}, label={'yes' if self.has_label else 'no'})"

    @property
    def has_label(self) -> bool:
        """Whether ground truth is available (without making it)."""
        return self._label is not None or self._label_fn is not None


# ------------------------------------------------------------------------------------------
# base class
# ------------------------------------------------------------------------------------------
class Source(Resource):
    """A stream of :class:`Frame`. Context manager and iterable; ``read()`` returns None at the end."""

    is_live: bool = False
    supports_seek: bool = False

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._opened = False
        self._size: tuple[int, int] = (0, 0)
        self._fps: float = 0.0
        self._frame_count: int | None = None
        self.corrupt_frames = 0
        self.dropped_frames = 0
        self.has_labels = False
        # Names of the label ids, when the source knows them (None: the ids are the model's).
        self.label_classes: tuple[str, ...] | None = None

    # -- life cycle: open/close/with come from Resource ----------------------------------
    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    # -- frames ------------------------------------------------------------------------
    def read(self) -> Frame | None:
        """The next frame, or None when a finite source is exhausted."""
        self.open()
        return self._read()

    def seek(self, index: int) -> None:
        """Make the next ``read()`` return frame ``index`` (file-like sources only)."""
        raise SourceError(f"source {self.uri} does not support seeking",
                          hint="seek works on video files, image folders and synthetic://")

    # -- properties (open lazily so `open_source(u).size` just works) --------------------
    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        self.open()
        return self._size

    @property
    def fps(self) -> float:
        self.open()
        return self._fps

    @property
    def frame_count(self) -> int | None:
        """Number of frames for finite sources, None for live/unbounded ones."""
        self.open()
        return self._frame_count

    def describe(self) -> str:
        w, h = self._size
        kind = "live" if self.is_live else "file"
        n = f", {self._frame_count} frames" if self._frame_count is not None else ""
        return f"{self.uri} ({kind}, {w}x{h} @ {self._fps:g} fps{n})"

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _read(self) -> Frame | None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def _check_index(src: Source, index: int) -> int:
    n = src.frame_count
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0 or (n is not None and index >= n):
        raise SourceError(f"seek({index!r}) is outside {src.uri} (frames 0..{(n or 0) - 1})")
    return int(index)


# ------------------------------------------------------------------------------------------
# video file
# ------------------------------------------------------------------------------------------
class VideoFileSource(Source):
    """A video file read with OpenCV's FFmpeg backend. Every frame is delivered; corrupt ones are skipped and counted."""

    supports_seek = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0  # index of the frame the next successful read returns

    def _open(self) -> None:
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot decode video {self.path}",
                              hint="the file is not a video OpenCV's FFmpeg can read, or it is truncated "
                                   "(an mp4 cut short loses its index): re-record or remux it")
        self._cap = cap
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._size = (w, h)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else DEFAULT_IMAGE_FPS
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._frame_count = n if n > 0 else None
        self._pos = 0

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _read(self) -> Frame | None:
        cap = self._cap
        bad = 0
        while True:
            n = self._frame_count
            if n is not None and self._pos >= n:
                return None
            ok, img = cap.read()
            t = time.perf_counter()
            if ok and img is not None:
                frame = Frame(img, self._pos, t)
                self._pos += 1
                return frame
            if n is None:  # unknown length: a failed read is the end
                return None
            # The container announced more frames: this one is corrupt (the decoder skips it).
            bad += 1
            self.corrupt_frames += 1
            self._pos += 1
            if bad >= MAX_CONSECUTIVE_BAD_FRAMES:
                missing = max(0, n - self._pos)
                self.corrupt_frames += missing
                log.warning("%s: %d frames unreadable from frame %d on (truncated file?); stopping",
                            self.path, bad + missing, self._pos - bad)
                self._pos = n
                return None
            if bad == 1:
                log.warning("%s: frame %d is corrupt; skipped", self.path, self._pos - 1)

    def seek(self, index: int) -> None:
        index = _check_index(self, index)
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._pos = index


# ------------------------------------------------------------------------------------------
# images and folders
# ------------------------------------------------------------------------------------------
def _read_image(path: Path) -> np.ndarray | None:
    # imdecode(fromfile) handles non-ASCII paths that cv2.imread mishandles on some platforms
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def read_label_mask(path: Path) -> np.ndarray:
    """A class-id mask from a grayscale or palette PNG (palette indices are the class ids)."""
    arr: np.ndarray | None = None
    try:  # Pillow keeps palette indices (VOC-style masks); OpenCV would expand them to colours
        from PIL import Image
    except ImportError:
        Image = None  # type: ignore[assignment]
    if Image is not None:
        try:
            with Image.open(path) as im:
                if im.mode in ("P", "L", "I;16", "I"):
                    arr = np.asarray(im)
        except OSError as exc:
            raise SourceError(f"label mask {path} is unreadable ({exc})") from exc
    if arr is None:
        data = np.fromfile(str(path), dtype=np.uint8)
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if arr is None:
            raise SourceError(f"label mask {path} is unreadable", hint="masks must be PNG files of class ids")
        if arr.ndim == 3:
            if arr.shape[2] >= 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
                arr = arr[..., 0]
            else:
                raise SourceError(f"label mask {path} is a colour image",
                                  hint="masks must hold class ids: a grayscale or palette PNG")
    if arr.dtype != np.uint8:
        if arr.max(initial=0) > 255:
            raise SourceError(f"label mask {path} has class ids above 255")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


class ImageListSource(Source):
    """A single image, a folder (sorted) or a glob of images; optionally paired with label masks."""

    supports_seek = True

    def __init__(self, uri: str, images: list[Path], labels: list[Path] | None = None,
                 fps: float = DEFAULT_IMAGE_FPS) -> None:
        super().__init__(uri)
        if not images:
            raise SourceError(f"no images in {uri}", hint="supported: " + ", ".join(IMAGE_EXTS))
        self.images = images
        self.labels = labels
        self.has_labels = labels is not None
        self._nominal_fps = fps
        self._pos = 0

    def _open(self) -> None:
        first = None
        for p in self.images[: MAX_CONSECUTIVE_BAD_FRAMES]:
            first = _read_image(p)
            if first is not None:
                break
        if first is None:
            raise SourceError(f"cannot decode {self.images[0]}" if len(self.images) == 1
                              else f"cannot decode the first images of {self.uri}",
                              hint="check the files are images (png, jpg, ...)")
        self._size = (first.shape[1], first.shape[0])
        self._fps = self._nominal_fps
        self._frame_count = len(self.images)
        self._pos = 0

    def _close(self) -> None:
        pass

    def _read(self) -> Frame | None:
        while self._pos < len(self.images):
            i = self._pos
            self._pos += 1
            img = _read_image(self.images[i])
            if img is None:
                self.corrupt_frames += 1
                log.warning("%s: cannot decode; skipped", self.images[i])
                continue
            label = None
            if self.labels is not None:
                label = read_label_mask(self.labels[i])
                if label.shape != img.shape[:2]:
                    raise SourceError(f"label {self.labels[i]} is {label.shape[1]}x{label.shape[0]} but its image "
                                      f"{self.images[i].name} is {img.shape[1]}x{img.shape[0]}",
                                      hint="masks must have the size of their images")
            return Frame(img, i, time.perf_counter(), label)
        return None

    def seek(self, index: int) -> None:
        self._pos = _check_index(self, index)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _mask_stem(stem: str) -> str | None:
    for suf in MASK_SUFFIXES:
        if stem.endswith(suf) and len(stem) > len(suf):
            return stem[: -len(suf)]
    return None


def _index_by_stem(files: list[Path]) -> dict[str, Path]:
    return {p.stem: p for p in files}


def _pair(uri: str, images: list[Path], masks: dict[str, Path], where: str) -> list[Path]:
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise SourceError(f"{uri}: {len(missing)} of {len(images)} images have no mask in {where} "
                          f"(first: {missing[0]})", hint="every image needs a mask with the same stem")
    return [masks[p.stem] for p in images]


def folder_source(path: Path, uri: str) -> ImageListSource:
    """A folder of images, discovering image/mask pairs.

    Layouts with labels: ``<dir>/images`` + ``<dir>/masks`` (or labels, annotations,
    SegmentationClass) with the same stems; ``<dir>/images`` given directly with a sibling
    masks folder; or ``x.png`` + ``x_mask.png`` side by side.
    """
    sub_images = next((path / d for d in IMAGE_DIRS if (path / d).is_dir()), None)
    if sub_images is not None:  # <dir>/images + <dir>/masks
        image_dir, mask_base = sub_images, path
    elif path.name in IMAGE_DIRS:  # <dir>/images given directly: look for a sibling masks folder
        image_dir, mask_base = path, path.parent
    else:
        image_dir, mask_base = path, None
    mask_dir = None if mask_base is None else next(
        (mask_base / d for d in MASK_DIRS if (mask_base / d).is_dir()), None)
    files = sorted(p for p in image_dir.iterdir() if p.is_file() and _is_image(p))
    if mask_dir is not None:
        masks = _index_by_stem(sorted(p for p in mask_dir.iterdir() if p.is_file() and _is_image(p)))
        return ImageListSource(uri, files, _pair(uri, files, masks, str(mask_dir)))
    stems = {p.stem for p in files}
    suffixed = {base: p for p in files if (base := _mask_stem(p.stem)) is not None and base in stems}
    if suffixed:  # x.png + x_mask.png side by side
        images = [p for p in files if p not in set(suffixed.values())]
        return ImageListSource(uri, images, _pair(uri, images, suffixed, "the same folder (x_mask.png)"))
    return ImageListSource(uri, files)


# ------------------------------------------------------------------------------------------
# synthetic (wraps segrt.runtime.synthetic)
# ------------------------------------------------------------------------------------------
def _synthetic_config(uri: str, query: str) -> Any:
    from segrt.errors import ConfigError
    try:
        return synthetic_config_from_query(query)
    except ConfigError as exc:  # a bad URI is a source error: one line, names the URI
        raise SourceError(f"{uri}: {exc.message}", hint=exc.hint) from exc


class SyntheticSource(Source):
    """The generated scene of :mod:`segrt.runtime.synthetic`, with ground-truth labels and random access."""

    supports_seek = True

    def __init__(self, uri: str, query: str) -> None:
        super().__init__(uri)
        self.config = _synthetic_config(uri, query)
        self.has_labels = True
        self.label_classes = SYNTHETIC_CLASSES
        self._scene = None
        self._pos = 0

    def _open(self) -> None:
        self._scene = SyntheticScene(self.config)
        self._size = (int(self.config.width), int(self.config.height))
        self._fps = float(self.config.fps)
        frames = getattr(self.config, "frames", None)
        self._frame_count = int(frames) if frames else None
        self._pos = 0

    def _close(self) -> None:
        self._scene = None

    def _read(self) -> Frame | None:
        if self._frame_count is not None and self._pos >= self._frame_count:
            return None
        w, h = self._size
        img = np.empty((h, w, 3), np.uint8)
        scene, index = self._scene, self._pos
        scene.render_into(index, img)  # ground truth only if someone asks for it

        def label() -> np.ndarray:
            drawn = scene.label_at(index)
            return drawn if drawn.shape == (h, w) else resize_label(drawn, w, h)

        frame = Frame(img, index, time.perf_counter(), label_fn=label)
        self._pos += 1
        return frame

    def seek(self, index: int) -> None:
        self._pos = _check_index(self, index)


# ------------------------------------------------------------------------------------------
# live sources: a grabber thread keeps only the newest frame
# ------------------------------------------------------------------------------------------
class Capture(Protocol):
    """The part of cv2.VideoCapture a live source needs."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...

    def get(self, prop: int) -> float: ...


class LiveSource(Source):
    """A camera or stream. A grabber thread reads continuously and keeps only the newest frame.

    ``opener()`` returns an opened :class:`Capture` or raises :class:`SourceError`. When the
    capture stops delivering (unplugged camera, dropped stream), it is reopened after
    ``backoff_s * 2**k`` seconds (capped at 5 s) up to ``reconnects`` consecutive times; past
    that, ``read()`` raises SourceError. A successful reopen resets the count.
    """

    is_live = True

    def __init__(self, uri: str, opener: Callable[[], Capture], *, reconnects: int = 5,
                 backoff_s: float = 0.25, read_timeout_s: float = 10.0,
                 label_of: Callable[[int], np.ndarray | None] | None = None) -> None:
        super().__init__(uri)
        self._opener = opener
        self.max_reconnects = reconnects
        self.backoff_s = backoff_s
        self.read_timeout_s = read_timeout_s
        self.reconnects = 0  # successful reopenings so far
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float] | None = None
        self._seq = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap: Capture | None = None

    def _open(self) -> None:
        self._cap = self._opener()
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else DEFAULT_IMAGE_FPS
        self._frame_count = None
        # Some backends report 0x0 until the first frame: take the size from it.
        ok, img = self._cap.read()
        if not ok or img is None:
            self._cap.release()
            self._cap = None
            raise SourceError(f"{self.uri} opened but delivers no frames",
                              hint="check the camera is not in use by another program and its mode is supported")
        self._size = (img.shape[1], img.shape[0])  # the frame is the truth; w/h only log a mismatch
        if (w, h) != self._size and w and h:
            log.info("%s: reports %dx%d, delivers %dx%d", self.uri, w, h, *self._size)
        self._stop.clear()
        self._error = None
        self._latest = (img, 0, time.perf_counter())
        self._seq = 1
        self._thread = threading.Thread(target=self._grab_loop, name=f"segrt-grab:{self.uri}", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._latest = None

    def _grab_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            ok, img = self._cap.read() if self._cap is not None else (False, None)
            if ok and img is not None:
                failures = 0
                t = time.perf_counter()
                with self._cond:
                    if self._latest is not None:
                        self.dropped_frames += 1  # the consumer never saw the previous one
                    self._latest = (img, self._seq, t)
                    self._seq += 1
                    self._cond.notify_all()
                continue
            # The stream stopped: reopen with backoff, a bounded number of consecutive times.
            if self._stop.is_set():
                return
            if failures >= self.max_reconnects:
                err = SourceError(f"{self.uri} disconnected and could not be reopened "
                                  f"({self.max_reconnects} attempts)",
                                  hint="check the cable/network and that no other program holds the device")
                with self._cond:
                    self._error = err
                    self._cond.notify_all()
                return
            delay = min(self.backoff_s * (2 ** failures), 5.0)
            failures += 1
            log.warning("%s: no frame; reopening in %.2f s (attempt %d/%d)", self.uri, delay, failures,
                        self.max_reconnects)
            if self._stop.wait(delay):
                return
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            try:
                self._cap = self._opener()
                self.reconnects += 1
                log.info("%s: reopened", self.uri)
            except SourceError as exc:
                log.warning("%s: reopen failed: %s", self.uri, exc)
            except Exception as exc:  # a backend error while reopening must not kill the grabber silently
                log.warning("%s: reopen failed: %s", self.uri, exc)

    def _read(self) -> Frame | None:
        deadline = time.monotonic() + self.read_timeout_s
        with self._cond:
            while self._latest is None:
                if self._error is not None:
                    raise self._error
                if self._stop.is_set():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(f"{self.uri}: no frame for {self.read_timeout_s:g} s",
                                      hint="the camera or stream stalled")
                self._cond.wait(remaining)
            img, seq, t = self._latest
            self._latest = None
        return Frame(img, seq, t)


class PacedSyntheticCapture:
    """The synthetic scene as a camera: frames appear in real time at the scene's fps.

    With a finite ``frames`` it "disconnects" (read fails) after that many frames, which
    is how the live reconnect logic is exercised without hardware.
    """

    def __init__(self, config: Any) -> None:
        self._scene = SyntheticScene(config)
        self._config = config
        self._period = 1.0 / float(config.fps)
        self._i = 0
        self._t0 = time.perf_counter()
        self._open = True

    def read(self) -> tuple[bool, np.ndarray | None]:
        n = getattr(self._config, "frames", None)
        if not self._open or (n and self._i >= n):
            return False, None
        due = self._t0 + self._i * self._period
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        img = np.empty((int(self._config.height), int(self._config.width), 3), np.uint8)
        self._scene.render_into(self._i, img)  # a camera has no ground truth
        self._i += 1
        return True, img

    def release(self) -> None:
        self._open = False

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: float(self._config.width),
                cv2.CAP_PROP_FRAME_HEIGHT: float(self._config.height),
                cv2.CAP_PROP_FPS: float(self._config.fps)}.get(prop, 0.0)


# ------------------------------------------------------------------------------------------
# cameras and streams
# ------------------------------------------------------------------------------------------
def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (pip's opencv-python is not)."""
    m = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return bool(m) and m.group(1).upper() not in ("NO", "OFF")


def _require_gstreamer(uri: str) -> None:
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


def _int_param(q: dict[str, str], key: str, default: int, uri: str, lo: int = 0) -> int:
    v = q.get(key)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise SourceError(f"{uri}: {key}={v!r} is not an integer") from None
    if n < lo:
        raise SourceError(f"{uri}: {key}={n} must be >= {lo}")
    return n


def _float_param(q: dict[str, str], key: str, default: float, uri: str) -> float:
    v = q.get(key)
    if v is None:
        return default
    try:
        x = float(v)
    except ValueError:
        raise SourceError(f"{uri}: {key}={v!r} is not a number") from None
    if not x > 0:
        raise SourceError(f"{uri}: {key}={x} must be positive")
    return x


def _cv_opener(uri: str, target: str | int, api: int, props: list[tuple[int, float]] = (),
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


def _v4l2_source(uri: str, device: str, q: dict[str, str]) -> LiveSource:
    if not os.path.exists(device):
        have = sorted(glob.glob("/dev/video*"))
        raise SourceError(f"no camera at {device}",
                          hint=("cameras here: " + ", ".join(have)) if have else "no /dev/video* devices on this machine")
    props: list[tuple[int, float]] = [(cv2.CAP_PROP_BUFFERSIZE, 1)]  # keep the driver queue short: fresh frames
    if "width" in q:
        props.append((cv2.CAP_PROP_FRAME_WIDTH, _int_param(q, "width", 0, uri, 1)))
    if "height" in q:
        props.append((cv2.CAP_PROP_FRAME_HEIGHT, _int_param(q, "height", 0, uri, 1)))
    if "fps" in q:
        props.append((cv2.CAP_PROP_FPS, _float_param(q, "fps", 30.0, uri)))
    return LiveSource(uri, _cv_opener(uri, device, cv2.CAP_V4L2, props),
                      reconnects=_int_param(q, "reconnect", 5, uri))


def open_source(uri: str | int | os.PathLike[str] | Source) -> Source:
    """The source for ``uri`` (unopened). Raises SourceError for a bad URI or a missing file/device."""
    if isinstance(uri, Source):
        return uri
    if isinstance(uri, int) and not isinstance(uri, bool):
        return _v4l2_source(str(uri), f"/dev/video{uri}", {})
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise SourceError(f"empty or invalid source {uri!r}", hint="pass " + URI_HELP)
    uri = uri.strip()
    if re.fullmatch(r"\d+", uri):
        return _v4l2_source(uri, f"/dev/video{uri}", {})
    if re.fullmatch(r"/dev/video\d+", uri):
        return _v4l2_source(uri, uri, {})

    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", uri, re.S)
    if m:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme == "synthetic":
            query = rest.split("?", 1)[1] if "?" in rest else rest if "=" in rest else ""
            pairs = parse_qsl(query, keep_blank_values=True)
            q = dict(pairs)
            live = q.get("live", "0").lower() in ("1", "true", "yes")
            reconnects = _int_param(q, "reconnect", 5, uri)
            inner = "&".join(f"{k}={v}" for k, v in pairs if k not in ("live", "reconnect"))
            if not live:
                return SyntheticSource(uri, inner)
            config = _synthetic_config(uri, inner)
            return LiveSource(uri, lambda: PacedSyntheticCapture(config), reconnects=reconnects,
                              backoff_s=0.05)
        if scheme == "v4l2":
            parts = urlsplit(uri)
            device = parts.path or "/dev/video0"
            if not re.fullmatch(r"/dev/video\d+", device):
                raise SourceError(f"{uri}: expected v4l2:///dev/videoN")
            return _v4l2_source(uri, device, dict(parse_qsl(parts.query)))
        if scheme == "csi":
            _require_gstreamer(uri)
            parts = urlsplit(uri)
            q = dict(parse_qsl(parts.query))
            sensor = parts.netloc or parts.path.strip("/") or "0"
            if not sensor.isdigit():
                raise SourceError(f"{uri}: expected csi://N with a sensor number")
            flip = _int_param(q, "flip", 0, uri)
            if flip > 7:
                raise SourceError(f"{uri}: flip={flip} must be 0..7 (nvvidconv flip-method)")
            pipe = csi_pipeline(int(sensor), _int_param(q, "width", 1280, uri, 1), _int_param(q, "height", 720, uri, 1),
                                _float_param(q, "fps", 30.0, uri), flip)
            return LiveSource(uri, _cv_opener(uri, pipe, cv2.CAP_GSTREAMER), reconnects=_int_param(q, "reconnect", 5, uri))
        if scheme == "gst":
            _require_gstreamer(uri)
            if not rest.strip():
                raise SourceError(f"{uri}: empty GStreamer pipeline", hint="gst://videotestsrc ! videoconvert ! appsink")
            pipe = rest if "appsink" in rest else rest + " ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
            return LiveSource(uri, _cv_opener(uri, pipe, cv2.CAP_GSTREAMER))
        if scheme in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
            return LiveSource(uri, _cv_opener(uri, uri, cv2.CAP_FFMPEG, [(cv2.CAP_PROP_BUFFERSIZE, 1)], params))
        if scheme == "file":
            return open_source(urlsplit(uri).path)
        raise SourceError(f"unknown source scheme {scheme}:// in {uri!r}", hint="pass " + URI_HELP)

    # A path: glob, folder, image or video.
    if any(ch in uri for ch in "*?[") and not os.path.exists(uri):
        files = sorted(Path(p) for p in glob.glob(uri, recursive=True))
        images = [p for p in files if p.is_file() and _is_image(p)]
        if not images:
            raise SourceError(f"the pattern {uri!r} matches no images", hint="check the glob, e.g. 'frames/*.png'")
        return ImageListSource(uri, images)
    path = Path(uri).expanduser()
    if path.is_dir():
        return folder_source(path, uri)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTS:
            return ImageListSource(uri, [path])
        return VideoFileSource(path)
    raise SourceError(f"source {uri!r}: no such file or folder", hint="pass " + URI_HELP)
