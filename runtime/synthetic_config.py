"""The parameters of a ``synthetic://`` scene: the frozen config, its URI query, label resizing."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from urllib.parse import parse_qsl

import cv2
import numpy as np

from segrt.errors import ConfigError

_FULL_DETAIL_ROWS = 720  # auto detail: frames taller than this are drawn at half size


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of a synthetic scene. All geometry scales with ``width``/``height``.

    ``frames`` is the nominal stream length a source plays; :meth:`SyntheticScene.render` accepts
    any non-negative index. ``noise`` is the sensor-noise standard deviation on the 0..255 scale,
    ``blur`` the fraction of frames that are motion- or defocus-blurred, ``clutter`` the number
    of background clutter items, ``objects`` the number of foreground objects alive at a time.
    ``detail`` is the scale the scene is drawn at before a bilinear resize to the frame size
    (0 = auto: full up to 720 rows, half above; 1 = always full; 0.25..1 otherwise); sensor
    noise is drawn at that scale too, with its strength matched after the resize.
    """

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    frames: int = 300
    seed: int = 0
    objects: int = 8
    noise: float = 4.0
    blur: float = 0.25
    clutter: int = 24
    detail: float = 0.0

    def __post_init__(self) -> None:
        def check_int(name: str, lo: int, hi: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"synthetic: {name} must be an integer, got {value!r}")
            if not lo <= value <= hi:
                raise ConfigError(f"synthetic: {name}={value} is out of range [{lo}, {hi}]")

        def check_float(name: str, lo: float, hi: float) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ConfigError(f"synthetic: {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ConfigError(f"synthetic: {name}={value} is out of range [{lo}, {hi}]")

        check_int("width", 32, 8192)
        check_int("height", 32, 8192)
        check_float("fps", 0.1, 1000.0)
        check_int("frames", 1, 10**9)
        check_int("seed", 0, 2**31 - 1)
        check_int("objects", 0, 32)
        check_float("noise", 0.0, 64.0)
        check_float("blur", 0.0, 1.0)
        check_int("clutter", 0, 1000)
        check_float("detail", 0.0, 1.0)
        if 0.0 < self.detail < 0.25:
            raise ConfigError(f"synthetic: detail={self.detail} must be 0 (auto) or between 0.25 and 1")

    @property
    def draw_size(self) -> tuple[int, int]:
        """(width, height) the scene is drawn at before it is scaled to the frame size.

        ``detail=0`` (auto) draws frames up to 720 rows at full size and larger frames at half
        size: a 1080p frame then costs about a quarter of the drawing, and a bilinear upscale.
        """
        scale = self.detail or (1.0 if self.height <= _FULL_DETAIL_ROWS else 0.5)
        if scale >= 1.0:
            return self.width, self.height
        return max(32, int(round(self.width * scale))), max(32, int(round(self.height * scale)))


_QUERY_KEYS = ("size", "width", "height", "fps", "frames", "seed", "objects", "noise", "blur", "clutter", "detail")


def synthetic_config_from_query(query: str) -> SyntheticConfig:
    """Parse ``"size=1920x1080&fps=30&frames=300&seed=0"`` (a leading ``?`` is allowed).

    Keys: size (WxH), width, height, fps, frames, seed, objects, noise, blur, clutter, detail. Unknown
    keys, repeated keys and malformed values raise :class:`ConfigError` naming the key.
    """
    query = query.lstrip("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigError(
            f"synthetic: cannot parse query {query!r}", hint="use key=value pairs joined by '&'"
        ) from exc
    kw: dict[str, object] = {}
    seen: set[str] = set()
    types = {f.name: f.type for f in fields(SyntheticConfig)}
    for key, raw in pairs:
        if key not in _QUERY_KEYS:
            raise ConfigError(
                f"synthetic: unknown parameter {key!r}", hint=f"valid keys: {', '.join(_QUERY_KEYS)}"
            )
        if key in seen:
            raise ConfigError(f"synthetic: parameter {key!r} given twice")
        seen.add(key)
        if key == "size":
            parts = raw.lower().split("x")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ConfigError(
                    f"synthetic: size={raw!r} is not WIDTHxHEIGHT", hint="e.g. size=1920x1080"
                )
            kw["width"], kw["height"] = int(parts[0]), int(parts[1])
            continue
        try:
            kw[key] = float(raw) if types[key] in ("float", float) else int(raw)
        except ValueError as exc:
            kind = "a number" if types[key] in ("float", float) else "an integer"
            raise ConfigError(f"synthetic: {key}={raw!r} is not {kind}") from exc
    if "size" in seen and ({"width", "height"} & seen):
        raise ConfigError("synthetic: give either size=WxH or width/height, not both")
    return SyntheticConfig(**kw)  # type: ignore[arg-type]


def resize_label(label: np.ndarray, width: int, height: int, dst: np.ndarray | None = None) -> np.ndarray:
    """Resize a label map to ``width x height`` without inventing classes.

    Uses ``cv2.INTER_NEAREST_EXACT``, which samples the source at the same pixel centres that
    ``cv2.INTER_LINEAR`` interpolates around; plain ``INTER_NEAREST`` samples the top-left of each
    cell and shifts labels by up to a source pixel against the resized image.
    """
    return cv2.resize(label, (width, height), dst=dst, interpolation=cv2.INTER_NEAREST_EXACT)


