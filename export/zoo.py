"""The model zoo: named models with the default config that travels into the bundle manifest.

Each :class:`ZooEntry` carries what a deployment needs besides the weights (timm-style
pretrained config): input size, class names, mean/std on the 0..255 scale in the model's
colour order, the preferred ONNX exporter and the size multiple the network needs.
Nothing here downloads: torchvision models are built with ``weights=None,
weights_backbone=None``, so without ``--weights`` they are randomly initialised.

``demo_unet`` is the shipped, trained demo model; its weights and spec live in the installed
package's ``weights/`` folder (``demo_unet.pth`` + ``demo_unet.json``).
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from segrt.errors import ModelNotFoundError

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255
IMAGENET_STD = (58.395, 57.12, 57.375)
SEMANTIC_SIZE = (256, 512)  # H, W: small enough for a 2-core CPU
INSTANCE_SIZE = (320, 480)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
# torchvision's COCO category list for its detection models: index = label id (91 entries,
# "N/A" marks ids unused by COCO). Copied from the weights' metadata so nothing is downloaded.
def _coco_categories() -> tuple[str, ...]:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return tuple(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


FAMILIES = ("semantic", "instances")
EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo and its default deployment config.

    ``factory(num_classes)`` builds the ``nn.Module`` in eval mode, randomly initialised;
    ``weights`` is a default checkpoint (only for shipped models). ``unavailable`` says why
    an entry cannot be built here (e.g. shipped weights missing), else is empty.
    """

    name: str
    family: str  # "semantic" (logits/mask) or "instances" (Mask R-CNN)
    description: str
    factory: Callable[[int], Any] = field(repr=False, compare=False)
    input_size: tuple[int, int] = SEMANTIC_SIZE  # (H, W)
    classes: tuple[str, ...] = VOC_CLASSES
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"
    exporter: str = "dynamo"  # preferred exporter for --exporter auto (see onnx_from_torch)
    size_multiple: int = 8
    params: Mapping[str, Any] = field(default_factory=dict)  # factory kwargs, recorded in the manifest
    source: str = "torchvision"  # torchvision | segrt | demo | mediapipe
    weights: Path | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None  # BGR; None -> default_palette
    unavailable: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)  # e.g. the demo's training record

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def build(self, num_classes: int | None = None):
        """The randomly initialised model in eval mode (torch is imported here, not at zoo import)."""
        if self.unavailable:
            raise ModelNotFoundError(f"zoo model {self.name!r} is not available: {self.unavailable}")
        model = self.factory(num_classes or self.num_classes)
        return model.eval()

    def count_params(self) -> int:
        """Parameter count, computed on the meta device (no memory, no init time)."""
        import torch

        with torch.device("meta"):
            model = self.factory(self.num_classes)
        return sum(p.numel() for p in model.parameters())


# -- factories ---------------------------------------------------------------------------
def _tv_segmentation(fn_name: str) -> Callable[[int], Any]:
    def build(num_classes: int):
        from torchvision.models import segmentation

        # aux_loss=False: the auxiliary head is a training aid; checkpoints that carry it load
        # with those keys skipped (see weights.py).
        return getattr(segmentation, fn_name)(weights=None, weights_backbone=None,
                                              num_classes=num_classes, aux_loss=False)
    return build


def _tv_maskrcnn(fn_name: str) -> Callable[[int], Any]:
    def build(num_classes: int):
        from torchvision.models import detection

        return getattr(detection, fn_name)(weights=None, weights_backbone=None, num_classes=num_classes)
    return build


def _unet(**kw: Any) -> Callable[[int], Any]:
    def build(num_classes: int):
        from segrt.export.models.unet import UNet

        return UNet(num_classes, **kw)
    return build


def _deeplabv3plus(**kw: Any) -> Callable[[int], Any]:
    def build(num_classes: int):
        from segrt.export.models.deeplabv3plus import DeepLabV3Plus

        return DeepLabV3Plus(num_classes, **kw)
    return build


def _mediapipe_selfie(num_classes: int):
    from segrt.export.models.mediapipe_selfie import SelfieSegmentation

    return SelfieSegmentation(num_classes)


def _mediapipe_entries() -> list[ZooEntry]:
    """MediaPipe Selfie Segmentation (Apache-2.0): weights from the pinned mediapipe wheel, fetched on first use."""
    from segrt.export.mediapipe_fetch import MEDIAPIPE_VERSION, pinned_tflite_path

    out = []
    for name, filename, size, what in (
            ("mediapipe_selfie", "selfie_segmentation.tflite", (256, 256), "general, 256x256"),
            ("mediapipe_selfie_landscape", "selfie_segmentation_landscape.tflite", (144, 256), "landscape, 144x256")):
        out.append(ZooEntry(
            name=name, family="semantic", source="mediapipe", factory=_mediapipe_selfie, input_size=size,
            description=f"MediaPipe Selfie Segmentation ({what}; pretrained, Apache-2.0; person >= 0.5)",
            classes=("background", "person"), mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0),
            color_order="RGB", exporter="torchscript", size_multiple=16, weights=pinned_tflite_path(filename),
            params={"arch": "mediapipe_selfie", "tflite": filename, "mediapipe": MEDIAPIPE_VERSION}))
    return out


ARCH_FACTORIES: dict[str, Callable[..., Callable[[int], Any]]] = {
    "unet": _unet,
    "deeplabv3plus": _deeplabv3plus,
}


def shipped_weights_dir() -> Path:
    """The installed package's ``weights/`` folder."""
    import segrt

    return Path(segrt.__file__).parent / "weights"


def _demo_entry(weights_dir: Path) -> ZooEntry:
    """``demo_unet`` from ``weights/demo_unet.{pth,json}``; marked unavailable if they are missing or bad."""
    spec_path, pth = weights_dir / "demo_unet.json", weights_dir / "demo_unet.pth"
    base = dict(name="demo_unet", family="semantic", source="demo",
                description="trained demo U-Net shipped with segrt (weights/demo_unet.pth)",
                factory=_unet())
    missing = [p.name for p in (spec_path, pth) if not p.is_file()]
    if missing:
        return ZooEntry(**base, size_multiple=16, unavailable=f"{' and '.join(missing)} not found in {weights_dir} "
                        "(this build ships no demo weights)")
    try:
        spec = json.loads(spec_path.read_text())
        arch = str(spec["arch"]).lower()
        params = {k: v for k, v in dict(spec.get("params") or {}).items() if k != "num_classes"}
        h, w = (int(v) for v in spec["input_size"])
        classes = tuple(str(c) for c in spec["classes"])
        palette = spec.get("palette")
        entry = ZooEntry(
            **{**base, "factory": ARCH_FACTORIES[arch](**params)},
            input_size=(h, w), classes=classes,
            mean=tuple(float(v) for v in spec["mean"]), std=tuple(float(v) for v in spec["std"]),  # type: ignore[arg-type]
            color_order=str(spec.get("color_order", "RGB")), params={"arch": arch, **params},
            weights=pth, size_multiple=2 ** int(params.get("depth", 4)) if arch == "unet" else 16,
            provenance={k: spec[k] for k in ("train", "metrics") if k in spec},
            palette=tuple(tuple(int(v) for v in c) for c in palette) if palette else None,  # type: ignore[arg-type]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ZooEntry(**base, size_multiple=16, unavailable=f"{spec_path} is unreadable or incomplete ({exc!r})")
    return entry


def _static_entries() -> list[ZooEntry]:
    seg = [
        ("fcn_resnet50", "FCN, ResNet-50 backbone (torchvision)"),
        ("fcn_resnet101", "FCN, ResNet-101 backbone (torchvision)"),
        ("deeplabv3_resnet50", "DeepLabV3, ResNet-50 backbone (torchvision)"),
        ("deeplabv3_resnet101", "DeepLabV3, ResNet-101 backbone (torchvision)"),
        ("deeplabv3_mobilenet_v3_large", "DeepLabV3, MobileNetV3-Large backbone (torchvision)"),
        ("lraspp_mobilenet_v3_large", "LR-ASPP, MobileNetV3-Large: the real-time one (torchvision)"),
    ]
    # Global pooling (ASPP image pooling, LR-ASPP's attention) exports as ReduceMean, which dynamo
    # cannot down-convert to opset 17: those prefer TorchScript (see onnx_from_torch).
    entries = [ZooEntry(name=n, family="semantic", description=d, factory=_tv_segmentation(n),
                        exporter="dynamo" if n.startswith("fcn") else "torchscript")
               for n, d in seg]
    coco = _coco_categories()
    for n, d in (("maskrcnn_resnet50_fpn", "Mask R-CNN, ResNet-50-FPN (torchvision)"),
                 ("maskrcnn_resnet50_fpn_v2", "Mask R-CNN v2, ResNet-50-FPN (torchvision)")):
        entries.append(ZooEntry(name=n, family="instances", description=d, factory=_tv_maskrcnn(n),
                                input_size=INSTANCE_SIZE, classes=coco, size_multiple=32,
                                # The graph takes 0..1 RGB (x / 255) and applies torchvision's ImageNet
                                # normalisation inside, as torchvision's own transform does.
                                mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), exporter="torchscript"))
    unet_kw = {"depth": 4, "base_width": 32, "bilinear": True}
    entries.append(ZooEntry(name="unet", family="semantic", source="segrt", size_multiple=16,
                            description="classic U-Net (depth 4, width 32, bilinear up)",
                            factory=_unet(**unet_kw), params={"arch": "unet", **unet_kw}))
    for bb, desc in (("resnet50", "ResNet-50"), ("mobilenet_v3_large", "MobileNetV3-Large")):
        entries.append(ZooEntry(name=f"deeplabv3plus_{bb}", family="semantic", source="segrt",
                                size_multiple=16, exporter="torchscript",
                                description=f"DeepLabV3+ (ASPP + low-level skip), {desc}, OS16",
                                factory=_deeplabv3plus(backbone=bb),
                                params={"arch": "deeplabv3plus", "backbone": bb}))
    entries += _mediapipe_entries()
    return entries


@lru_cache(maxsize=1)
def _registry() -> dict[str, ZooEntry]:
    entries = _static_entries()
    entries.append(_demo_entry(shipped_weights_dir()))
    return {e.name: e for e in entries}


def list_entries() -> list[ZooEntry]:
    """Every zoo entry, including unavailable ones (their ``unavailable`` says why)."""
    return list(_registry().values())


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name``; an unknown name raises with did-you-mean suggestions."""
    reg = _registry()
    entry = reg.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(reg), n=3, cutoff=0.5)
        # A family prefix ("fcn", "maskrcnn") is a fine question too.
        close += [n for n in reg if name.lower() in n and n not in close][: 3 - len(close)]
        hint = (f"did you mean {' or '.join(close)}?" if close else
                "see `segrt models`; or pass package.module:factory or a .onnx file")
        raise ModelNotFoundError(f"unknown model {name!r}", hint=hint)
    if entry.unavailable:
        raise ModelNotFoundError(f"zoo model {name!r} is not available: {entry.unavailable}",
                                 hint="pick another model from `segrt models`")
    return entry


def reset_cache() -> None:
    """Forget the registry (tests that install demo weights call this)."""
    _registry.cache_clear()


def zoo_table() -> list[dict[str, Any]]:
    """One row per entry for ``segrt models``: name, family, input size, classes, params (M)."""
    rows = []
    for e in list_entries():
        params = None if e.unavailable else round(e.count_params() / 1e6, 2)
        rows.append({"name": e.name, "family": e.family, "input_size": f"{e.input_size[0]}x{e.input_size[1]}",
                     "classes": e.num_classes, "params_m": params, "exporter": e.exporter,
                     "description": e.description, "unavailable": e.unavailable or None})
    return rows
