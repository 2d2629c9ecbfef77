"""Images: a single file, a folder (with label masks discovered beside it) or a glob."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from segrt.errors import SourceError
from segrt.runtime.sources.base import (DEFAULT_IMAGE_FPS, MAX_CONSECUTIVE_BAD_FRAMES, Frame, Source, check_index,
                                        log)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
MASK_SUFFIXES = ("_mask", "_label", "_labels", "_gt")
MASK_DIRS = ("masks", "labels", "annotations", "SegmentationClass")
IMAGE_DIRS = ("images", "JPEGImages", "imgs")


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
            return Frame(img, i, time.perf_counter(), label, name=self.images[i].stem)
        return None

    def seek(self, index: int) -> None:
        self._pos = check_index(self, index)


def is_image(p: Path) -> bool:
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
    files = sorted(p for p in image_dir.iterdir() if p.is_file() and is_image(p))
    if mask_dir is not None:
        masks = _index_by_stem(sorted(p for p in mask_dir.iterdir() if p.is_file() and is_image(p)))
        return ImageListSource(uri, files, _pair(uri, files, masks, str(mask_dir)))
    stems = {p.stem for p in files}
    suffixed = {base: p for p in files if (base := _mask_stem(p.stem)) is not None and base in stems}
    if suffixed:  # x.png + x_mask.png side by side
        images = [p for p in files if p not in set(suffixed.values())]
        return ImageListSource(uri, images, _pair(uri, images, suffixed, "the same folder (x_mask.png)"))
    return ImageListSource(uri, files)
