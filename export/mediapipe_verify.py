"""The PyTorch selfie segmenter against the TFLite reference interpreter, on real photos.

The same input (each photo resized to the model's size, RGB, scaled to [0, 1], as the bundle's
manifest preprocesses it) goes through the ``.tflite`` in LiteRT (``ai-edge-litert``, or
``tflite-runtime``) and through :class:`~segrt.export.models.mediapipe_selfie.SelfieSegmentation`;
the report gives the largest absolute difference of the person probability and the share of
pixels whose 0.5-threshold mask agrees. The photos are scikit-image's (``astronaut``, ``camera``,
``coffee``, ``chelsea``) when it is installed.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np

from segrt.errors import BackendUnavailableError

PHOTOS = ("astronaut", "camera", "coffee", "chelsea")
MAX_PROB_DIFF = 1e-3
MIN_MASK_AGREEMENT = 0.999


def tflite_interpreter(path: str | os.PathLike[str]):
    """LiteRT's interpreter for ``path`` (tensors allocated), or tflite-runtime's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError as exc:
            raise BackendUnavailableError("no TFLite interpreter to check the port against",
                                          hint="pip install ai-edge-litert (or tflite-runtime)") from exc
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def sample_photos() -> list[tuple[str, np.ndarray]]:
    """scikit-image's photos as BGR uint8 frames (grey ones stacked to three channels)."""
    import skimage.data

    out = []
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        out.append((name, np.ascontiguousarray(rgb[..., ::-1])))
    return out


def photo_frames(n: int, size: tuple[int, int] = (360, 480)) -> list[np.ndarray]:
    """``n`` real frames: pans and zooms over :func:`sample_photos` (BGR, ``size`` = H, W), every
    other one mirrored, so no two are the same."""
    photos = [img for _, img in sample_photos()]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        t = (i // len(photos)) / max(1, n // len(photos))
        scale = 1.0 - 0.35 * t
        ch, cw = int(h * scale), int(w * scale)
        y0, x0 = int((h - ch) * t), int((w - cw) * (1 - t))
        frame = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (size[1], size[0]), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(frame[:, ::-1]) if i % 2 else frame)
    return out


def model_input(frame_bgr: np.ndarray, height: int, width: int) -> np.ndarray:
    """(1, H, W, 3) float32 RGB in [0, 1]: the manifest's stretch resize, mean 0 and std 255."""
    small = cv2.resize(frame_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    return (small[..., ::-1].astype(np.float32) / np.float32(255.0))[None]


def verify_against_tflite(net, tflite_path: str | os.PathLike[str], height: int, width: int,
                          frames: Sequence[tuple[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Per-photo and overall max |probability diff| and 0.5-mask agreement, with the verdict."""
    import torch

    it = tflite_interpreter(tflite_path)
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    if frames is None:
        try:
            frames = sample_photos()
        except ImportError:  # scikit-image is optional: segrt's synthetic check frames instead
            from segrt.export.verify import sample_frames

            frames = [(name, batch[0]) for name, batch in sample_frames(height, width)]
    rows, same, total, worst = [], 0, 0, 0.0
    frames = list(frames)
    for name, frame in frames:
        x = model_input(frame, height, width)
        it.set_tensor(inp["index"], x)
        it.invoke()
        ref = it.get_tensor(outp["index"])[0, ..., 0]
        with torch.no_grad():
            got = net.probability(torch.from_numpy(x).permute(0, 3, 1, 2))[0, 0].numpy()
        diff = float(np.abs(got - ref).max())
        agree = int(np.count_nonzero((got > 0.5) == (ref > 0.5)))
        rows.append({"image": name, "max_abs_prob_diff": diff, "mask_agreement": agree / ref.size,
                     "person_fraction": float((ref > 0.5).mean())})
        same, total, worst = same + agree, total + ref.size, max(worst, diff)
    agreement = same / total if total else 0.0
    return {"reference": "TFLite interpreter (" + type(it).__module__.split(".")[0] + ")",
            "images": rows, "max_abs_prob_diff": worst, "mask_agreement": agreement,
            "passed": worst <= MAX_PROB_DIFF and agreement >= MIN_MASK_AGREEMENT,
            "thresholds": {"max_abs_prob_diff": MAX_PROB_DIFF, "mask_agreement": MIN_MASK_AGREEMENT}}
