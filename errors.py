"""One exception tree for segrt.

Every error a user can cause derives from :class:`SegrtError`. The CLI prints
``str(err)`` on one line and exits with ``err.exit_code``; messages therefore
name the file involved and say what to do about it. A message and its hint are passed
through :func:`segrt.runtime.redact.redact`, so no error (nor a ``-v`` traceback of one)
carries a URI's password or a ``token=`` value.
"""
from __future__ import annotations

import re

from segrt.runtime.redact import redact


class SegrtError(Exception):
    """Base of every segrt error. ``hint`` is the fix, appended to the message."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = redact(message)
        hint = redact(hint) if hint else hint
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class ConfigError(SegrtError):
    """Invalid configuration value (CLI flag, dataclass field, query parameter)."""


class ManifestError(SegrtError):
    """A bundle manifest is missing, malformed, or from a newer schema."""


class BundleError(SegrtError):
    """A bundle directory or one of its artifacts is missing, unreadable or unwritable."""


class ModelNotFoundError(SegrtError):
    """A model name is not in the zoo and is not a module:factory or .onnx path."""


class WeightsError(SegrtError):
    """A checkpoint cannot be read or does not match the model."""


class ExportError(SegrtError):
    """PyTorch -> ONNX export failed."""


class VerificationError(SegrtError):
    """The exported ONNX does not match PyTorch within tolerance."""


class SourceError(SegrtError):
    """A frame source URI is malformed, or the device/file cannot be opened."""


class SinkError(SegrtError):
    """A frame sink URI is malformed, or the output cannot be written."""


class BackendError(SegrtError):
    """An inference backend failed to open or to run."""


class BackendUnavailableError(BackendError):
    """The requested backend is not installed or has no device here."""


class CalibrationError(SegrtError):
    """Calibration data is empty, unreadable or unsuitable."""


class AccuracyGateError(SegrtError):
    """A lower-precision model failed its accuracy gate against FP32."""


class BenchError(SegrtError):
    """A benchmark produced no result (every requested cell failed or was skipped)."""


class EngineError(SegrtError):
    """A TensorRT engine could not be built, loaded, or is incompatible."""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def first_line(exc: BaseException | str, limit: int = 160) -> str:
    """The first non-empty line of a library's error, for a one-line segrt message.

    ANSI colour codes (torch prints some) are removed, and a line longer than ``limit`` is cut
    at a word boundary and marked with "...". An empty message gives the exception's type name.
    """
    text = _ANSI.sub("", str(exc))
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    line = " ".join(line.split())
    if len(line) <= limit:
        return line
    cut = line[:limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else line[:limit]
    return cut.rstrip(" ,;:.") + " ..."
