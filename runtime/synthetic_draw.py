"""Drawing primitives of the synthetic scene: keyed randomness, noise, shapes, textures, object lives."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# --------------------------------------------------------------------------------------------
# Deterministic randomness: every draw is keyed by (seed, purpose, ...) so nothing depends on
# the order in which frames or objects are rendered.

_SALT_BACKGROUND, _SALT_NOISE, _SALT_OBJECT, _SALT_FRAME, _SALT_SCENE = 11, 12, 13, 14, 15


def _check_index(index: object) -> None:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise IndexError(f"synthetic: frame index must be a non-negative integer, got {index!r}")


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    px = np.array([[[h, s, v]]], dtype=np.uint8)
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: tuple[int, ...]) -> np.ndarray:
    """Smooth multi-octave noise in [0, 1], float32 (h, w): random grids resized bicubically."""
    acc = np.zeros((h, w), np.float32)
    total = 0.0
    for i, cells in enumerate(octaves):
        gh = max(2, int(round(cells * h / max(h, w))) + 1)
        gw = max(2, int(round(cells * w / max(h, w))) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        amp = 0.55**i
        acc += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    acc /= total
    lo, hi = float(acc.min()), float(acc.max())
    return (acc - lo) / max(hi - lo, 1e-6)


def _resize_noise_gain(sx: float, sy: float) -> float:
    """1 / (std of unit white noise after a bilinear resize by 1/sx, 1/sy), measured once."""
    if sx >= 1.0 and sy >= 1.0:
        return 1.0
    field = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    up = cv2.resize(field, (int(round(256 / sx)), int(round(256 / sy))), interpolation=cv2.INTER_LINEAR)
    return float(1.0 / up[8:-8, 8:-8].std())


# --------------------------------------------------------------------------------------------
# Shapes: canonical polygons in units of the object's radius, centred on the origin.


def _ellipse_poly(rx: float, ry: float, n: int = 72) -> np.ndarray:
    a = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([rx * np.cos(a), ry * np.sin(a)], axis=1)


def _shape_polys(cls: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(filled polygons, hole polygons) of one object of class ``cls``, radius ~1."""
    if cls == 1:  # disc: a circle seen at a slight slant
        return [_ellipse_poly(1.0, rng.uniform(0.78, 1.0))], []
    if cls == 2:  # box: a rectangle, aspect 0.55..1
        aspect = rng.uniform(0.55, 1.0)
        a = 1.0 / math.sqrt(1 + aspect**2)
        b = a * aspect
        return [np.array([[-a, -b], [a, -b], [a, b], [-a, b]])], []
    if cls == 3:  # triangle: irregular, vertices jittered around 120 degrees apart
        ang = np.deg2rad(np.array([90.0, 210.0, 330.0]) + rng.uniform(-14, 14, 3))
        rad = rng.uniform(0.9, 1.05, 3)
        return [np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)], []
    if cls == 4:  # ring: what lies behind shows through the hole
        ry = rng.uniform(0.8, 1.0)
        inner = rng.uniform(0.45, 0.6)
        return [_ellipse_poly(1.0, ry)], [_ellipse_poly(inner, inner * ry, 56)]
    if cls == 5:  # cross: a plus sign with arms of half-width w
        w = rng.uniform(0.26, 0.36)
        L = 1.0 / math.sqrt(1 + w**2)
        pts = [(w, -w), (L, -w), (L, w), (w, w), (w, L), (-w, L), (-w, w), (-L, w), (-L, -w),
               (-w, -w), (-w, -L), (w, -L)]
        return [np.array(pts, dtype=np.float64)], []
    raise ValueError(f"no shape for class {cls}")


def _texture_pattern(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 (size, size) pattern in [0, 1] of the given texture family."""
    u = (np.arange(size, dtype=np.float32) / size - 0.5) * 2.0  # -1..1 across the patch
    x, y = np.meshgrid(u, u)
    noise = _value_noise(rng, size, size, (4, 12, 40))
    if kind == "speckle":  # matte, lit from one side, fine grain
        lx, ly = rng.uniform(-0.7, 0.7, 2)
        shade = np.clip(0.65 + 0.45 * (x * lx + y * ly) - 0.25 * (x * x + y * y), 0, 1)
        grain = rng.random((size, size), dtype=np.float32)
        p = 0.65 * shade + 0.2 * noise + 0.15 * grain
    elif kind == "stripes":  # planks / corrugation along a random axis, wobbling
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(3.0, 7.0) * np.pi
        t = x * math.cos(theta) + y * math.sin(theta)
        p = 0.5 + 0.35 * np.sin(freq * t + 2.5 * noise) + 0.15 * (noise - 0.5)
    elif kind == "checker":  # a grid of tiles with grout-like variation
        cells = rng.uniform(2.5, 5.0)
        cx = np.floor((x + 1) * cells) + np.floor((y + 1) * cells)
        p = 0.3 + 0.45 * (cx % 2) + 0.25 * noise
    elif kind == "bands":  # concentric bands (turned wood, ripples)
        freq = rng.uniform(5.0, 10.0) * np.pi
        r = np.sqrt(x * x + y * y)
        p = 0.55 + 0.3 * np.sin(freq * r + 1.5 * noise) + 0.15 * (noise - 0.5)
    elif kind == "dots":  # polka dots on a smooth ground
        cells = rng.uniform(3.0, 6.0)
        fx = ((x + 1) * cells) % 1.0 - 0.5
        fy = ((y + 1) * cells) % 1.0 - 0.5
        dots = (fx * fx + fy * fy) < rng.uniform(0.06, 0.12)
        p = 0.25 + 0.5 * dots + 0.25 * noise
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.clip(p, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class _Object:
    """One object's life: class, shape, motion and appearance, fixed for one epoch."""

    cls: int
    polys: tuple[np.ndarray, ...]
    holes: tuple[np.ndarray, ...]
    radius: float  # fraction of frame height
    start: tuple[float, float]  # normalised frame coordinates (0..1), may lie outside
    end: tuple[float, float]
    t0: float  # epoch start (s)
    duration: float  # epoch length (s)
    angle0: float
    spin: float  # rad/s
    scale_amp: float
    scale_freq: float  # cycles per epoch
    scale_phase: float
    wobble: float  # perpendicular sway, fraction of frame height
    key: tuple[int, int]  # (slot, epoch): the appearance cache key


