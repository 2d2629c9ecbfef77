"""A generated moving scene of textured shapes with a ground-truth mask for every frame.

``synthetic://`` is the project's camera-free test source (like GStreamer's ``videotestsrc``, but
with labels): INT8 calibration, accuracy gates, tests, benchmarks and the demo all read it. It is
built to look like a camera, not a test card:

* every foreground class has a distinct geometry *and* an appearance family (a hue range and a
  texture type) with per-object variation, so a small net can learn it the way it learns real
  object classes;
* the background is a drifting textured gradient with clutter (muted blobs and lines, a few small
  saturated ones) that must stay background;
* objects translate across the frame (entering and leaving it), rotate and change scale; the larger
  (nearer) object is drawn on top, and its label wins, so occlusion order changes over time;
  rings have holes through which whatever lies behind shows, with that label;
* the camera pans slowly; lighting changes (global gain, a drifting gradient, white-balance drift,
  vignetting); some frames are motion- or defocus-blurred; sensor noise is added last.

Frame ``i`` is a pure function of ``(config, i)``: nothing is carried from frame to frame, so a
calibration reader can sample evenly and a test can seek. Geometry is resolution independent
(positions and sizes are fractions of the frame), so a 960x540 and a 1920x1080 scene show the same
shapes in the same places.

Speed: the background, the noise and the per-class texture tiles are rendered once per scene;
a frame is a crop of the background, a few ROI-sized warps and masked copies, one gain multiply,
an optional box blur and one noise add, all in OpenCV. Frames taller than 720 rows are drawn at
half size and resized bilinearly (``detail=1`` draws them at full size): a 1080p frame costs
about 4 ms on one core instead of 16, which matters because the source shares the CPU with
inference in every benchmark. Ground truth can be left out of a frame and drawn later, shapes
only, with :meth:`SyntheticScene.label_at`. No torch here: the runtime never imports it.

A scene instance serialises :meth:`SyntheticScene.render_into` with a lock (it reuses scratch
buffers); use one instance per thread for parallel rendering.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import replace

import cv2
import numpy as np

from segrt.errors import ConfigError
from segrt.runtime.synthetic_config import SyntheticConfig, resize_label, synthetic_config_from_query
from segrt.runtime.synthetic_draw import (
    _SALT_BACKGROUND,
    _SALT_FRAME,
    _SALT_NOISE,
    _SALT_OBJECT,
    _SALT_SCENE,
    _check_index,
    _hsv_to_bgr,
    _Object,
    _resize_noise_gain,
    _rng,
    _shape_polys,
    _texture_pattern,
    _value_noise,
)


__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_PALETTE",
    "SyntheticConfig",
    "SyntheticScene",
    "synthetic_config_from_query",
    "resize_label",
]

SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "disc", "box", "triangle", "ring", "cross")

# Drawing colour per class (BGR) for overlays; chosen to echo each class's appearance family.
SYNTHETIC_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),  # background
    (40, 40, 220),  # disc: red
    (220, 120, 30),  # box: blue
    (60, 200, 60),  # triangle: green
    (30, 220, 240),  # ring: yellow
    (200, 60, 210),  # cross: magenta
)

# Appearance family per foreground class: OpenCV hue range (0..180), saturation and value
# ranges, texture kind. Hue ranges do not overlap; background colours stay below ~70 saturation.
_FAMILIES: dict[int, dict] = {
    1: {"hue": (0, 10), "sat": (160, 240), "val": (130, 235), "texture": "speckle"},
    2: {"hue": (100, 122), "sat": (150, 235), "val": (130, 235), "texture": "stripes"},
    3: {"hue": (42, 75), "sat": (140, 230), "val": (120, 225), "texture": "checker"},
    4: {"hue": (20, 32), "sat": (160, 240), "val": (150, 245), "texture": "bands"},
    5: {"hue": (140, 165), "sat": (130, 225), "val": (130, 230), "texture": "dots"},
}

_AREA_SCALE = {1: 0.9, 2: 1.05, 3: 1.3, 4: 1.05, 5: 1.05}

_NOISE_MARGIN = 64  # the noise bank is larger than a frame by this; a frame takes a random crop
_PATCH_CACHE = 64  # object texture patches kept (an object lives for many frames)
_OBJECT_CACHE = 64  # object lives kept (each is a pure function of its slot and epoch)


class SyntheticScene:
    """A deterministic moving scene; :meth:`render` gives ``(BGR image, label)`` for any frame."""

    def __init__(self, config: SyntheticConfig) -> None:
        if not isinstance(config, SyntheticConfig):
            raise ConfigError(f"SyntheticScene needs a SyntheticConfig, got {type(config).__name__}")
        self.config = config
        # Everything is drawn at draw_size (geometry is resolution independent), then resized.
        dw, dh = config.draw_size
        self._cfg = replace(config, width=dw, height=dh, detail=1.0)
        self._scaled = (dw, dh) != (config.width, config.height)
        self.classes = SYNTHETIC_CLASSES
        self.palette = SYNTHETIC_PALETTE
        h, w = dh, dw
        self._px = h / 1080.0  # pixel scale relative to the 1080p design resolution
        self._margin = max(4, int(round(0.05 * h)))  # camera pan range around the background
        self._background = self._make_background()
        self._noise = self._make_noise()
        # Scratch buffers reused by every frame (guarded by the lock).
        self._mask = np.zeros((h, w), np.uint8)
        self._gain = np.empty((h, w, 3), np.uint8)
        self._label = np.zeros((h, w), np.uint8) if self._scaled else None
        self._canvas = np.empty((h, w, 3), np.uint8) if self._scaled else None
        self._objects: OrderedDict[tuple[int, int], _Object] = OrderedDict()
        self._lock = threading.Lock()
        self._patches: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        scene = _rng(config.seed, _SALT_SCENE)
        # Per-slot lifetimes, staggered so objects do not all change at once.
        self._slot_period = scene.uniform(5.0, 11.0, max(config.objects, 1))
        self._slot_phase = scene.uniform(0.0, 1.0, max(config.objects, 1)) * self._slot_period
        self._class_perm = scene.permutation(len(SYNTHETIC_CLASSES) - 1) + 1
        self._pan = scene.uniform(0, 2 * np.pi, 4)
        self._light = scene.uniform(0, 2 * np.pi, 8)

    # ---------------------------------------------------------------- scene construction

    def _make_background(self) -> np.ndarray:
        cfg = self._cfg
        rng = _rng(cfg.seed, _SALT_BACKGROUND)
        m = self._margin
        h, w = cfg.height + 2 * m, cfg.width + 2 * m
        # Two or three muted colours blended by smooth noise, plus a broad gradient.
        base = [
            _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(5, 60), rng.uniform(50, 200))
            for _ in range(3)
        ]
        n1 = _value_noise(rng, h, w, (3, 9, 27, 81))[..., None]
        n2 = _value_noise(rng, h, w, (2, 6))[..., None]
        img = base[0] * (1 - n1) + base[1] * n1
        img = img * (1 - 0.5 * n2) + base[2] * (0.5 * n2)
        gy = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.25), h, dtype=np.float32)
        img *= gy[:, None, None]
        bg = np.clip(img, 0, 255).astype(np.uint8)
        # Clutter: muted blobs and lines at all scales, a few small saturated specks and scratches.
        scale = cfg.height / 1080.0
        for _ in range(cfg.clutter):
            saturated = rng.random() < 0.2
            colour = _hsv_to_bgr(
                rng.uniform(0, 180),
                rng.uniform(150, 255) if saturated else rng.uniform(0, 70),
                rng.uniform(40, 230),
            )
            colour = tuple(float(c) for c in colour)
            kind = rng.integers(0, 3)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            if kind == 0 or saturated:  # line / scratch
                ang = rng.uniform(0, np.pi)
                length = rng.uniform(40, 400) * scale
                thick = max(1, int(rng.uniform(1, 5 if saturated else 9) * scale))
                p1 = (int(cx - length * math.cos(ang)), int(cy - length * math.sin(ang)))
                p2 = (int(cx + length * math.cos(ang)), int(cy + length * math.sin(ang)))
                cv2.line(bg, p1, p2, colour, thick, cv2.LINE_AA)
            elif kind == 1:  # blob
                axes = (max(1, int(rng.uniform(8, 120) * scale)), max(1, int(rng.uniform(8, 120) * scale)))
                cv2.ellipse(bg, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, colour, -1,
                            cv2.LINE_AA)
            else:  # irregular polygon (a muted "thing")
                k = int(rng.integers(4, 8))
                r = rng.uniform(15, 150) * scale
                ang = np.sort(rng.uniform(0, 2 * np.pi, k))
                rad = r * rng.uniform(0.5, 1.0, k)
                pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
                cv2.fillPoly(bg, [pts], colour, cv2.LINE_AA)
        return bg

    def _make_noise(self) -> np.ndarray | None:
        cfg = self._cfg
        if cfg.noise <= 0:
            return None
        rng = _rng(cfg.seed, _SALT_NOISE)
        shape = (cfg.height + _NOISE_MARGIN, cfg.width + _NOISE_MARGIN, 3)
        noise = rng.standard_normal(shape, dtype=np.float32)
        # Noise drawn before the resize to the frame size is smoothed by it: draw it stronger
        # so its standard deviation in the delivered frame is still ``config.noise``.
        noise *= cfg.noise * _resize_noise_gain(cfg.width / self.config.width, cfg.height / self.config.height)
        noise += 128.0
        return np.clip(noise, 0, 255).astype(np.uint8)

    # ---------------------------------------------------------------- objects

    def _object(self, slot: int, t: float) -> _Object:
        period = float(self._slot_period[slot])
        epoch = int(math.floor((t + self._slot_phase[slot]) / period))
        obj = self._objects.get((slot, epoch))
        if obj is None:
            obj = self._objects[(slot, epoch)] = self._new_object(slot, epoch, period)
            while len(self._objects) > _OBJECT_CACHE:
                self._objects.popitem(last=False)
        else:
            self._objects.move_to_end((slot, epoch))
        return obj

    def _new_object(self, slot: int, epoch: int, period: float) -> _Object:
        """The object living in ``slot`` during ``epoch`` (a pure function of the scene and both)."""
        t0 = epoch * period - float(self._slot_phase[slot])
        rng = _rng(self._cfg.seed, _SALT_OBJECT, slot, epoch)
        # The first slots hold one class each (in a per-seed order) so that every class is in
        # every stretch of a few seconds when objects >= 5; further slots pick at random.
        n_fg = len(self._class_perm)
        cls = int(self._class_perm[slot] if slot < n_fg else self._class_perm[rng.integers(0, n_fg)])
        polys, holes = _shape_polys(cls, rng)
        # Size in fractions of the frame height, scaled per class so that each class covers a
        # similar pixel area on average (a triangle fills less of its circle than a disc).
        radius = float(rng.uniform(0.11, 0.26)) * _AREA_SCALE[cls]
        aspect = self._cfg.width / self._cfg.height
        # Enter through one edge, leave through another; the margin keeps the object fully
        # outside at the epoch boundaries, so nothing pops in or out of view.
        out = radius * 1.5
        # Mostly edge to opposite edge (a long pass through the view), sometimes across a corner.
        first = int(rng.integers(0, 4))
        second = first ^ 1 if rng.random() < 0.7 else int(rng.choice([2, 3] if first < 2 else [0, 1]))
        edges = (first, second)

        def edge_point(edge: int) -> tuple[float, float]:
            s = rng.uniform(0.1, 0.9)
            mx, my = out / aspect, out
            return [(-mx, s), (1 + mx, s), (s, -my), (s, 1 + my)][edge]

        start, end = edge_point(int(edges[0])), edge_point(int(edges[1]))
        return _Object(
            cls=cls,
            polys=tuple(polys),
            holes=tuple(holes),
            radius=radius,
            start=start,
            end=end,
            t0=t0,
            duration=period,
            angle0=float(rng.uniform(0, 2 * np.pi)),
            spin=float(rng.uniform(0.2, 1.2) * rng.choice([-1.0, 1.0])),
            scale_amp=float(rng.uniform(0.0, 0.3)),
            scale_freq=float(rng.uniform(0.5, 1.5)),
            scale_phase=float(rng.uniform(0, 2 * np.pi)),
            wobble=float(rng.uniform(-0.08, 0.08)),
            key=(slot, epoch),
        )

    def _patch(self, obj: _Object, side: int) -> np.ndarray:
        """The object's BGR texture patch (cached per object life), ``side`` pixels square."""
        key = (*obj.key, side)
        patch = self._patches.get(key)
        if patch is not None:
            self._patches.move_to_end(key)
            return patch
        fam = _FAMILIES[obj.cls]
        rng = _rng(self._cfg.seed, _SALT_OBJECT + 100, *obj.key)
        hue = rng.uniform(*fam["hue"])
        sat = rng.uniform(*fam["sat"])
        val = rng.uniform(*fam["val"])
        # Texture contrast stays moderate so the darkest texels keep their hue under dim light.
        dark = _hsv_to_bgr(hue, sat, val * rng.uniform(0.45, 0.7))
        light = _hsv_to_bgr(
            np.clip(hue + rng.uniform(-4, 4), *fam["hue"]), sat * rng.uniform(0.8, 1.0), val
        )
        pattern = _texture_pattern(fam["texture"], rng, side)
        # Colour through a 256-entry ramp from dark to light.
        ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]
        lut = np.clip(dark + (light - dark) * ramp, 0, 255).astype(np.uint8)
        patch = lut[(pattern * 255.0 + 0.5).astype(np.uint8)]
        self._patches[key] = patch
        while len(self._patches) > _PATCH_CACHE:
            self._patches.popitem(last=False)
        return patch

    def _draw_object(self, obj: _Object, t: float, image: np.ndarray | None, label: np.ndarray | None) -> None:
        """Draw ``obj`` at time ``t`` into ``image`` (textured) and/or ``label`` (its class id)."""
        cfg = self._cfg
        h, w = cfg.height, cfg.width
        u = (t - obj.t0) / obj.duration
        sx, sy = obj.start
        ex, ey = obj.end
        dx, dy = ex - sx, ey - sy
        norm = math.hypot(dx * w, dy * h) or 1.0
        sway = obj.wobble * h * math.sin(2 * np.pi * u)
        cx = (sx + dx * u) * w - sway * (dy * h) / norm
        cy = (sy + dy * u) * h + sway * (dx * w) / norm
        scale = 1.0 + obj.scale_amp * math.sin(2 * np.pi * obj.scale_freq * u + obj.scale_phase)
        r = obj.radius * h * scale  # pixels
        ang = obj.angle0 + obj.spin * (t - obj.t0)
        c, s = math.cos(ang), math.sin(ang)
        rot = np.array([[c, -s], [s, c]]) * r

        x0, y0 = max(0, int(cx - 1.1 * r)), max(0, int(cy - 1.1 * r))
        x1, y1 = min(w, int(cx + 1.1 * r) + 2), min(h, int(cy + 1.1 * r) + 2)
        if x1 <= x0 or y1 <= y0:
            return  # entirely outside the frame
        origin = np.array([cx - x0, cy - y0])
        mask = self._mask[y0:y1, x0:x1]
        mask[:] = 0
        # Sub-pixel polygon vertices (4 fractional bits) so slow motion is smooth.
        shift = 4
        fixed = [np.round((p @ rot.T + origin) * (1 << shift)).astype(np.int32) for p in obj.polys]
        cv2.fillPoly(mask, fixed, 1, cv2.LINE_8, shift)
        if obj.holes:
            holes = [np.round((p @ rot.T + origin) * (1 << shift)).astype(np.int32) for p in obj.holes]
            cv2.fillPoly(mask, holes, 0, cv2.LINE_8, shift)
        if label is not None:
            np.copyto(label[y0:y1, x0:x1], np.uint8(obj.cls), where=mask.view(bool))
        if image is None:
            return

        # Texture: the cached patch, rotated and scaled with the object. Its resolution is
        # tied to the object's nominal size so the texture stays sharp at any frame size.
        side = int(min(512, max(16, 2.3 * obj.radius * h * (1 + obj.scale_amp))))
        patch = self._patch(obj, side)
        k = side / 2.2  # patch pixels per radius unit (the patch spans +-1.1 radii)
        a = rot / k
        b = origin - a @ np.array([side / 2.0, side / 2.0])
        warp = np.hstack([a, b[:, None]])
        # The patch covers the whole shape, so the (cheaper) constant border is never visible.
        # Nearest sampling: the patch has about one texel per drawn pixel, so bilinear adds
        # nothing visible after the frame's resize and noise, and costs twice as much.
        tex = cv2.warpAffine(patch, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_CONSTANT)
        cv2.copyTo(tex, mask, image[y0:y1, x0:x1])

    # ---------------------------------------------------------------- per-frame pipeline

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index`` as ``(HxWx3 uint8 BGR image, HxW uint8 label)`` at the frame size."""
        w, h = self.config.width, self.config.height
        image = np.empty((h, w, 3), np.uint8)
        label = np.empty((h, w), np.uint8)
        self.render_into(index, image, label)
        return image, label

    def render_into(self, index: int, image: np.ndarray, label: np.ndarray | None = None) -> None:
        """Render frame ``index`` into caller-owned buffers (C-contiguous uint8, HxWx3 and HxW).

        ``label`` is optional: a caller that may never need the ground truth leaves it out and
        asks :meth:`label_at` later (the pipeline does: most frames are never scored).
        """
        w, h = self.config.width, self.config.height
        _check_index(index)
        if image.shape != (h, w, 3) or image.dtype != np.uint8 or not image.flags.c_contiguous:
            raise ValueError(f"synthetic: image buffer must be C-contiguous uint8 {(h, w, 3)}")
        if label is not None and (label.shape != (h, w) or label.dtype != np.uint8 or not label.flags.c_contiguous):
            raise ValueError(f"synthetic: label buffer must be C-contiguous uint8 {(h, w)}")
        with self._lock:
            canvas = self._canvas if self._scaled else image
            small = None if label is None else (self._label if self._scaled else label)
            self._draw(index, canvas, small)
            if self._scaled:
                cv2.resize(canvas, (w, h), dst=image, interpolation=cv2.INTER_LINEAR)
                if label is not None:
                    resize_label(self._label, w, h, dst=label)

    def label_at(self, index: int) -> np.ndarray:
        """The ground truth of frame ``index`` at the drawing size (``config.draw_size``), a new
        array: only the shapes are drawn, so it costs a fraction of a frame."""
        _check_index(index)
        cfg = self._cfg
        label = np.empty((cfg.height, cfg.width), np.uint8)
        with self._lock:
            self._draw_objects(index / cfg.fps, None, label)
        return label

    def _draw_objects(self, t: float, image: np.ndarray | None, label: np.ndarray | None) -> None:
        """Objects, far to near: the nearer (larger) one wins the pixel and the label."""
        if label is not None:
            label.fill(0)
        objs = [self._object(slot, t) for slot in range(self._cfg.objects)]
        depth = [o.radius * (1 + o.scale_amp * math.sin(
            2 * np.pi * o.scale_freq * (t - o.t0) / o.duration + o.scale_phase)) for o in objs]
        for i in np.argsort(depth, kind="stable"):
            self._draw_object(objs[i], t, image, label)

    def _draw(self, index: int, image: np.ndarray, label: np.ndarray | None) -> None:
        """Draw frame ``index`` at the drawing size (the caller holds the lock)."""
        cfg = self._cfg
        h, w = cfg.height, cfg.width
        t = index / cfg.fps
        frame_rng = _rng(cfg.seed, _SALT_FRAME, index)
        # 1. Background seen through a slowly panning camera.
        m = self._margin
        ox = int(round(m + 0.95 * m * math.sin(0.21 * t + self._pan[0])))
        oy = int(round(m + 0.95 * m * math.sin(0.17 * t + self._pan[1])))
        np.copyto(image, self._background[oy:oy + h, ox:ox + w])

        # 2. Objects.
        self._draw_objects(t, image, label)

        # 3. Lighting: global gain, drifting gradient, white-balance drift, vignetting;
        #    a coarse gain grid, upsampled and applied in one saturating multiply.
        L = self._light
        gain = 1.0 + 0.22 * math.sin(0.45 * t + L[0]) + 0.08 * math.sin(1.7 * t + L[1])
        theta = 0.3 * t + L[2]
        slope = 0.25 + 0.15 * math.sin(0.23 * t + L[3])
        gy, gx = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 9), indexing="ij")
        field = gain * (1 + slope * (gx * math.cos(theta) + gy * math.sin(theta)))
        field *= 1.0 - 0.18 * (gx * gx + gy * gy) / 2  # vignetting
        wb = 1.0 + 0.07 * np.array([math.sin(0.31 * t + L[4]), math.sin(0.37 * t + L[5]) * 0.5,
                                    math.sin(0.29 * t + L[6])])
        # Dim, not black: below ~0.55 the darkest object texels would lose their colour.
        field = np.clip(field, 0.55, 1.5)
        grid = np.clip(field[..., None] * wb * 128.0, 0, 255).astype(np.uint8)
        cv2.resize(grid, (w, h), dst=self._gain, interpolation=cv2.INTER_LINEAR)
        cv2.multiply(image, self._gain, dst=image, scale=1.0 / 128.0)

        # 4. Optics: some frames are motion-blurred (camera shake) or out of focus.
        blurred = frame_rng.random() < cfg.blur
        blur_size, blur_kind = frame_rng.uniform(5, 17), frame_rng.integers(0, 3)
        if blurred:
            size = max(3, int(round(blur_size * self._px)) | 1)
            if blur_kind == 0:
                cv2.blur(image, (size, max(1, size // 5)), dst=image)  # horizontal shake
            elif blur_kind == 1:
                cv2.blur(image, (max(1, size // 5), size), dst=image)  # vertical shake
            else:
                sigma = size / 5.0
                cv2.GaussianBlur(image, (0, 0), sigma, dst=image)  # defocus

        # 5. Sensor noise: a random crop of the precomputed noise bank (stored offset +128).
        if self._noise is not None:
            nx, ny = frame_rng.integers(0, _NOISE_MARGIN + 1, 2)
            crop = self._noise[ny:ny + h, nx:nx + w]
            cv2.addWeighted(image, 1.0, crop, 1.0, -128.0, dst=image)

