"""Batch-axis verification: each item of a batch must equal its own batch-1 result.

A graph exported with a batch axis (``--max-batch N``) is run in ONNX Runtime on N distinct
frames at once and on each frame alone. A fused graph's masks must be identical; an unfused
graph's logits must agree to float noise and their argmax must be identical. Anything else means
the batch leaks between items (a reshape that folds N into another axis, a batch-wide
normalisation) and the export is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import ExportError

LOGITS_ATOL = 1e-4


def frames_for_batch(height: int, width: int, batch: int, *, fused: bool) -> np.ndarray:
    """``batch`` distinct deterministic inputs: uint8 NHWC frames, or float NCHW for an unfused graph."""
    from segrt.export.verify import sample_frames

    kinds = ("random", "gradient", "shapes")
    frames = np.concatenate([sample_frames(height, width, batch=1, seed=i, kinds=(kinds[i % 3],))[0][1]
                             for i in range(batch)])
    if fused:
        return frames
    return ((frames.astype(np.float32) - 127.5) / 64.0).transpose(0, 3, 1, 2).copy()


def verify_batch_items(onnx_path: str | Path, batch: int, *, fused: bool, height: int, width: int,
                       providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> dict[str, Any]:
    """Run ``batch`` items together and one by one; raise :class:`ExportError` on any difference."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=list(providers))
    in_name = sess.get_inputs()[0].name
    x = frames_for_batch(height, width, batch, fused=fused)
    together = sess.run(None, {in_name: x})[0]
    alone = np.concatenate([sess.run(None, {in_name: x[i:i + 1]})[0] for i in range(batch)])
    if together.shape != alone.shape:
        raise ExportError(f"{Path(onnx_path).name}: batch {batch} returns {together.shape}, items one by one "
                          f"{alone.shape}", hint="the graph must keep the batch axis first on its output")
    if fused:
        differing = int(np.count_nonzero(together != alone))
        max_abs = float(differing > 0)
    else:
        max_abs = float(np.abs(together - alone).max())
        differing = int(np.count_nonzero(together.argmax(1) != alone.argmax(1)))
    if differing or max_abs > LOGITS_ATOL:
        raise ExportError(f"{Path(onnx_path).name}: items of a batch of {batch} differ from their batch-1 "
                          f"results ({differing} pixels, max abs diff {max_abs:.3g})",
                          hint="the model mixes batch items (e.g. BatchNorm in training mode); export it in "
                               "eval() mode or drop --max-batch")
    return {"batch": batch, "items_equal": True, "differing_pixels": differing,
            "max_abs_diff": max_abs, "method": "each item of one batch vs the same frame at batch 1, ONNX Runtime"}
