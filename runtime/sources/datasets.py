"""Standard dataset layouts as labelled sources: ``voc://``, ``cityscapes://``, ``ade20k://``.

Each resolves a root folder and a split into image/label pairs and reads them through
:class:`~segrt.runtime.sources.images.ImageListSource`, mapping the stored label ids to the
evaluation ids through a lookup table (Cityscapes labelIds -> 19 trainIds; ADE20K's
``reduce_zero_label``). A layout that lacks a folder, list or file fails with one line
naming what is missing and where.

* ``voc://ROOT?split=val``: ``ROOT`` is ``VOC2012`` (or a folder holding ``VOC2012`` or
  ``VOCdevkit/VOC2012``) with ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs: the
  palette index is the class, 255 the void border) and ``ImageSets/Segmentation/<split>.txt``.
* ``cityscapes://ROOT?split=val``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/*_gtFine_labelIds.png``.
* ``ade20k://ROOT?split=validation``: ``ADEChallengeData2016`` (or ``ROOT`` itself) with
  ``images/<split>/*.jpg`` and ``annotations/<split>/*.png``.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote

import cv2
import numpy as np

from segrt.errors import SourceError
from segrt.runtime.class_presets import (
    ade20k_labels_from_reduced,
    class_preset,
    label_ids_from_train_ids,
    reduced_from_ade20k_labels,
    train_ids_from_label_ids,
    voc_palette,
)
from segrt.runtime.sources.base import Frame, int_param
from segrt.runtime.sources.images import ImageListSource

DATASET_SCHEMES = ("voc", "cityscapes", "ade20k")
DEFAULT_SPLITS = {"voc": "val", "cityscapes": "val", "ade20k": "validation"}


class DatasetSource(ImageListSource):
    """Image/label pairs of a dataset split; labels go through ``label_lut`` (None: kept as stored).

    ``stored_lut`` maps evaluation ids back to the ids the dataset stores (Cityscapes labelIds,
    ADE20K's unreduced ids), for prediction files a benchmark server scores; ``palette_rgb``,
    when given, makes those files palette PNGs (VOC's)."""

    def __init__(self, uri: str, images: list[Path], labels: list[Path], classes: tuple[str, ...],
                 label_lut: np.ndarray | None = None, stored_lut: np.ndarray | None = None,
                 palette_rgb: tuple[tuple[int, int, int], ...] | None = None) -> None:
        super().__init__(uri, images, labels)
        self.label_classes = classes
        self.label_lut = label_lut
        self.stored_lut = stored_lut
        self.palette_rgb = palette_rgb

    def write_prediction(self, index: int, mask: np.ndarray, out_dir: Path) -> Path:
        """``mask`` (evaluation ids, label resolution) as ``out_dir/<image stem>.png`` in the stored ids."""
        ids = cv2.LUT(mask, self.stored_lut) if self.stored_lut is not None else mask
        path = out_dir / f"{self.images[index].stem}.png"
        if self.palette_rgb is not None:
            from PIL import Image

            im = Image.frombytes("P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(ids).tobytes())
            im.putpalette([v for c in self.palette_rgb for v in c])
            im.save(path)
        elif not cv2.imwrite(str(path), ids):
            raise SourceError(f"cannot write {path}", hint="check the --write-predictions folder")
        return path

    def _read(self) -> Frame | None:
        frame = super()._read()
        if frame is not None and self.label_lut is not None and frame.label is not None:
            frame.label = cv2.LUT(frame.label, self.label_lut)
        return frame


def _parse(uri: str, scheme: str) -> tuple[Path, str, int | None]:
    rest = uri.split("://", 1)[1]
    path_part, _, query = rest.partition("?")
    q = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(q) - {"split", "limit"}
    if unknown:
        raise SourceError(f"{uri}: unknown parameter {', '.join(sorted(unknown))}", hint="use split= and limit=")
    if not path_part:
        raise SourceError(f"{uri}: no dataset root", hint=f"{scheme}://PATH/TO/ROOT?split=...")
    limit = int_param(q, "limit", 0, uri, 1) if "limit" in q else None
    return Path(unquote(path_part)).expanduser(), q.get("split") or DEFAULT_SPLITS[scheme], limit


def _need(path: Path, what: str, uri: str) -> Path:
    if not path.exists():
        raise SourceError(f"{uri}: missing {what}: {path}", hint="check the dataset root and split")
    return path


def _pairs(uri: str, images: list[Path], labels: list[Path], limit: int | None) -> tuple[list[Path], list[Path]]:
    missing = [p for p in images + labels if not p.is_file()]
    if missing:
        raise SourceError(f"{uri}: {len(missing)} listed files are missing (first: {missing[0]})",
                          hint="the split names files the dataset folder does not have; re-extract it")
    if not images:
        raise SourceError(f"{uri}: the split lists no images", hint="check the split name")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def voc_source(uri: str) -> DatasetSource:
    root, split, limit = _parse(uri, "voc")
    _need(root, "dataset root", uri)
    base = next((r for r in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012")
                 if (r / "JPEGImages").is_dir()), root)
    image_dir = _need(base / "JPEGImages", "the JPEGImages folder", uri)
    label_dir = _need(base / "SegmentationClass", "the SegmentationClass folder (palette PNGs)", uri)
    listing = _need(base / "ImageSets" / "Segmentation" / f"{split}.txt", f"the {split!r} split list", uri)
    ids = [ln.strip().split()[0] for ln in listing.read_text(encoding="utf-8").splitlines() if ln.strip()]
    images, labels = _pairs(uri, [image_dir / f"{i}.jpg" for i in ids], [label_dir / f"{i}.png" for i in ids],
                            limit)
    return DatasetSource(uri, images, labels, class_preset("voc").classes, palette_rgb=voc_palette(256))


def cityscapes_source(uri: str) -> DatasetSource:
    root, split, limit = _parse(uri, "cityscapes")
    _need(root, "dataset root", uri)
    image_dir = _need(root / "leftImg8bit" / split, f"the leftImg8bit/{split} folder", uri)
    label_dir = _need(root / "gtFine" / split, f"the gtFine/{split} folder", uri)
    images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
    labels = [label_dir / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
              for p in images]
    images, labels = _pairs(uri, images, labels, limit)
    return DatasetSource(uri, images, labels, class_preset("cityscapes").classes, train_ids_from_label_ids(),
                         stored_lut=label_ids_from_train_ids())


def ade20k_source(uri: str) -> DatasetSource:
    root, split, limit = _parse(uri, "ade20k")
    _need(root, "dataset root", uri)
    base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
    image_dir = _need(base / "images" / split, f"the images/{split} folder", uri)
    label_dir = _need(base / "annotations" / split, f"the annotations/{split} folder", uri)
    images = sorted(image_dir.glob("*.jpg"))
    labels = [label_dir / f"{p.stem}.png" for p in images]
    images, labels = _pairs(uri, images, labels, limit)
    return DatasetSource(uri, images, labels, class_preset("ade20k").classes, reduced_from_ade20k_labels(),
                         stored_lut=ade20k_labels_from_reduced())


def dataset_source(uri: str) -> DatasetSource:
    """The source for a ``voc://``, ``cityscapes://`` or ``ade20k://`` URI."""
    scheme = uri.split("://", 1)[0].lower()
    return {"voc": voc_source, "cityscapes": cityscapes_source, "ade20k": ade20k_source}[scheme](uri)
