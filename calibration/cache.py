"""TensorRT's legacy INT8 calibration cache (text format), written from the CPU calibration.

The format TensorRT's ``IInt8EntropyCalibrator2``/``IInt8MinMaxCalibrator`` read and write
(and ONNX Runtime's TensorRT provider and ModelOpt's ``import_scales_from_calib_cache``
parse)::

    TRT-<version>-EntropyCalibration2
    <tensor name>: <scale as 8 hex digits: the big-endian IEEE-754 float32 bits>
    ...

The scale is the tensor's dynamic range divided by 127 (``amax / 127``). ``<version>``
is TensorRT's numeric version: ``major*1000 + minor*100 + patch`` up to 8.x (``8601``),
``major*10000 + minor*100 + patch`` from 10.x on (``100300`` for 10.3.0). TensorRT only
reuses a cache whose header matches its own version and calibrator, otherwise it
recalibrates; tensor names are the ONNX tensor names, which the ONNX parser keeps.

Caches are tied to a TensorRT version, not to a GPU: the scales only depend on the data.
Only TensorRT 8.6-10.x read them (TensorRT 11 removed implicit INT8); the Q/DQ ONNX is the
portable form of the same scales.
"""
from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from segrt.errors import CalibrationError
from segrt.runtime.fsutil import write_bytes_atomic

CALIBRATORS = {
    "entropy": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "percentile": "EntropyCalibration2",  # TensorRT has no percentile calibrator; the scales load the same
    "legacy_entropy": "EntropyCalibration",
    "legacy": "LegacyCalibration",
}
_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")
INT8_MAX = 127.0


def trt_version_number(version: str) -> int:
    """TensorRT's numeric version as the cache header spells it: '10.3.0' -> 100300, '8.6.1' -> 8601."""
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:3]]
    if not parts:
        raise CalibrationError(f"cannot read a TensorRT version from {version!r}", hint="e.g. 10.3.0")
    major, minor, patch = (parts + [0, 0])[:3]
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def hex_from_scale(scale: float) -> str:
    """8 lowercase hex digits of the big-endian float32 bits (as TensorRT writes them)."""
    return struct.pack(">f", float(scale)).hex()


def scale_from_hex(text: str) -> float:
    text = text.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    # TensorRT writes the bits with %x, without leading zeros: pad back to 8 digits.
    if not re.fullmatch(r"[0-9a-f]{1,8}", text):
        raise ValueError(f"{text!r} is not a float32 in hex")
    return struct.unpack(">f", bytes.fromhex(text.rjust(8, "0")))[0]


@dataclass(frozen=True)
class CalibrationCache:
    """Per-tensor INT8 scales (``amax / 127``) with the header's version and calibrator."""

    scales: Mapping[str, float]
    trt_version: int
    calibrator: str = "EntropyCalibration2"

    @property
    def header(self) -> str:
        return f"TRT-{self.trt_version}-{self.calibrator}"

    def amax(self, name: str) -> float:
        return self.scales[name] * INT8_MAX

    def to_text(self) -> str:
        lines = [self.header]
        lines += [f"{name}: {hex_from_scale(s)}" for name, s in self.scales.items()]
        return "\n".join(lines) + "\n"


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Symmetric INT8 scales from (min, max) ranges: ``max(|min|, |max|) / 127``.

    A tensor whose range is all zero gets the smallest positive float32 scale rather than 0
    (TensorRT rejects a zero scale; such a tensor is 0 whatever its scale)."""
    out = {}
    for name, (lo, hi) in ranges.items():
        amax = max(abs(float(lo)), abs(float(hi)))
        if not math.isfinite(amax):
            raise CalibrationError(f"tensor {name!r} has a non-finite calibration range ({lo}, {hi})",
                                   hint="the calibration frames drive the model to inf/nan; check the model")
        scale = amax / INT8_MAX if amax > 0 else float.fromhex("0x1p-126")
        out[name] = struct.unpack(">f", struct.pack(">f", scale))[0]  # float32, exactly as written
    return out


def cache_from_ranges(ranges: Mapping[str, tuple[float, float]], trt_version: str | int,
                      method: str = "entropy") -> CalibrationCache:
    """A cache from per-tensor calibration ranges (see :mod:`segrt.calibration.collect`)."""
    if method not in CALIBRATORS:
        raise CalibrationError(f"unknown calibration method {method!r}", hint=f"one of {', '.join(CALIBRATORS)}")
    version = trt_version if isinstance(trt_version, int) else trt_version_number(trt_version)
    return CalibrationCache(scales_from_ranges(ranges), version, CALIBRATORS[method])


def write_calibration_cache(path: str | os.PathLike[str], cache: CalibrationCache) -> Path:
    """Write ``cache`` atomically to ``path``."""
    p = Path(path)
    write_bytes_atomic(p, cache.to_text().encode("utf-8"))
    return p


def calibration_cache_from_text(text: str, *, source: str = "calibration cache") -> CalibrationCache:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise CalibrationError(f"{source} is empty", hint="write one with segrt quantize --precision int8")
    m = _HEADER.match(lines[0])
    if not m:
        raise CalibrationError(f"{source}: first line {lines[0]!r} is not a TensorRT cache header",
                               hint="expected e.g. TRT-100300-EntropyCalibration2")
    scales: dict[str, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(":")
        if not sep or not name.strip():
            raise CalibrationError(f"{source}:{n}: expected 'tensor: hexscale', got {line!r}")
        try:
            scales[name.strip()] = scale_from_hex(value)
        except ValueError as exc:
            raise CalibrationError(f"{source}:{n}: {exc}") from exc
    return CalibrationCache(scales, int(m.group(1)), m.group(2))


def read_calibration_cache(path: str | os.PathLike[str]) -> CalibrationCache:
    """Parse a TensorRT calibration cache file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration cache {p}: {exc}") from exc
    return calibration_cache_from_text(text, source=str(p))


def calibration_cache_from_bundle(bundle, trt_version: str | int) -> CalibrationCache:
    """A TensorRT cache from the ranges ``segrt quantize --precision int8`` stored in ``bundle``
    (``Manifest.calibration["ranges_file"]``): the legacy TensorRT 10.x INT8 build can then
    skip GPU calibration and use exactly the CPU calibration's scales. Tensors outside the
    quantized op types have no entry; TensorRT runs those layers in higher precision."""
    from segrt.calibration.collect import CalibrationRanges
    from segrt.runtime.bundle import Bundle

    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    cal = b.manifest.calibration or {}
    name = cal.get("ranges_file")
    if not name:
        raise CalibrationError(f"bundle {b.path} has no INT8 calibration ranges",
                               hint=f"run: segrt quantize {b.path} --precision int8 --calib SOURCE")
    try:
        ranges = CalibrationRanges.load(b.path / name)
    except (OSError, ValueError, KeyError) as exc:
        raise CalibrationError(f"cannot read {b.path / name}: {exc}", hint="re-run segrt quantize --precision int8") from exc
    return cache_from_ranges(ranges.ranges, trt_version, ranges.method)


# The TensorRT calibrator's batch feed lives with the reader; re-exported here because the
# legacy calibrator (trt_legacy.py) uses both.
from segrt.calibration.reader import CalibrationBatches, iter_calibration_batches  # noqa: E402

__all__ = [
    "CalibrationCache", "CalibrationBatches", "cache_from_ranges", "calibration_cache_from_bundle",
    "calibration_cache_from_text",
    "hex_from_scale", "iter_calibration_batches", "read_calibration_cache", "scale_from_hex",
    "scales_from_ranges", "trt_version_number", "write_calibration_cache",
]
