"""Mask R-CNN in a form TensorRT can build: detections plus low-resolution mask probabilities.

torchvision's ``MaskRCNN.forward`` ends in ``GeneralizedRCNNTransform.postprocess``, which
rescales boxes and pastes every 28x28 mask into a full-size image one instance at a time
(an ONNX ``Loop`` that TensorRT cannot build, and that costs more than the network on a CPU).
:class:`MaskRCNNExport` runs the same backbone, RPN and RoI heads but stops before the paste.

I/O contract of the exported graph (batch 1, static H and W, both multiples of 32):

* input ``frame``: uint8 ``[1, H, W, 3]`` in BGR (the camera's order), already resized to the
  model size. The graph reverses the channels, scales to 0..1 and applies torchvision's
  ImageNet normalisation itself; the model-side resize of torchvision is bypassed because the
  frame is already at model size (so no in-graph Resize either).
* ``boxes``: float32 ``[K, 4]`` xyxy in input-frame pixels (``0 <= x < W``, ``0 <= y < H``).
* ``labels``: int64 ``[K]`` class ids (0 is background and never emitted; 1..num_classes-1).
* ``scores``: float32 ``[K]`` in descending order, every score above the graph's threshold
  (``box_score_thresh``, 0.05 by default) and ``K <= box_detections_per_img`` (100).
* ``masks``: float32 ``[K, 1, 28, 28]`` per-instance mask *probabilities* (sigmoid of the
  mask head, for the predicted label), not pasted. The runtime pastes instance ``k`` by
  resizing ``masks[k, 0]`` to the box ``boxes[k]`` (expanded by 1 mask pixel on each side as
  torchvision does: scale ``(28 + 2) / 28``) and thresholding at 0.5.

``K`` is data-dependent (0 is legal). The manifest's ``output`` is
``OutputSpec(kind="instances", names=("boxes", "labels", "scores", "masks"))``.
"""
from __future__ import annotations

import torch
from torch import nn

from segrt.errors import ConfigError

INSTANCE_OUTPUTS = ("boxes", "labels", "scores", "masks")
MASK_SIZE_DIVISOR = 32  # the FPN's coarsest level; torchvision pads to it, we require it instead


def check_instance_size(height: int, width: int, model_name: str) -> None:
    """Mask R-CNN input sizes must be multiples of 32 (torchvision pads; the exported graph does not)."""
    if height % MASK_SIZE_DIVISOR or width % MASK_SIZE_DIVISOR:
        raise ConfigError(
            f"{model_name}: input size {height}x{width} is not a multiple of {MASK_SIZE_DIVISOR}",
            hint=f"pass --size with both sides multiples of {MASK_SIZE_DIVISOR}, e.g. 320x480",
        )


class MaskRCNNExport(nn.Module):
    """Wrap a torchvision ``MaskRCNN`` (eval mode) as ``frame -> boxes, labels, scores, masks``.

    ``fused=False`` takes a float RGB ``[1, 3, H, W]`` tensor in 0..1 instead of a uint8 frame
    (the torchvision convention); the outputs are the same.
    """

    def __init__(self, model: nn.Module, *, fused: bool = True) -> None:
        super().__init__()
        for part in ("backbone", "rpn", "roi_heads", "transform"):
            if not hasattr(model, part):
                raise ConfigError(f"{type(model).__name__} is not a torchvision Mask R-CNN (no .{part})")
        if getattr(model.roi_heads, "mask_predictor", None) is None:
            raise ConfigError(f"{type(model).__name__} has no mask head; only Mask R-CNN is supported")
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads
        self.fused = fused
        t = model.transform
        mean = torch.as_tensor(t.image_mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        std = torch.as_tensor(t.image_std, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        # BGR -> RGB as a constant gather: one Gather node, TensorRT-friendly.
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0], dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor):
        from torchvision.models.detection.image_list import ImageList

        if self.fused:
            x = x.to(torch.float32).permute(0, 3, 1, 2)  # cast first: TensorRT transposes no UINT8
            x = torch.index_select(x, 1, self.bgr_to_rgb) / 255.0
        x = (x - self.mean) / self.std
        h, w = int(x.shape[-2]), int(x.shape[-1])
        images = ImageList(x, [(h, w)])
        features = self.backbone(x)
        proposals, _ = self.rpn(images, features)
        detections, _ = self.roi_heads(features, proposals, images.image_sizes)
        det = detections[0]
        # Without the transform's resize the boxes are already in input pixels.
        return det["boxes"], det["labels"], det["scores"], det["masks"]
