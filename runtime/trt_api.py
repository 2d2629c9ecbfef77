"""What every TensorRT-touching module shares, without importing TensorRT.

* :func:`trt_path` marks a function with the *code path* it belongs to
  ("strongly_typed", "legacy_calibrator", "runtime", ...). Each TensorRT module
  also declares, in a module-level ``TRT_PATHS`` mapping, which TensorRT
  releases each path claims to support. ``tests/test_trt_bindings_*.py`` walks
  the AST of those modules, collects every attribute used on the ``tensorrt``
  module and on TensorRT objects inside each marked function, and checks the
  names against the string table of NVIDIA's compiled binding module for each
  claimed release. The marker does nothing at run time.
* :func:`parse_version` turns ``trt.__version__`` into an int tuple (never compare
  version strings).
* :func:`import_tensorrt` is the one lazy import, with an install hint that knows
  a Jetson from a desktop.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from segrt.errors import BackendUnavailableError, ConfigError

F = TypeVar("F", bound=Callable)

#: The TensorRT releases whose compiled bindings the conformance test checks.
#: 10.3 = JetPack 6 (Orin); 10.16 = JetPack 7.2 system TensorRT; 11.4 = desktop pip.
CHECKED_RELEASES: dict[str, tuple[int, int]] = {"10.3": (10, 3), "10.16": (10, 16), "11.4": (11, 4)}


def trt_path(*paths: str) -> Callable[[F], F]:
    """Mark a function as part of the named TensorRT code path(s).

    The versions a path supports are declared once per module in ``TRT_PATHS``;
    the binding conformance test reads both from the source (AST), so keep the
    decorator literal: ``@trt_path("runtime")``.
    """
    if not paths:
        raise ValueError("trt_path needs at least one path name")

    def mark(fn: F) -> F:
        fn.__trt_paths__ = tuple(paths)  # type: ignore[attr-defined]
        return fn

    return mark


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.16.1.11"`` -> ``(10, 16, 1, 11)``; ``"11.4.0.106"`` -> ``(11, 4, 0, 106)``.

    Pre-release tails (``"10.0.0b6"``) keep their leading digits. Raises
    ConfigError on text that starts with no number.
    """
    parts: list[int] = []
    for piece in str(text).strip().split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() != len(piece):  # "0b6": stop after the numeric head
            break
    if not parts:
        raise ConfigError(f"cannot read a TensorRT version from {text!r}")
    return tuple(parts)


def version_text(v: Iterable[int]) -> str:
    return ".".join(str(int(x)) for x in v)


# -- platform detection (plain functions; paths are parameters so tests can point them) --
JETSON_RELEASE_FILE = "/etc/nv_tegra_release"
DEVICE_TREE_MODEL = "/proc/device-tree/model"


def jetson_model(release_file: str | os.PathLike[str] = JETSON_RELEASE_FILE,
                 model_file: str | os.PathLike[str] = DEVICE_TREE_MODEL) -> str | None:
    """The Jetson model ("NVIDIA Jetson AGX Orin Developer Kit") or None on a non-Jetson.

    A Jetson has ``/etc/nv_tegra_release`` (L4T) and a device-tree model naming it.
    """
    model = None
    try:
        model = Path(model_file).read_bytes().rstrip(b"\x00\n ").decode("utf-8", "replace") or None
    except OSError:
        pass
    is_tegra = Path(release_file).is_file()
    if model and ("jetson" in model.lower() or "tegra" in model.lower() or is_tegra):
        return model
    if is_tegra:
        return model or "NVIDIA Jetson (L4T)"
    return None


def l4t_release(release_file: str | os.PathLike[str] = JETSON_RELEASE_FILE) -> str | None:
    """``"36.4"`` from ``# R36 (release), REVISION: 4.0, ...``; None when absent."""
    try:
        head = Path(release_file).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)", head)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def tensorrt_install_hint(jetson: str | None) -> str:
    """What to install for TensorRT here: JetPack's apt packages on a Jetson, pip elsewhere."""
    if jetson:
        return ("on a Jetson, TensorRT comes with JetPack: sudo apt install nvidia-jetpack "
                "(python3-libnvinfer), then use a venv made with "
                "'python3 -m venv --system-site-packages' so it sees the system tensorrt; "
                "do not pip install tensorrt there; plus pycuda (required to run), "
                "cuda-python (for --cuda-graph)")
    return ("pip install tensorrt (CUDA 13 drivers) or tensorrt-cu12 (CUDA 12), "
            "plus pycuda (required to run), cuda-python (for --cuda-graph); needs an NVIDIA GPU and driver")


def import_tensorrt():
    """``import tensorrt`` or BackendUnavailableError with the install hint for this machine."""
    try:
        import tensorrt  # noqa: PLC0415 - lazy by design: runtime must import without it
    except ImportError as exc:
        raise BackendUnavailableError("TensorRT (python module 'tensorrt') is not installed",
                                      hint=tensorrt_install_hint(jetson_model())) from exc
    return tensorrt


def tensorrt_version(trt) -> tuple[int, ...]:
    """Version tuple of an imported tensorrt module (package-level ``__version__``)."""
    return parse_version(getattr(trt, "__version__", "0"))
