"""Preprocessing: only what the graph does not fuse.

A fused graph (the default) takes the camera's uint8 BGR frame at model size, so the
CPU only resizes (stretch or letterbox) into a preallocated NHWC buffer. An unfused
graph takes float NCHW normalised in the model's colour order; then the CPU also
normalises, with mean/std/colour order from the manifest's :class:`PreprocessSpec`.

Nothing is allocated per frame: ``cv2.resize(dst=...)`` writes into the buffer (into the
letterbox's content rectangle directly), and normalisation runs as in-place numpy
ufuncs with ``out=``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segrt.errors import ConfigError
from segrt.runtime.manifest import Manifest


@dataclass(frozen=True)
class Letterbox:
    """How a frame maps into the model input, so outputs can be mapped back.

    model_x = frame_x * scale_x + pad_x (likewise y). ``stretch`` has pad 0 and possibly
    different scales; ``letterbox`` one scale and the padding split evenly.
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    model_size: tuple[int, int]  # (w, h)
    frame_size: tuple[int, int]  # (w, h)
    content_size: tuple[int, int]  # (w, h) of the resized frame inside the model input

    @property
    def scale(self) -> float:
        """The (isotropic) scale; for a stretch the smaller of the two."""
        return min(self.scale_x, self.scale_y)

    @property
    def content(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the frame's pixels inside the model input."""
        return (self.pad_x, self.pad_y, self.pad_x + self.content_size[0], self.pad_y + self.content_size[1])

    def boxes_to_frame(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map (K,4) xyxy boxes from model-input pixels to frame pixels (clipped to the frame by default)."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = (b[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (b[:, 1::2] - self.pad_y) / self.scale_y
        if clip:
            out[:, 0::2] = np.clip(out[:, 0::2], 0, self.frame_size[0])
            out[:, 1::2] = np.clip(out[:, 1::2], 0, self.frame_size[1])
        return out


def letterbox_for(frame_size: tuple[int, int], model_size: tuple[int, int], policy: str) -> Letterbox:
    """The mapping of a ``frame_size`` (w,h) frame into a ``model_size`` (w,h) input under ``policy``."""
    fw, fh = frame_size
    mw, mh = model_size
    if fw <= 0 or fh <= 0:
        raise ConfigError(f"frame size {fw}x{fh} is empty")
    if policy == "stretch":
        return Letterbox(mw / fw, mh / fh, 0, 0, (mw, mh), (fw, fh), (mw, mh))
    if policy != "letterbox":
        raise ConfigError(f"unknown resize policy {policy!r}", hint="use stretch or letterbox")
    s = min(mw / fw, mh / fh)
    cw, ch = max(1, min(mw, int(round(fw * s)))), max(1, min(mh, int(round(fh * s))))
    px, py = (mw - cw) // 2, (mh - ch) // 2
    return Letterbox(cw / fw, ch / fh, px, py, (mw, mh), (fw, fh), (cw, ch))


class Preprocessor:
    """Frame (HxWx3 uint8 BGR, any size) -> the model's input tensor.

    ``pre(frame)`` returns ``(tensor, letterbox)``. The tensor is a preallocated array in
    the input's shape and dtype, **reused by every call**: copy it if you keep it past the
    next call. One Preprocessor per thread.
    """

    def __init__(self, manifest: Manifest) -> None:
        inp, spec = manifest.input, manifest.preprocess
        if inp.channels != 3:
            raise ConfigError(f"input has {inp.channels} channels; the runtime feeds 3-channel frames")
        self.manifest = manifest
        self.fused = inp.fused
        self.model_size = (inp.width, inp.height)
        self.policy = spec.resize
        self.pad_value = int(spec.pad_value)
        self.tensor = np.zeros(inp.shape, dtype=np.dtype(inp.dtype))
        self._letterbox: Letterbox | None = None
        nhwc = inp.layout == "NHWC"
        if self.fused or (nhwc and inp.dtype == "uint8"):
            # The graph takes uint8 frames: resize straight into the input tensor.
            self._resized = self.tensor[0] if nhwc else np.zeros((inp.height, inp.width, 3), np.uint8)
            self._normalise = False
        else:
            self._resized = np.zeros((inp.height, inp.width, 3), np.uint8)
            self._normalise = True
            # Per output channel: which BGR channel feeds it, mean and 1/std in the model's order.
            order = (2, 1, 0) if spec.color_order == "RGB" else (0, 1, 2)
            self._src_channel = order
            self._mean = tuple(np.float32(m) for m in spec.mean)
            self._inv_std = tuple(np.float32(1.0 / s) for s in spec.std)
            # float16 inputs are normalised in float32 then cast (one extra copy).
            self._work = (self.tensor if self.tensor.dtype == np.float32
                          else np.zeros(self.tensor.shape, np.float32))
        self._nhwc = nhwc
        self._chw_from_hwc = not self._normalise and not nhwc  # uint8 NCHW input (rare)

    def letterbox_for(self, frame_size: tuple[int, int]) -> Letterbox:
        lb = self._letterbox
        if lb is None or lb.frame_size != tuple(frame_size):
            lb = letterbox_for(tuple(frame_size), self.model_size, self.policy)
            self._letterbox = lb
            if self.policy == "letterbox":
                # The border stays at pad_value; each frame rewrites only the content rectangle.
                self._resized[...] = self.pad_value
        return lb

    def pre(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ConfigError(f"expected an HxWx3 uint8 BGR frame, got {frame_bgr.shape} {frame_bgr.dtype}")
        h, w = frame_bgr.shape[:2]
        lb = self.letterbox_for((w, h))
        x0, y0, x1, y1 = lb.content
        dst = self._resized[y0:y1, x0:x1]
        if (w, h) == lb.content_size:
            np.copyto(dst, frame_bgr)
        else:
            # INTER_AREA would be nicer for big downscales but costs ~5x; LINEAR is what
            # torchvision-trained models saw at train time via resize of PIL/tensor images.
            cv2.resize(frame_bgr, lb.content_size, dst=dst, interpolation=cv2.INTER_LINEAR)
        if self._normalise:
            self._normalise_into()
        elif self._chw_from_hwc:
            np.copyto(self.tensor[0], self._resized.transpose(2, 0, 1))
        return self.tensor, lb

    __call__ = pre

    def _normalise_into(self) -> None:
        work = self._work
        src = self._resized
        for c in range(3):
            # Cast-copy the strided uint8 plane first: a mixed-dtype ufunc allocates a casting
            # buffer per call (about 64 KB on numpy 1.x), a plain copyto allocates nothing.
            plane = work[0, c] if not self._nhwc else work[0, :, :, c]
            np.copyto(plane, src[:, :, self._src_channel[c]], casting="unsafe")
            np.subtract(plane, self._mean[c], out=plane)
            np.multiply(plane, self._inv_std[c], out=plane)
        if work is not self.tensor:
            np.copyto(self.tensor, work, casting="same_kind")
