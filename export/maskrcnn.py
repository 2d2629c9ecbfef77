"""Mask R-CNN in a form TensorRT can build: detections plus low-resolution mask probabilities.

torchvision's ``MaskRCNN.forward`` ends in ``GeneralizedRCNNTransform.postprocess``, which
rescales boxes and pastes every 28x28 mask into a full-size image one instance at a time
(an ONNX ``Loop`` that TensorRT cannot build, and that costs more than the network on a CPU).
:class:`MaskRCNNExport` runs the same backbone, RPN and RoI heads but stops before the paste.

I/O contract of the exported graph (batch 1, static H and W, both multiples of 32). Every
output has a static shape, padded to ``D = max_detections`` (default: the model's
``box_detections_per_img``, 100), so TensorRT can preallocate it (no IOutputAllocator), and
Triton, DeepStream and CUDA graphs get fixed shapes:

* input ``frame``: uint8 ``[1, H, W, 3]`` in BGR (the camera's order), already resized to the
  model size. The graph casts to float first, reverses the channels, scales to 0..1 and applies
  torchvision's ImageNet normalisation itself; the model-side resize of torchvision is bypassed
  because the frame is already at model size (so no in-graph Resize either).
* ``boxes``: float32 ``[D, 4]`` xyxy in input-frame pixels (``0 <= x < W``, ``0 <= y < H``).
* ``labels``: int64 ``[D]`` class ids (0 is background and never emitted; 1..num_classes-1).
* ``scores``: float32 ``[D]`` in descending order, every score above the graph's threshold
  (``box_score_thresh``, 0.05 by default).
* ``masks``: float32 ``[D, 1, 28, 28]`` per-instance mask *probabilities* (sigmoid of the
  mask head, for the predicted label), not pasted. The runtime pastes instance ``k`` by
  resizing ``masks[k, 0]`` to the box ``boxes[k]`` (expanded by 1 mask pixel on each side as
  torchvision does: scale ``(28 + 2) / 28``) and thresholding at 0.5.
* ``num_detections``: int64 ``[1]``, ``K <= D``: rows ``0..K-1`` are detections, the rest
  are zeros (label 0, score 0). ``K`` = 0 is legal.

The padding is a Gather with static indices ``min(arange(D), K)`` from the detections with one
zero row appended: its output shape is the indices' shape, so no dimension depends on the data.
The manifest's ``output`` is ``OutputSpec(kind="instances", names=INSTANCE_OUTPUTS)``.
"""
from __future__ import annotations

import torch
from torch import nn

from segrt.errors import ConfigError

INSTANCE_OUTPUTS = ("boxes", "labels", "scores", "masks", "num_detections")
MASK_SIZE_DIVISOR = 32  # the FPN's coarsest level; torchvision pads to it, we require it instead


def check_instance_size(height: int, width: int, model_name: str) -> None:
    """Mask R-CNN input sizes must be multiples of 32 (torchvision pads; the exported graph does not)."""
    if height % MASK_SIZE_DIVISOR or width % MASK_SIZE_DIVISOR:
        raise ConfigError(
            f"{model_name}: input size {height}x{width} is not a multiple of {MASK_SIZE_DIVISOR}",
            hint=f"pass --size with both sides multiples of {MASK_SIZE_DIVISOR}, e.g. 320x480",
        )


class MaskRCNNExport(nn.Module):
    """Wrap a torchvision ``MaskRCNN`` (eval mode) as ``frame -> boxes, labels, scores, masks, num_detections``.

    Outputs are padded to ``max_detections`` rows (default: ``box_detections_per_img``); the
    model keeps at most that many detections. ``fused=False`` takes a float RGB ``[1, 3, H, W]`` tensor in 0..1 instead of a uint8 frame
    (the torchvision convention); the outputs are the same.
    """

    def __init__(self, model: nn.Module, *, fused: bool = True, max_detections: int | None = None) -> None:
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
        if max_detections is not None:
            if int(max_detections) < 1:
                raise ConfigError(f"max_detections must be >= 1, got {max_detections}")
            self.roi_heads.detections_per_img = int(max_detections)
        self.max_detections = int(self.roi_heads.detections_per_img)
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
        return padded_detections(det["boxes"], det["labels"], det["scores"], det["masks"], self.max_detections)


def padded_detections(boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor,
                      rows: int) -> tuple[torch.Tensor, ...]:
    """The K detections padded with zeros to ``rows`` (K <= rows), plus ``num_detections`` [1].

    Gather rows ``min(i, K)`` of each output with one zero row appended: static shapes in the
    graph, whatever K is (the shape of the index tensor, not the data, sets the output's).
    """
    from torch.onnx import operators

    k = operators.shape_as_tensor(scores)[:1]
    index = torch.minimum(torch.arange(rows, dtype=torch.int64, device=scores.device), k)

    def pad(t: torch.Tensor) -> torch.Tensor:
        # The per-row shape (4; 1x28x28) is fixed by the network: as constants it makes every
        # output dimension static in the graph, not only at run time.
        row = tuple(int(d) for d in t.shape[1:])
        zero = torch.zeros((1, *row), dtype=t.dtype, device=t.device)
        return torch.index_select(torch.cat([t, zero]), 0, index).reshape(rows, *row)

    return pad(boxes), pad(labels), pad(scores), pad(masks), k
