"""``--weights torchvision`` / ``--weights NAME``: torchvision's pretrained weights for a zoo model.

``torchvision`` picks the model's default weights enum value (``get_model_weights(name).DEFAULT``);
``NAME`` picks one value, either bare (``COCO_WITH_VOC_LABELS_V1``) or qualified
(``LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1``). The file is fetched by
torchvision's own loader (``torch.hub.load_state_dict_from_url``, with progress) into its hub
cache, ``$TORCH_HOME/hub/checkpoints`` (a file already there is used without the network), then
loaded through :func:`segrt.export.weights.load_weights` like any checkpoint. The manifest's
class names and mean/std come from the weights' metadata (``meta["categories"]`` and the
``transforms()`` preset, scaled to 0..255).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrt.errors import WeightsError, first_line
from segrt.export.zoo import ZooEntry

TORCHVISION = "torchvision"


@dataclass(frozen=True)
class TorchvisionWeights:
    """One resolved weights enum value and what it says about the model."""

    name: str  # qualified: Enum.VALUE
    url: str
    categories: tuple[str, ...]
    mean: tuple[float, float, float] | None  # 0..255; None when the model normalises itself
    std: tuple[float, float, float] | None
    cache_file: Path

    def to_dict(self) -> dict[str, Any]:
        return {"torchvision_weights": self.name, "url": self.url, "cache_file": str(self.cache_file)}


def names_torchvision_weights(weights: object) -> bool:
    """Whether ``--weights`` names torchvision weights rather than a file."""
    if not isinstance(weights, str) or Path(weights).exists():
        return False
    if weights == TORCHVISION:
        return True
    # An enum value is UPPER_CASE (COCO_WITH_VOC_LABELS_V1), optionally after its enum's name.
    return re.fullmatch(r"([A-Za-z][A-Za-z0-9_]*_Weights\.)?[A-Z][A-Z0-9_]*", weights) is not None


def hub_checkpoints_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_torchvision_weights(entry: ZooEntry, weights: str) -> TorchvisionWeights:
    """The weights enum value ``weights`` names for the zoo model ``entry``."""
    from torchvision import models

    if entry.source != "torchvision":
        raise WeightsError(f"{entry.name} is not a torchvision model: --weights {weights} does not apply",
                           hint="pass a checkpoint file with --weights")
    try:
        enum = models.get_model_weights(entry.name)
    except (ValueError, KeyError) as exc:
        raise WeightsError(f"torchvision has no weights for {entry.name} ({first_line(exc)})",
                           hint="pass a checkpoint file with --weights") from exc
    values = {v.name: v for v in enum}
    if weights == TORCHVISION:
        value = enum.DEFAULT
    else:
        enum_name, _, value_name = weights.rpartition(".")
        if enum_name and enum_name != enum.__name__:
            raise WeightsError(f"{weights} are weights of another model ({enum_name}); {entry.name} takes "
                               f"{enum.__name__}", hint="use one of: " + ", ".join(values))
        value = values.get(value_name)
        if value is None:
            raise WeightsError(f"{enum.__name__} has no value {value_name!r}",
                               hint="use one of: " + ", ".join(values) + " (or --weights torchvision)")
    preset = value.transforms()
    mean = getattr(preset, "mean", None)
    std = getattr(preset, "std", None)
    return TorchvisionWeights(
        name=f"{enum.__name__}.{value.name}", url=value.url, categories=tuple(value.meta["categories"]),
        mean=tuple(round(255.0 * float(v), 4) for v in mean) if mean is not None else None,  # type: ignore[arg-type]
        std=tuple(round(255.0 * float(v), 4) for v in std) if std is not None else None,  # type: ignore[arg-type]
        cache_file=hub_checkpoints_dir() / os.path.basename(value.url))


def fetch_torchvision_weights(tw: TorchvisionWeights, progress: bool = True) -> Path:
    """The cached file of ``tw``, downloading it with torchvision's loader when absent."""
    import torch.hub

    if not tw.cache_file.is_file():
        try:
            torch.hub.load_state_dict_from_url(tw.url, model_dir=str(tw.cache_file.parent), progress=progress,
                                               map_location="cpu", weights_only=True)
        except OSError as exc:  # URLError, socket errors, a read-only cache
            raise WeightsError(f"cannot download {tw.name} ({first_line(exc)}): put {tw.cache_file.name} "
                               f"into {tw.cache_file.parent}",
                               hint=f"fetch {tw.url} on a connected machine and copy it there") from exc
        if not tw.cache_file.is_file():
            raise WeightsError(f"torchvision's loader did not leave {tw.cache_file}",
                               hint=f"fetch {tw.url} and copy it into {tw.cache_file.parent}")
    return tw.cache_file
