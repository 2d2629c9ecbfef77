"""Class presets of the standard datasets: names, official palettes (RGB) and id mappings.

``--classes voc|cityscapes|ade20k`` picks one for an export; the dataset sources name their
label ids with it. Palettes are stored RGB as the datasets publish them; the manifest keeps
BGR (:meth:`ClassPreset.palette_bgr`).

* Pascal VOC: 21 classes, background 0; the palette is VOC's bit-interleaving colour map.
* Cityscapes: the 19 evaluation classes (trainIds 0..18) and the labelId <-> trainId tables
  of cityscapesScripts' ``labels.py`` (every other labelId is ignored: 255).
* ADE20K (SceneParsing, ADEChallengeData2016): 150 classes after ``reduce_zero_label``
  (0 "other" becomes 255, every id moves down by one); the palette is the one
  mmsegmentation's ``ADE20KDataset`` uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segrt.errors import ConfigError
from segrt.runtime.manifest import default_palette

IGNORE = 255

VOC_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

# (trainId, labelId, name, RGB) for the 19 Cityscapes evaluation classes.
CITYSCAPES_TABLE = (
    (0, 7, "road", (128, 64, 128)), (1, 8, "sidewalk", (244, 35, 232)), (2, 11, "building", (70, 70, 70)),
    (3, 12, "wall", (102, 102, 156)), (4, 13, "fence", (190, 153, 153)), (5, 17, "pole", (153, 153, 153)),
    (6, 19, "traffic light", (250, 170, 30)), (7, 20, "traffic sign", (220, 220, 0)),
    (8, 21, "vegetation", (107, 142, 35)), (9, 22, "terrain", (152, 251, 152)), (10, 23, "sky", (70, 130, 180)),
    (11, 24, "person", (220, 20, 60)), (12, 25, "rider", (255, 0, 0)), (13, 26, "car", (0, 0, 142)),
    (14, 27, "truck", (0, 0, 70)), (15, 28, "bus", (0, 60, 100)), (16, 31, "train", (0, 80, 100)),
    (17, 32, "motorcycle", (0, 0, 230)), (18, 33, "bicycle", (119, 11, 32)),
)

ADE20K_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
# RGB as six hex digits per class, in class order.
ADE20K_PALETTE_HEX = (
    "787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d 787846 "
    "08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc "
    "ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14 "
    "ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff "
    "ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 "
    "008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014 "
    "ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 "
    "00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070 "
    "5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff "
    "ff007a fff500 0abed4 d6ff00 00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff "
    "4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff "
)


def voc_palette(n: int = 256) -> tuple[tuple[int, int, int], ...]:
    """Pascal VOC's colour map (RGB): the bits of the class id spread over R, G, B from the top."""
    return tuple((r, g, b) for b, g, r in default_palette(n))


def _hex_palette(text: str) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in text.split())


@dataclass(frozen=True)
class ClassPreset:
    """One dataset's classes: names and RGB palette, in label-id order."""

    name: str
    classes: tuple[str, ...]
    palette_rgb: tuple[tuple[int, int, int], ...]

    def palette_bgr(self) -> tuple[tuple[int, int, int], ...]:
        return tuple((b, g, r) for r, g, b in self.palette_rgb)


PRESETS = {
    "voc": ClassPreset("voc", VOC_NAMES, voc_palette(len(VOC_NAMES))),
    "cityscapes": ClassPreset("cityscapes", tuple(t[2] for t in CITYSCAPES_TABLE),
                              tuple(t[3] for t in CITYSCAPES_TABLE)),
    "ade20k": ClassPreset("ade20k", ADE20K_NAMES, _hex_palette("".join(ADE20K_PALETTE_HEX))),
}


def class_preset(name: str) -> ClassPreset:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ConfigError(f"no class preset {name!r}", hint="use one of: " + ", ".join(PRESETS)) from None


def train_ids_from_label_ids() -> np.ndarray:
    """A 256-entry uint8 lookup table: Cityscapes labelId -> trainId (255 for every ignored id)."""
    lut = np.full(256, IGNORE, np.uint8)
    for train_id, label_id, _, _ in CITYSCAPES_TABLE:
        lut[label_id] = train_id
    return lut


def label_ids_from_train_ids() -> np.ndarray:
    """A 256-entry uint8 lookup table: trainId -> Cityscapes labelId (what the benchmark server wants).

    Ids outside 0..18 (255 included) become labelId 0, "unlabeled"."""
    lut = np.zeros(256, np.uint8)
    for train_id, label_id, _, _ in CITYSCAPES_TABLE:
        lut[train_id] = label_id
    return lut


def reduced_from_ade20k_labels() -> np.ndarray:
    """mmsegmentation's ``reduce_zero_label``: 0 -> 255, k -> k - 1, and 255 stays 255."""
    lut = (np.arange(256, dtype=np.int32) - 1).astype(np.uint8)
    lut[0] = IGNORE
    lut[255] = IGNORE
    return lut


def ade20k_labels_from_reduced() -> np.ndarray:
    """The inverse for prediction files: k -> k + 1 (0..149 -> 1..150), 255 -> 0 ("other")."""
    lut = (np.arange(256, dtype=np.int32) + 1).astype(np.uint8)
    lut[150:] = 0
    return lut
