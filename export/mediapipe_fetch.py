"""The MediaPipe Selfie Segmentation ``.tflite`` files, fetched on first use from the pinned wheel.

``mediapipe==0.10.21`` is the last release whose wheels ship ``selfie_segmentation.tflite``
(256x256) and ``selfie_segmentation_landscape.tflite`` (144x256) (Apache-2.0). The wheel is
downloaded with pip (``--no-deps``, this platform's binary) into the user cache, the two files
are extracted and their sha256 checked against the pins below (identical in every platform's
wheel), and the wheel is deleted. Offline, the error says how to pass a ``.tflite`` with
``--weights``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from segrt.errors import WeightsError
from segrt.runtime.fsutil import sha256_file, write_bytes_atomic

MEDIAPIPE_VERSION = "0.10.21"
WHEEL_DIR = "mediapipe/modules/selfie_segmentation/"
TFLITE_SHA256 = {
    "selfie_segmentation.tflite": "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    "selfie_segmentation_landscape.tflite": "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segrt" / f"mediapipe-{MEDIAPIPE_VERSION}"


def pinned_tflite_path(filename: str) -> Path:
    """Where the pinned ``filename`` lives once fetched (it may not exist yet)."""
    return cache_dir() / filename


def is_pinned_tflite(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.name in TFLITE_SHA256 and p.parent == cache_dir()


def ensure_pinned_tflite(filename: str) -> Path:
    """The cached, checksum-verified ``filename``; fetches the pinned wheel the first time."""
    target = pinned_tflite_path(filename)
    if target.is_file() and sha256_file(target) == TFLITE_SHA256[filename]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="segrt-mediapipe-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               f"mediapipe=={MEDIAPIPE_VERSION}", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        wheels = sorted(Path(tmp).glob("mediapipe-*.whl"))
        if proc.returncode != 0 or not wheels:
            why = (proc.stderr.strip().splitlines() or ["no wheel for this platform"])[-1][:160]
            raise WeightsError(f"cannot fetch mediapipe=={MEDIAPIPE_VERSION} with pip ({why})",
                               hint=f"get {filename} from that wheel (mediapipe/modules/selfie_segmentation/) and "
                                    f"pass it with --weights PATH/{filename}, or put it into {cache_dir()}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, sha in TFLITE_SHA256.items():
                try:
                    data = wheel.read(WHEEL_DIR + name)
                except KeyError as exc:
                    raise WeightsError(f"{wheels[0].name} has no {WHEEL_DIR + name}",
                                       hint=f"pass the .tflite with --weights PATH/{name}") from exc
                got = hashlib.sha256(data).hexdigest()
                if got != sha:
                    raise WeightsError(f"{name} from {wheels[0].name} has sha256 {got[:16]}..., not the pinned "
                                       f"{sha[:16]}...", hint="the download is corrupt or not the pinned release")
                write_bytes_atomic(pinned_tflite_path(name), data)
    return target
